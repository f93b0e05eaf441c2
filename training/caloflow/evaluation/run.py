"""One evaluation, end to end, for any dataset of the registry: validate, stream, compute, plot, report.

Order of work (each a step of the progress bar): validate both files (one chunked pass each), then stream the
used rows once more (:mod:`caloflow.evaluation.stream`: the cut at the dataset threshold, the dataset's
per-shower features, the voxel spectrum, average showers, the low-level classifier rows), then the metric
groups of ``config.metrics``; ``metrics.json`` and ``index.html`` are written last, from what was computed.
What differs between datasets is the feature provider (:mod:`caloflow.evaluation.providers`); the pipeline is
one. With ``config.crop`` both files are restricted to that lateral region first
(:mod:`caloflow.evaluation.region`) and every figure describes the region only. The low-level classifiers see
at most ``config.low_level_rows`` showers per class (the ``--cls-low-max-showers`` option or a memory budget),
which the report records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from tqdm import tqdm

from caloflow.evaluation import plots
from caloflow.evaluation.classifier import RepeatedResult, run_repeated
from caloflow.evaluation.config import CLASSIFIER_MODES, EvaluationConfig
from caloflow.evaluation.correlations import LayerCorrelations, layer_correlations
from caloflow.evaluation.energy import EnergyResponse, energy_ranges, energy_response
from caloflow.evaluation.errors import EvaluationError
from caloflow.evaluation.fpd_kpd import Distance, fpd, kpd
from caloflow.evaluation.histograms import HistogramComparison, compare_counts, log_edges
from caloflow.evaluation.hlf_histograms import family_of
from caloflow.evaluation.inputs import ShowerSample, load_pair
from caloflow.evaluation.prdc import PRDC, prdc
from caloflow.evaluation.providers import FeatureProvider, provider_for
from caloflow.evaluation.region import check_declared_crop
from caloflow.evaluation.report import write_reports
from caloflow.evaluation.stream import FileSummary, StreamPlan, summarise
from caloflow.evaluation.w1 import W1Distance, w1_distances

__all__ = ["EvaluationResult", "evaluate"]

logger = logging.getLogger(__name__)
Array = NDArray[np.float64]
W1_CELL_VALUES = 1_000_000  # non-zero cell energies per file kept for the W1 of the cell spectrum


@dataclass
class EvaluationResult:
    """Everything computed; ``None`` / empty for metric groups that were not asked for."""

    config: EvaluationConfig
    generated: ShowerSample
    reference: ShowerSample
    device: str
    histograms: list[HistogramComparison] = field(default_factory=list)
    energy: EnergyResponse | None = None
    correlations: LayerCorrelations | None = None
    classifiers: dict[str, RepeatedResult] = field(default_factory=dict)
    fpd: Distance | None = None
    kpd: Distance | None = None
    w1: list[W1Distance] = field(default_factory=list)
    prdc: PRDC | None = None
    plots: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per step


@dataclass
class _Prepared:
    provider: FeatureProvider[Any]
    plan: StreamPlan
    gen: FileSummary
    ref: FileSummary
    high_inputs: tuple[Array, Array] | None = None


def evaluate(config: EvaluationConfig) -> EvaluationResult:
    """Run the evaluation ``config`` describes and write ``metrics.json``, ``index.html`` and the PNGs."""
    device = _resolve_device(config.device)
    start = time.perf_counter()
    config, generated, reference = _load(config)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    result = EvaluationResult(config, generated, reference, str(device))
    result.seconds["validate"] = time.perf_counter() - start
    start = time.perf_counter()
    prepared = _prepare(config, generated, reference)
    result.seconds["stream"] = time.perf_counter() - start
    config.out.mkdir(parents=True, exist_ok=True)
    steps = _steps(config, result, prepared, device)
    for name, step in tqdm(steps, desc=f"evaluate {config.dataset}", unit="step", disable=not config.progress):
        start = time.perf_counter()
        step()
        result.seconds[name] = time.perf_counter() - start
        logger.debug("evaluation step %s took %.1f s", name, result.seconds[name])
    write_reports(result)
    return result


def _load(config: EvaluationConfig) -> tuple[EvaluationConfig, ShowerSample, ShowerSample]:
    """Both files validated. A generated file holding only a crop's cells is read embedded and evaluated on that
    crop (``--crop`` taken from the file when not given); with ``--crop``, a file in neither form is refused
    saying what to write."""
    try:
        generated, reference = load_pair(
            config.generated, config.reference, config.spec, max_showers=config.max_showers, crop=config.region
        )
    except EvaluationError as exc:
        region = config.region
        if region is None or not str(exc).startswith("generated file"):
            raise
        raise EvaluationError(
            f"{exc}; with --crop {region.text()} the generated file must hold the whole grid "
            f"{list(region.grid.shower_shape)} with the crop {list(region.crop_shape)} embedded (as "
            "write_served_showers and `caloflow repo quality` write a crop model's showers) or the crop's cells "
            "alone (as `caloflow generate` writes them)"
        ) from exc
    if generated.part is not None and config.region is None:
        logger.info("%s holds only the crop %s: evaluating that region", generated.path, generated.part.text())
        config = replace(config, crop=generated.part.text())
    check_declared_crop(generated, config.region)
    return config, generated, reference


def _plan(config: EvaluationConfig, reference: ShowerSample) -> StreamPlan:
    ds, n = config.spec, len(reference)
    low_rows = config.low_level_rows(n, ds.n_voxels + 1)
    return StreamPlan(
        min_energy_mev=config.cut_mev,
        voxel_edges=log_edges(config.cut_mev, reference.max_voxel_mev, 50),
        groups=() if ds.energies.kind == "discrete" else tuple(energy_ranges(ds)),
        n_low=low_rows if "cls-low" in config.metrics else 0,
        n_low_normed=low_rows if "cls-low-normed" in config.metrics else 0,
        n_cells=W1_CELL_VALUES if "w1" in config.metrics else 0,
        region=config.region,
    )


def _prepare(config: EvaluationConfig, gen: ShowerSample, ref: ShowerSample) -> _Prepared:
    provider = provider_for(config.spec)
    plan = _plan(config, ref)
    summaries = []
    for sample in (gen, ref):
        with tqdm(desc=f"read {sample.role}", unit="chunk", disable=not config.progress, leave=False) as bar:
            summaries.append(summarise(sample, provider, plan, on_chunk=lambda: bar.update(1)))
    return _Prepared(provider, plan, summaries[0], summaries[1])


def _resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise EvaluationError(f"--device {spec!r}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EvaluationError(f"--device {spec}: CUDA is not available on this machine")
    return device


def _steps(
    config: EvaluationConfig, result: EvaluationResult, p: _Prepared, device: torch.device
) -> list[tuple[str, Callable[[], None]]]:
    table: dict[str, Callable[[], None]] = {
        "hist": lambda: _histograms(config, result, p),
        "energy": lambda: _energy(config, result, p),
        "avg": lambda: _average(config, result, p),
        "corr": lambda: _correlations(config, result, p),
        "fpd": lambda: _fpd(config, result, p),
        "kpd": lambda: _kpd(config, result, p),
        "w1": lambda: _w1(result, p),
        "prdc": lambda: _prdc(config, result, p),
    }
    for mode in CLASSIFIER_MODES:
        table[mode] = _classifier_step(mode, config, result, p, device)
    return [(name, table[name]) for name in config.metrics]


def _title(config: EvaluationConfig) -> str:
    return f"{config.dataset}: {config.generated.name} vs reference {config.reference.name}"


def _histograms(config: EvaluationConfig, result: EvaluationResult, p: _Prepared) -> None:
    comparisons = p.provider.histograms(p.ref.features, p.gen.features, config.cut_mev)
    comparisons.append(compare_counts("voxel", p.ref.voxel_counts, p.gen.voxel_counts, p.plan.voxel_edges))
    result.histograms = comparisons
    families = p.provider.families
    for family in dict.fromkeys(family_of(c.name, families) for c in comparisons):
        members = [c for c in comparisons if family_of(c.name, families) == family]
        path = config.out / f"hist_{family}.png"
        log_x = family in ("e_layer", "voxel")
        labels = [p.provider.axis_label(family)] * len(members)
        result.plots.append(plots.plot_histograms(members, path, title=_title(config), labels=labels, log_x=log_x))


def _energy(config: EvaluationConfig, result: EvaluationResult, p: _Prepared) -> None:
    result.energy = energy_response(
        config.spec,
        (result.reference.incident_mev, p.provider.e_ratio(p.ref.features)),
        (result.generated.incident_mev, p.provider.e_ratio(p.gen.features)),
    )
    if result.energy.bins:
        path = config.out / "e_ratio_per_energy.png"
        result.plots.append(plots.plot_energy_response(result.energy, path, title=_title(config)))
        if config.spec.energies.kind != "discrete":
            path = config.out / "linearity_resolution.png"
            result.plots.append(plots.plot_linearity(result.energy, path, title=_title(config)))


def _average(config: EvaluationConfig, result: EvaluationResult, p: _Prepared) -> None:
    ref_means, gen_means = p.ref.mean_showers(), p.gen.mean_showers()
    groups = p.plan.groups or ((0.0, 0.0),)
    for i, group in enumerate(groups):
        suffix = "" if not p.plan.groups else f"_{group[0]:g}-{group[1]:g}MeV"
        title = _title(config) + ("" if not suffix else f", E_inc in [{group[0]:g}, {group[1]:g}] MeV")
        path = config.out / f"average_shower{suffix}.png"
        result.plots.append(plots.plot_average(ref_means[i], gen_means[i], p.provider.geometry, path, title=title))


def _correlations(config: EvaluationConfig, result: EvaluationResult, p: _Prepared) -> None:
    layer_ids = p.provider.geometry.layer_ids
    ref_e, gen_e = p.provider.layer_energies(p.ref.features), p.provider.layer_energies(p.gen.features)
    result.correlations = layer_correlations(layer_ids, ref_e, gen_e, seed=config.seed)
    path = config.out / "layer_correlations.png"
    result.plots.append(plots.plot_layer_correlations(result.correlations, path, title=_title(config)))


def _w1(result: EvaluationResult, p: _Prepared) -> None:
    reference = p.provider.observables(p.ref.features)
    generated = p.provider.observables(p.gen.features)
    reference["cell_energy"], generated["cell_energy"] = p.ref.cells, p.gen.cells
    result.w1 = w1_distances(reference, generated)


def _prdc(config: EvaluationConfig, result: EvaluationResult, p: _Prepared) -> None:
    gen_x, ref_x = _high_inputs(p)
    result.prdc = prdc(ref_x, gen_x, k=config.prdc_k, max_samples=config.prdc_max_samples, seed=config.seed)


def _high_inputs(p: _Prepared) -> tuple[Array, Array]:
    if p.high_inputs is None:
        p.high_inputs = (p.provider.high_level_inputs(p.gen.features), p.provider.high_level_inputs(p.ref.features))
    return p.high_inputs


def _classifier_inputs(mode: str, p: _Prepared) -> tuple[NDArray[Any], NDArray[Any]]:
    """The inputs of ``mode``; the streamed low-level rows are handed over and dropped from the summaries."""
    if mode in ("cls-low", "cls-low-normed"):
        attr = "low" if mode == "cls-low" else "low_normed"
        gen, ref = getattr(p.gen, attr), getattr(p.ref, attr)
        setattr(p.gen, attr, None)
        setattr(p.ref, attr, None)
        if gen is None or ref is None:
            raise EvaluationError(f"{mode}: no low-level inputs were kept")
        return gen, ref
    return _high_inputs(p)


def _classifier_step(
    mode: str, config: EvaluationConfig, result: EvaluationResult, p: _Prepared, device: torch.device
) -> Callable[[], None]:
    def step() -> None:
        gen_x, ref_x = _classifier_inputs(mode, p)
        result.classifiers[mode] = run_repeated(
            gen_x,
            ref_x,
            config.dataset,
            config.classifier,
            runs=config.runs,
            seed=config.seed,
            device=device,
            desc=mode,
            progress=config.progress,
        )

    return step


def _fpd(config: EvaluationConfig, result: EvaluationResult, p: _Prepared) -> None:
    gen_x, ref_x = _high_inputs(p)
    result.fpd = fpd(ref_x, gen_x, min_samples=config.fpd_min_samples, max_samples=config.fpd_max_samples)


def _kpd(config: EvaluationConfig, result: EvaluationResult, p: _Prepared) -> None:
    gen_x, ref_x = _high_inputs(p)
    result.kpd = kpd(ref_x, gen_x, batch_size=config.kpd_batch_size)


def summary_row(result: EvaluationResult) -> dict[str, Any]:
    """The headline figures (used by the demo summary table)."""
    cls = result.classifiers
    return {
        "auc_low": cls["cls-low"].auc_mean if "cls-low" in cls else None,
        "auc_low_normed": cls["cls-low-normed"].auc_mean if "cls-low-normed" in cls else None,
        "auc_high": cls["cls-high"].auc_mean if "cls-high" in cls else None,
        "chi2_per_ndf": result.energy.chi2_per_ndf if result.energy else None,
        "fpd_x1e3": result.fpd.value * 1e3 if result.fpd else None,
        "kpd_x1e3": result.kpd.value * 1e3 if result.kpd else None,
        "w1_mean_normalised": _mean_w1(result.w1),
        "corr_frobenius": result.correlations.frobenius if result.correlations else None,
        "prdc_coverage": result.prdc.coverage if result.prdc else None,
    }


def _mean_w1(distances: list[W1Distance]) -> float | None:
    values = [d.normalised for d in distances if np.isfinite(d.normalised)]
    return float(np.mean(values)) if values else None
