"""One evaluation, end to end: read both files, compute the chosen metric groups, write plots and reports.

Order of work (each a step of the progress bar): read and validate, apply the 1 MeV cut, high-level
features, then the metric groups of ``config.metrics``; ``metrics.json`` and ``index.html`` are written
last, from what was computed. Heavy arrays live only inside this function.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from tqdm import tqdm

from caloflow.data.datasets import dataset
from caloflow.data.features import HighLevelFeatures, compute_features
from caloflow.data.geometry import Geometry
from caloflow.evaluation import plots
from caloflow.evaluation.classifier import RepeatedResult, run_repeated
from caloflow.evaluation.classifier_features import high_level_inputs, low_level_inputs, low_normed_inputs
from caloflow.evaluation.config import CLASSIFIER_MODES, EvaluationConfig
from caloflow.evaluation.correlations import LayerCorrelations, layer_correlations
from caloflow.evaluation.energy import EnergyResponse, energy_response
from caloflow.evaluation.errors import EvaluationError
from caloflow.evaluation.fpd_kpd import Distance, fpd, kpd
from caloflow.evaluation.histograms import HistogramComparison
from caloflow.evaluation.hlf_histograms import family_of, hlf_histograms, voxel_histogram
from caloflow.evaluation.inputs import ShowerSample, load_pair
from caloflow.evaluation.report import write_reports

__all__ = ["EvaluationResult", "evaluate"]

logger = logging.getLogger(__name__)
Array = NDArray[np.float64]

_AXIS_LABELS = {
    "e_ratio": "E_tot / E_inc",
    "e_layer": "layer energy [MeV]",
    "ec_eta": "centre of energy in eta [mm]",
    "ec_phi": "centre of energy in phi [mm]",
    "width_eta": "width in eta [mm]",
    "width_phi": "width in phi [mm]",
    "voxel": "voxel energy [MeV]",
    "sparsity": "sparsity (share of empty voxels)",
    "ec_r": "centre of energy in r [mm]",
    "width_r": "width in r [mm]",
}


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
    plots: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per step


@dataclass
class _Prepared:
    geometry: Geometry
    gen_cut: Array
    ref_cut: Array
    gen_hlf: HighLevelFeatures
    ref_hlf: HighLevelFeatures
    high_inputs: tuple[Array, Array] | None = None


def evaluate(config: EvaluationConfig) -> EvaluationResult:
    """Run the evaluation ``config`` describes and write ``metrics.json``, ``index.html`` and the PNGs."""
    device = _resolve_device(config.device)
    geometry = dataset(config.particle).cylindrical_geometry
    generated, reference = load_pair(config.generated, config.reference, geometry, max_showers=config.max_showers)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    result = EvaluationResult(config, generated, reference, str(device))
    prepared = _prepare(geometry, generated, reference, config.min_energy_mev)
    config.out.mkdir(parents=True, exist_ok=True)
    steps = _steps(config, result, prepared, device)
    for name, step in tqdm(steps, desc=f"evaluate {config.particle}", unit="step", disable=not config.progress):
        start = time.perf_counter()
        step()
        result.seconds[name] = time.perf_counter() - start
        logger.debug("evaluation step %s took %.1f s", name, result.seconds[name])
    write_reports(result)
    return result


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


def _prepare(geometry: Geometry, gen: ShowerSample, ref: ShowerSample, min_energy: float) -> _Prepared:
    gen_cut, ref_cut = gen.cut(min_energy), ref.cut(min_energy)
    return _Prepared(
        geometry,
        gen_cut,
        ref_cut,
        compute_features(gen_cut, geometry, gen.incident_mev),
        compute_features(ref_cut, geometry, ref.incident_mev),
    )


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
    }
    for mode in CLASSIFIER_MODES:
        table[mode] = _classifier_step(mode, config, result, p, device)
    return [(name, table[name]) for name in config.metrics]


def _title(config: EvaluationConfig) -> str:
    return f"{config.particle}: {config.generated.name} vs reference {config.reference.name}"


def _histograms(config: EvaluationConfig, result: EvaluationResult, p: _Prepared) -> None:
    comparisons = [*hlf_histograms(p.ref_hlf, p.gen_hlf, config.min_energy_mev)]
    comparisons.append(voxel_histogram(p.ref_cut, p.gen_cut, config.min_energy_mev))
    result.histograms = comparisons
    for family in dict.fromkeys(family_of(c.name) for c in comparisons):
        members = [c for c in comparisons if family_of(c.name) == family]
        path = config.out / f"hist_{family}.png"
        log_x = family in ("e_layer", "voxel")
        labels = [_AXIS_LABELS[family]] * len(members)
        result.plots.append(plots.plot_histograms(members, path, title=_title(config), labels=labels, log_x=log_x))


def _energy(config: EvaluationConfig, result: EvaluationResult, p: _Prepared) -> None:
    assert p.ref_hlf.e_ratio is not None and p.gen_hlf.e_ratio is not None
    result.energy = energy_response(
        config.particle,
        (result.reference.incident_mev, p.ref_hlf.e_ratio),
        (result.generated.incident_mev, p.gen_hlf.e_ratio),
    )
    if result.energy.bins:
        path = config.out / "e_ratio_per_energy.png"
        result.plots.append(plots.plot_energy_response(result.energy, path, title=_title(config)))


def _average(config: EvaluationConfig, result: EvaluationResult, p: _Prepared) -> None:
    path = config.out / "average_shower.png"
    result.plots.append(
        plots.plot_average_showers(
            p.ref_cut.mean(axis=0), p.gen_cut.mean(axis=0), p.geometry, path, title=_title(config)
        )
    )


def _correlations(config: EvaluationConfig, result: EvaluationResult, p: _Prepared) -> None:
    result.correlations = layer_correlations(p.ref_hlf.layer_ids, p.ref_hlf.e_layer, p.gen_hlf.e_layer)
    path = config.out / "layer_correlations.png"
    result.plots.append(plots.plot_layer_correlations(result.correlations, path, title=_title(config)))


def _high_inputs(p: _Prepared) -> tuple[Array, Array]:
    if p.high_inputs is None:
        p.high_inputs = (high_level_inputs(p.gen_hlf), high_level_inputs(p.ref_hlf))
    return p.high_inputs


def _classifier_inputs(mode: str, result: EvaluationResult, p: _Prepared) -> tuple[Array, Array]:
    gen, ref = result.generated, result.reference
    if mode == "cls-low":
        return low_level_inputs(gen.incident_mev, p.gen_cut), low_level_inputs(ref.incident_mev, p.ref_cut)
    if mode == "cls-low-normed":
        return (
            low_normed_inputs(gen.incident_mev, gen.showers, p.gen_hlf.e_layer, p.geometry),
            low_normed_inputs(ref.incident_mev, ref.showers, p.ref_hlf.e_layer, p.geometry),
        )
    return _high_inputs(p)


def _classifier_step(
    mode: str, config: EvaluationConfig, result: EvaluationResult, p: _Prepared, device: torch.device
) -> Callable[[], None]:
    def step() -> None:
        gen_x, ref_x = _classifier_inputs(mode, result, p)
        result.classifiers[mode] = run_repeated(
            gen_x,
            ref_x,
            config.particle,
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
    }
