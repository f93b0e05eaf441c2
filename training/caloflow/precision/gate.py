"""The fidelity gate of one precision mode of one model version (the note's section 5.1).

``evaluate_gate`` samples ``n`` seeded showers in the mode and in ``fp32-strict`` with the same energies and noise
and evaluates them against the float64 graph (tier A: paired differences, threshold flips), checks sanity (B4),
trains a classifier between the mode's showers and fp32-strict showers of independent noise (B1: AUC <= 0.5 +
max(0.01, 3 sigma), sigma of an uninformative classifier on the validation split), compares the observables'
distributions with fp32's run-to-run spread (B2/B3, two fp32 noise seeds) and measures the speed-up (interleaved,
same process). The verdict is ``pass`` only when every check passes, the speed-up included (>= 1.10 at the gate
batch). ``gate_model_version`` wires it to a repository version and returns the manifest record.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
import torch
from numpy.typing import NDArray

from caloflow.evaluation.classifier import ClassifierSettings, Split, run_classifier
from caloflow.precision import checks
from caloflow_repo import DEFAULT_PRECISION, Manifest, ModelRepository, utc_now_iso
from caloflow_server._device import device_class
from caloflow_server._onnx_precision import float64_graph
from caloflow_server.runtime import build_runtime

logger = logging.getLogger(__name__)

MIN_SPEEDUP = 1.10
"""A mode must be at least this much faster than fp32-strict at the gate batch (the note: >= 1.10x)."""


class Runner(Protocol):
    def run(self, incident_mev: np.ndarray, noise: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class GateSettings:
    n: int = 10_000
    seed: int = 1
    batch: int = 1_000
    classifier_hidden: int = 256
    classifier_epochs: int = 10
    speed_repeats: int = 5


@dataclass(frozen=True)
class GateShape:
    """What the gate needs of a model version: its signature, energy range, layers and voxel threshold."""

    noise_dim: int
    n_voxels: int
    energy_range_mev: tuple[float, float]
    layer_offsets: tuple[int, ...]
    threshold_mev: float

    @classmethod
    def of(cls, manifest: Manifest) -> GateShape:
        offsets = manifest.geometry.get("layer_offsets") or [0, manifest.n_voxels]
        threshold = float(manifest.preprocessing.get("threshold_mev", 0.0))
        low, high = manifest.energy_range_mev
        return cls(manifest.noise_dim, manifest.n_voxels, (low, high), tuple(offsets), threshold)


def gate_inputs(shape: GateShape, n: int, seed: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Seeded energies (log-uniform over the trained range, ``(n, 1)``) and standard-normal noise."""
    rng = np.random.default_rng(seed)
    low, high = shape.energy_range_mev
    energies = np.exp(rng.uniform(np.log(low), np.log(high), size=(n, 1))).astype(np.float32)
    return energies, rng.standard_normal((n, shape.noise_dim), dtype=np.float32)


def sample(runner: Runner, energies: np.ndarray, noise: np.ndarray, batch: int) -> NDArray[np.float64]:
    parts = [runner.run(energies[i : i + batch], noise[i : i + batch]) for i in range(0, len(energies), batch)]
    return np.concatenate(parts).astype(np.float64)


def evaluate_gate(
    candidate: Runner, fp32: Runner, exact: Runner, shape: GateShape, settings: GateSettings
) -> dict[str, Any]:
    """Every check of the gate; a JSON-ready dict with ``verdict``, ``failed`` and ``checks``."""
    energies, noise = gate_inputs(shape, settings.n, settings.seed)
    _, other_noise = gate_inputs(shape, settings.n, settings.seed + 1)
    exact_showers = exact.run(energies.astype(np.float64), noise.astype(np.float64)).astype(np.float64)
    mode_same = sample(candidate, energies, noise, settings.batch)
    fp32_same = sample(fp32, energies, noise, settings.batch)
    mode_other = sample(candidate, energies, other_noise, settings.batch)
    fp32_other = sample(fp32, energies, other_noise, settings.batch)
    observe = _observer(energies, shape)
    results = {
        "sanity": checks.sanity(mode_same.astype(np.float32), energies),
        "paired": checks.paired_check(mode_same, fp32_same, exact_showers, shape.threshold_mev),
        "classifier": classifier_check(mode_other, fp32_same, energies, settings),
        "distribution": checks.distribution_check(observe(mode_other), observe(fp32_same), observe(fp32_other)),
        "speed": speed_check(candidate, fp32, shape, settings),
    }
    failed = [name for name, result in results.items() if not result["pass"]]
    return {"verdict": "fail" if failed else "pass", "failed": failed, "checks": results}


def _observer(energies: np.ndarray, shape: GateShape) -> Callable[[np.ndarray], dict[str, NDArray[np.float64]]]:
    incident = energies.astype(np.float64)
    return lambda showers: checks.observables(showers, incident, shape.layer_offsets, shape.threshold_mev)


def classifier_check(
    mode: np.ndarray, fp32: np.ndarray, energies: np.ndarray, settings: GateSettings
) -> dict[str, Any]:
    """B1: a DNN separating mode showers from fp32-strict showers (independent noise, same energies)."""
    n = len(mode)
    train, test = n * 6 // 10, n * 2 // 10
    split = Split(train, test, n - train - test)
    classifier = ClassifierSettings(hidden=settings.classifier_hidden, epochs=settings.classifier_epochs)
    result = run_classifier(
        _features(mode, energies),
        _features(fp32, energies),
        split,
        classifier,
        seed=settings.seed,
        device=torch.device("cpu"),
        desc="precision gate classifier",
        progress=False,
    )
    sigma = checks.auc_sigma(split.validation)
    limit = 0.5 + max(0.01, 3 * sigma)
    return {
        "pass": bool(result.auc <= limit),
        "auc": result.auc,
        "auc_uncalibrated": result.auc_uncalibrated,
        "sigma": sigma,
        "limit": limit,
        "sigma_rule": "sqrt((2 n + 1) / (12 n^2)), n = validation showers per class",
        "split": asdict(split),
        "hidden": settings.classifier_hidden,
        "epochs": settings.classifier_epochs,
        "features": "voxel energy / E_inc, log10(E_inc) / 6, log10(E_tot / E_inc)",
    }


def _features(showers: np.ndarray, energies: np.ndarray) -> NDArray[np.float32]:
    """Voxel fractions of E_inc, log10(E_inc) / 6 and log10(E_tot / E_inc) (clipped: an overflowing shower
    stays a finite, very separable input)."""
    e_inc = energies.astype(np.float64).reshape(-1, 1)
    fractions = np.clip(np.nan_to_num(showers, posinf=1e30) / e_inc, 0.0, 1e3)
    response = np.log10(np.clip(fractions.sum(axis=1, keepdims=True), 1e-6, 1e3))
    return np.concatenate([fractions, np.log10(e_inc) / 6.0, response], axis=1).astype(np.float32)


def speed_check(candidate: Runner, fp32: Runner, shape: GateShape, settings: GateSettings) -> dict[str, Any]:
    """Median wall time per call of each runner at batch 1 and the gate batch, interleaved in one process."""
    batches: dict[str, dict[str, float]] = {}
    for batch in sorted({1, settings.batch}):
        energies, noise = gate_inputs(shape, batch, settings.seed)
        repeats = settings.speed_repeats * (20 if batch == 1 else 1)
        times = _interleaved({"fp32": fp32, "mode": candidate}, energies, noise, repeats)
        batches[str(batch)] = {
            "fp32_ms": times["fp32"] * 1e3,
            "mode_ms": times["mode"] * 1e3,
            "speedup": times["fp32"] / times["mode"],
        }
    speedup = batches[str(settings.batch)]["speedup"]
    return {"pass": bool(speedup >= MIN_SPEEDUP), "min_speedup": MIN_SPEEDUP, "at_batch": settings.batch, **batches}


def _interleaved(runners: dict[str, Runner], energies: np.ndarray, noise: np.ndarray, repeats: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for runner in runners.values():
        runner.run(energies, noise)  # warm-up
    for _ in range(repeats):
        for name, runner in runners.items():
            start = time.perf_counter()
            runner.run(energies, noise)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


class Float64Graph:
    """The version's ONNX graph with every float32 tensor in float64 (the gate's exact reference)."""

    def __init__(self, model: bytes, threads: int | None = None) -> None:
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(float64_graph(model), options, providers=["CPUExecutionProvider"])

    def run(self, incident_mev: np.ndarray, noise: np.ndarray) -> np.ndarray:
        feeds = {"INCIDENT_ENERGY": incident_mev.astype(np.float64), "NOISE": noise.astype(np.float64)}
        (showers,) = self._session.run(["SHOWERS"], feeds)
        return np.asarray(showers)


def gate_model_version(
    repository: ModelRepository,
    model: str,
    version: int | str | None,
    mode: str,
    *,
    device: str = "cpu",
    settings: GateSettings = GateSettings(),
    threads: int | None = None,
    formats: Sequence[str] = ("fast_onnx", "onnx"),
) -> dict[str, Any]:
    """Gate ``mode`` of ``model@version`` on ``device`` and return the manifest record (not yet written)."""
    if mode == DEFAULT_PRECISION:
        raise ValueError(f"{DEFAULT_PRECISION} is the reference and needs no gate")
    manifest = repository.verify(model, version)
    artifact = next((a for f in formats for a in manifest.artifacts if a.format == f), None)
    if artifact is None:
        raise ValueError(f"{model}@{manifest.version} has no {' or '.join(formats)} artifact to gate")
    data = repository.artifact_path(model, manifest.version, artifact.filename).read_bytes()
    if hashlib.sha256(data).hexdigest() != artifact.sha256:
        raise ValueError(f"{artifact.filename}: changed since it was verified")
    fp32 = build_runtime(data, artifact, manifest, device, threads)
    candidate = build_runtime(data, artifact, manifest, device, threads, mode)
    started = time.perf_counter()
    outcome = evaluate_gate(candidate, fp32, Float64Graph(data, threads), GateShape.of(manifest), settings)
    return {
        "mode": mode,
        "device_class": device_class(device),
        "device": device,
        "verdict": outcome["verdict"],
        "failed": outcome["failed"],
        "timestamp_utc": utc_now_iso(),
        "artifact": artifact.filename,
        "artifact_sha256": artifact.sha256,
        "n": settings.n,
        "seeds": {"energies_and_noise": settings.seed, "second_noise": settings.seed + 1, "classifier": settings.seed},
        "batch": settings.batch,
        "threads": threads,
        "threshold_mev": GateShape.of(manifest).threshold_mev,
        "versions": _versions(),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "checks": outcome["checks"],
    }


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": ort.__version__}
    for package in ("numpy", "onnx", "caloflow"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions
