"""``quality.json``: the quality report of one served model version (evaluation note section 5.2).

``make_quality_report`` loads the version through the server's verified runtime (what is evaluated is what
is served), generates ``n`` showers at the first ``n`` incident energies of the reference file with seeded
standard-normal noise, timing the generation (showers/s at the stated batch and threads, CPU seconds, the
process's peak RSS), evaluates them against the reference (:func:`caloflow.evaluation.evaluate`), and writes
the report beside the artifacts through ``ModelRepository.write_quality`` (which records its sha256 in
``quality.sha256``; ``caloflow repo verify`` and the server check it). Sections:

* ``reference``: file name, sha256, showers used, and "stand-in, not Geant4" where it is a stand-in file;
* ``evaluator``: the caloflow version, the settings and their hash (:mod:`caloflow.evaluation.settings`);
* ``sample``: seed, precision, device, artifact format and sha256, the hash of the energy multiset;
* ``parameters``: counts from the manifest when it has them, else the ONNX initializer elements per artifact;
* ``speed``, ``memory``; ``gates``: the manifest's precision gate records (``extra.precision_gates``; [] without them);
* ``headline`` (the summary figures) and ``metrics`` (everything ``metrics.json`` holds but paths and plots).

A crop model (manifest ``geometry.crop``, e.g. L2LFlows on the central ILD cells) is written in its dataset's
layout with the crop embedded and evaluated on the crop region only (``--crop`` of the evaluation, recorded in
the settings and in ``metrics.crop``): its figures describe that region, not the whole grid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from caloflow import __version__
from caloflow.bench.memory import peak_rss_bytes
from caloflow.evaluation.classifier import ClassifierSettings
from caloflow.evaluation.config import METRICS, EvaluationConfig
from caloflow.evaluation.demo import DemoConfig
from caloflow.evaluation.errors import EvaluationError
from caloflow.evaluation.report import STANDIN_NOTICE, metrics_dict
from caloflow.evaluation.run import evaluate, summary_row
from caloflow.evaluation.served import served_crop, write_served_showers
from caloflow.evaluation.settings import evaluator_settings, settings_hash
from caloflow_repo import DEFAULT_PRECISION, PRECISIONS, check_precision_gates

__all__ = ["QUALITY_SCHEMA", "QualityConfig", "gate_records", "make_quality_report", "summary_lines"]

logger = logging.getLogger(__name__)
QUALITY_SCHEMA = "caloflow-quality/1"
STANDIN_LABEL = "stand-in, not Geant4"
# QualityConfig fields handed to EvaluationConfig under the same name
_EVALUATION_FIELDS: tuple[str, ...] = ("metrics", "runs", "seed", "device", "classifier", "fpd_min_samples")
_EVALUATION_FIELDS += ("fpd_max_samples", "kpd_batch_size", "prdc_k", "prdc_max_samples", "threads", "progress")


@dataclass(frozen=True)
class QualityConfig:
    repo: Path
    model: str
    reference: Path
    version: int | None = None  # None: the default version
    n: int = 10_000
    seed: int = 0
    batch: int = 1_000
    threads: int = 1
    device: str = "cpu"
    # the evaluation (the settings hash covers these); defaults: the quick settings of ``make eval-demo``
    metrics: tuple[str, ...] = METRICS
    runs: int = DemoConfig.runs
    classifier: ClassifierSettings = field(default_factory=lambda: DemoConfig().classifier)
    fpd_min_samples: int = DemoConfig.fpd_min_samples
    fpd_max_samples: int = DemoConfig.fpd_max_samples
    kpd_batch_size: int = DemoConfig.kpd_batch_size
    prdc_k: int = 5
    prdc_max_samples: int = 10_000
    progress: bool = True
    keep: Path | None = None  # keep generated.h5 and evaluation/ (index.html, plots) here; None: a scratch dir


@dataclass(frozen=True)
class _Speed:
    showers_per_s: float | None
    wall_seconds: float
    cpu_seconds: float
    peak_host_rss_bytes: int


def make_quality_report(config: QualityConfig) -> tuple[Path, dict[str, Any]]:
    """Generate, evaluate and write ``quality.json`` for the version; returns its path and contents."""
    from caloflow_repo import ModelRepository
    from caloflow_server.runtime import load_runtime

    if config.n < 2 or config.batch < 1 or config.threads < 1:
        raise EvaluationError("--n must be at least 2, --batch and --threads positive")
    repository = ModelRepository(config.repo)
    loaded = load_runtime(
        repository, config.model, config.version, device=config.device, intra_op_threads=config.threads
    )
    energies = _reference_energies(config, loaded.manifest.dataset)
    with _work_dir(config.keep) as scratch:
        generated = Path(scratch) / "generated.h5"
        timing = write_served_showers(
            loaded, energies, generated, seed=config.seed, batch=config.batch, purpose="quality report samples"
        )
        speed = _Speed(timing.showers_per_s, timing.wall_seconds, timing.cpu_seconds, peak_rss_bytes())
        evaluation = _evaluation_config(config, loaded.manifest, generated, Path(scratch) / "evaluation")
        result = evaluate(evaluation)
        metrics = metrics_dict(result)
        headline = summary_row(result)
    report = _report(config, loaded, evaluation, metrics, headline, speed, energies)
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    path = repository.write_quality(loaded.model, loaded.version, text)
    return path, report


def _work_dir(keep: Path | None) -> contextlib.AbstractContextManager[str]:
    if keep is None:
        return tempfile.TemporaryDirectory(prefix="caloflow-quality-")
    keep.mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(str(keep))


def _reference_energies(config: QualityConfig, dataset_name: str) -> NDArray[np.float64]:
    from caloflow.data.datasets import dataset
    from caloflow.data.hdf5 import read_incident_energies

    try:
        energies = read_incident_energies(config.reference, layout=dataset(dataset_name).layout)
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"--reference {config.reference}: {exc}") from exc
    if len(energies) < config.n:
        raise EvaluationError(
            f"--reference {config.reference}: holds {len(energies)} showers, fewer than --n {config.n}"
        )
    return np.asarray(energies[: config.n], dtype=np.float64)


def _evaluation_config(config: QualityConfig, manifest: Any, generated: Path, out: Path) -> EvaluationConfig:
    """A crop model (manifest ``geometry.crop``) is evaluated on its crop region only."""
    shared = {name: getattr(config, name) for name in _EVALUATION_FIELDS}
    region = served_crop(manifest)
    return EvaluationConfig(
        generated=generated,
        reference=config.reference,
        dataset=manifest.dataset,
        out=out,
        max_showers=config.n,
        crop=None if region is None else region.text(),
        **shared,
    )


def _report(
    config: QualityConfig,
    loaded: Any,
    evaluation: EvaluationConfig,
    metrics: dict[str, Any],
    headline: dict[str, Any],
    speed: _Speed,
    energies: NDArray[np.float64],
) -> dict[str, Any]:
    from caloflow_repo import sha256_file, utc_now_iso

    reference = metrics["files"]["reference"]
    settings = evaluator_settings(evaluation, metrics["n_showers"])
    report: dict[str, Any] = {
        "schema": QUALITY_SCHEMA,
        "model": loaded.model,
        "version": loaded.version,
        "created_utc": utc_now_iso(),
        **({"notice": STANDIN_NOTICE} if "notice" in metrics else {}),
        "reference": {
            "file": config.reference.name,
            "sha256": sha256_file(config.reference),
            "n_in_file": reference["n_in_file"],
            "n_used": reference["n_used"],
            "standin": reference["standin"],
            "label": STANDIN_LABEL if reference["standin"] else "as described in the file",
            "description": reference["description"],
        },
        "evaluator": {"caloflow_version": __version__, "settings": settings, "settings_hash": settings_hash(settings)},
        "sample": {
            "seed": config.seed,
            "n": len(energies),
            "energies": "the first n incident energies of the reference file",
            "energy_multiset_sha256": hashlib.sha256(np.sort(energies.astype(np.float32)).tobytes()).hexdigest(),
            "noise": "standard normal, numpy default_rng(seed), float32, drawn batch by batch",
            "precision": DEFAULT_PRECISION,  # LoadedModel.run runs the fp32-strict runtime
            "device": str(loaded.runtime.device),
            "artifact": loaded.artifact.filename,
            "format": loaded.artifact.format,
            "artifact_sha256": loaded.sha256,
        },
        "parameters": _parameters(config, loaded),
        "speed": {
            "showers_per_s": speed.showers_per_s,
            "batch": config.batch,
            "threads": config.threads,
            "wall_seconds": speed.wall_seconds,
            "cpu_seconds": speed.cpu_seconds,
            "measured": "the model calls of this command only (noise and writing excluded), on a possibly busy machine",
        },
        "memory": {"peak_host_rss_bytes": speed.peak_host_rss_bytes, "at": "after generation, before evaluation"},
        "gates": gate_records(loaded.manifest),
        "headline": headline,
        "metrics": _portable(metrics),
    }
    return report


def _portable(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics.json`` without what names this run's scratch files (paths become file names; no plot list)."""
    files = {role: {**entry, "path": Path(entry["path"]).name} for role, entry in metrics["files"].items()}
    return {k: v for k, v in metrics.items() if k != "plots"} | {"files": files}


def gate_records(manifest: Any) -> list[dict[str, Any]]:
    """The manifest's precision gate records (``extra.precision_gates``, written by ``caloflow repo gate``) as a
    list, one ``{"mode": ..., ...}`` per gated mode in ``PRECISIONS`` order; [] when it has none."""
    gates = check_precision_gates(manifest.extra)
    return [{**gates[mode], "mode": mode} for mode in PRECISIONS if mode in gates]


def _parameters(config: QualityConfig, loaded: Any) -> dict[str, Any]:
    manifest = loaded.manifest
    for section in (manifest.training, manifest.extra):
        counts = section.get("parameters") or section.get("parameter_counts")
        if isinstance(counts, dict):
            return {"source": "manifest", **counts}
    version_dir = config.repo / loaded.model / str(loaded.version)
    per_artifact = {
        a.filename: _onnx_initializer_elements(version_dir / a.filename)
        for a in manifest.artifacts
        if a.filename.endswith(".onnx")
    }
    return {"source": "elements of each ONNX artifact's initializers (weights and constants)", **per_artifact}


def _onnx_initializer_elements(path: Path) -> int:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return int(sum(int(np.prod(init.dims)) for init in graph.initializer))


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _gate_line(gate: dict[str, Any]) -> str:
    return f"{gate.get('mode', '?')} {gate.get('verdict', '?')} on {gate.get('device_class', '?')}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A few lines for ``caloflow repo show`` and the command's printout."""
    ref, ev, sample, speed = report["reference"], report["evaluator"], report["sample"], report["speed"]
    h, m = report.get("headline", {}), report.get("metrics", {})
    corr, prdc = m.get("layer_correlations", {}), m.get("prdc", {})
    rss = report.get("memory", {}).get("peak_host_rss_bytes")
    gates = report.get("gates", [])
    crop = m.get("crop")
    return [
        f"reference {ref['file']} ({ref['label']}), sha256 {ref['sha256'][:16]}, N = {ref['n_used']}",
        *([f"crop region x0:x1,z0:z1 = {crop['cells']} only (not the whole grid)"] if crop else []),
        f"evaluator settings {ev['settings_hash'][:16]} (caloflow {ev['caloflow_version']})",
        f"sample: seed {sample['seed']}, {sample['precision']}, {sample['device']}, {sample['artifact']}",
        f"AUC low {_fmt(h.get('auc_low'))}, low-normed {_fmt(h.get('auc_low_normed'))}, "
        f"high {_fmt(h.get('auc_high'))}; FPD x1e3 {_fmt(h.get('fpd_x1e3'))}; KPD x1e3 {_fmt(h.get('kpd_x1e3'))}; "
        f"chi2/NDF {_fmt(h.get('chi2_per_ndf'))}",
        f"W1/std mean {_fmt(h.get('w1_mean_normalised'))}; corr Frobenius {_fmt(corr.get('frobenius'))} (split-half "
        f"floor {_fmt(corr.get('frobenius_split_half_floor'))}); PRDC "
        + "/".join(_fmt(prdc.get(k)) for k in ("precision", "recall", "density", "coverage")),
        f"speed {_fmt(speed['showers_per_s'], 4)} showers/s at batch {speed['batch']}, {speed['threads']} thread(s);"
        f" peak host RSS {_fmt(None if rss is None else rss / 2**20, 4)} MiB",
        f"gates: {len(gates)} record(s)" + (f" ({', '.join(_gate_line(g) for g in gates)})" if gates else ""),
    ]
