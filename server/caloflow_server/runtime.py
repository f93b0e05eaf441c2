"""A loaded sampler on a device: the ``Runtime`` protocol, its backends, and loading through the repository.

A model is loaded only through ``load_runtime``: the repository verifies the sha256 and size of every artifact
of the version, and the chosen artifact's bytes are read once, checked again against the manifest, and given
to the backend as bytes, so what runs is exactly what was verified.

``Runtime.run`` returns the raw model output. Nothing leaves the server without ``check_showers``:
``LoadedModel.run`` and the ``Batcher`` apply it (the batcher per request, so one bad shower fails only the
request it belongs to).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from torch import Tensor

from caloflow_repo import (
    DEFAULT_PRECISION,
    ArtifactInfo,
    Manifest,
    ModelNotFoundError,
    ModelRepository,
    RepositoryError,
    VersionNotFoundError,
    default_precision,
    enabled_precisions,
)
from caloflow_repo import ChecksumError as RepoChecksumError
from caloflow_server._aoti_backend import AotiBackend, check_parity
from caloflow_server._device import device_class
from caloflow_server._onnx_backend import OnnxRuntimeBackend
from caloflow_server._torchscript_backend import TorchScriptBackend
from caloflow_server.aoti_cache import compiled_package
from caloflow_server.errors import (
    ArtifactIntegrityError,
    InferenceError,
    NonFiniteOutputError,
    RuntimeLoadError,
    UnknownModelError,
    UnknownVersionError,
)

__all__ = [
    "BackendName",
    "LoadedModel",
    "OnnxRuntimeBackend",
    "Runtime",
    "TorchScriptBackend",
    "build_runtime",
    "check_showers",
    "load_runtime",
]

logger = logging.getLogger(__name__)

BackendName = Literal["onnx", "torchscript", "aoti", "auto"]
_ONNX_FORMATS = ("fast_onnx", "onnx")
"""Artifact formats ONNX Runtime runs, preferred first: the fast graph, then the plain one (same I/O)."""
_COMPILED_FORMATS = ("fast_torch_export", "torch_export")
"""torch.export programs the ``aoti`` backend compiles for this machine (``aoti_cache``), preferred first."""
_FORMATS_OF_BACKEND: dict[str, tuple[str, ...]] = {
    "aoti": _COMPILED_FORMATS,
    "auto": (*_ONNX_FORMATS, "torchscript"),
    "onnx": _ONNX_FORMATS,
    "torchscript": ("torchscript",),
}


@runtime_checkable
class Runtime(Protocol):
    """A sampler on a device: ``run(incident (B, 1) MeV, noise (B, noise_dim)) -> showers (B, n_voxels) MeV``."""

    @property
    def backend(self) -> str: ...

    @property
    def device(self) -> str: ...

    @property
    def noise_dim(self) -> int: ...

    @property
    def n_voxels(self) -> int: ...

    def run(self, incident_mev: np.ndarray, noise: np.ndarray | Tensor) -> np.ndarray: ...

    def warm_up(self, batch_sizes: Sequence[int], energy_mev: float = ...) -> None: ...


def check_showers(showers: np.ndarray, n_voxels: int) -> np.ndarray:
    """Return ``showers`` if it is a finite, non-negative (B, n_voxels) float32 array.

    NaN, infinite or negative voxels raise ``NonFiniteOutputError`` with their counts; a wrong shape or dtype
    raises ``InferenceError``.
    """
    _check_shape(showers, n_voxels)
    if showers.size and not (showers.min() >= 0.0 and showers.max() < math.inf):
        raise _bad_output(showers)
    return showers


def _check_shape(showers: np.ndarray, n_voxels: int) -> None:
    if showers.dtype != np.float32 or showers.ndim != 2 or showers.shape[1] != n_voxels:
        raise InferenceError(f"model returned {showers.dtype} {showers.shape}, expected float32 (B, {n_voxels})")


def _bad_output(showers: np.ndarray) -> NonFiniteOutputError:
    nonfinite = ~np.isfinite(showers)
    negative = showers < 0.0
    bad_rows = int(np.count_nonzero((nonfinite | negative).any(axis=1)))
    return NonFiniteOutputError(int(nonfinite.sum()), int(negative.sum()), bad_rows, showers.shape[0])


@dataclass(frozen=True)
class LoadedModel:
    """One verified model version on a device: its manifest, the artifact that runs, and the runtime.

    ``runtime`` runs ``fp32-strict``; ``reduced`` holds a runtime per other precision mode the manifest's gate
    records enable on ``device_class`` for this artifact; ``default_precision`` is what a request naming none gets.
    """

    manifest: Manifest
    artifact: ArtifactInfo
    runtime: Runtime
    reduced: Mapping[str, Runtime] = field(default_factory=dict)
    default_precision: str = DEFAULT_PRECISION
    device_class: str = "cpu"

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precision modes this version serves: ``fp32-strict`` first, then the gated ones."""
        return (DEFAULT_PRECISION, *self.reduced)

    def runtime_for(self, precision: str) -> Runtime:
        return self.runtime if precision == DEFAULT_PRECISION else self.reduced[precision]

    @property
    def model(self) -> str:
        return self.manifest.model

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def sha256(self) -> str:
        return self.artifact.sha256

    def run(self, incident_mev: np.ndarray, noise: np.ndarray | Tensor) -> np.ndarray:
        """The runtime's output after ``check_showers``: the single-call path that may leave the server."""
        return check_showers(self.runtime.run(incident_mev, noise), self.manifest.n_voxels)

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        low, high = self.manifest.energy_range_mev
        self.runtime.warm_up(batch_sizes, energy_mev=math.sqrt(low * high))


def load_runtime(
    repository: ModelRepository,
    model: str,
    version: int | str | None = None,
    *,
    backend: BackendName = "auto",
    device: str = "cpu",
    intra_op_threads: int | None = None,
    compile_cache: Path | None = None,
) -> LoadedModel:
    """Verify ``model@version`` (default: the default version) and load one of its artifacts on ``device``.

    ``backend="auto"`` prefers the compiled program (``aoti``, when ``compile_cache`` is given and the version
    has a torch.export artifact; if it cannot be compiled or fails parity, the next one, with a warning), then
    the fast ONNX artifact (``model.fast.onnx``), then the plain ONNX one, then TorchScript; ``backend="onnx"``
    takes either ONNX artifact, the fast one first; ``backend="aoti"`` compiles ``model.fast.pt2``
    (``fast_torch_export``), else ``model.pt2`` (``torch_export``), for this CPU into ``compile_cache`` (or
    reuses it there) and checks parity against the version's ONNX artifact before returning.
    """
    manifest = _verify(repository, model, version)
    compiled = _compiled_choice(repository, manifest, backend, compile_cache, device, intra_op_threads)
    reduced: dict[str, Runtime] = {}
    if compiled is not None:
        # Gate records name the ONNX/TorchScript artifact they were measured on: the compiled program serves
        # fp32-strict only.
        artifact, runtime = compiled
        klass = device_class(device)
        enabled: tuple[str, ...] = (DEFAULT_PRECISION,)
    else:
        artifact = _choose_artifact(manifest, backend)
        data = _read_verified(repository, manifest, artifact)
        runtime = build_runtime(data, artifact, manifest, device, intra_op_threads)
        klass = device_class(device)  # after the runtime: a device this build cannot run is refused there first
        enabled = tuple(enabled_precisions(manifest.extra, klass, artifact.sha256))
        reduced = {
            mode: build_runtime(data, artifact, manifest, device, intra_op_threads, mode)
            for mode in enabled
            if mode != DEFAULT_PRECISION
        }
    logger.info(
        "loaded %s@%d (%s, sha256 %s) on %s (%s); precisions %s",
        manifest.model,
        manifest.version,
        artifact.filename,
        artifact.sha256[:12],
        runtime.device,
        klass,
        ", ".join(enabled),
    )
    return LoadedModel(manifest, artifact, runtime, reduced, default_precision(manifest.extra, enabled), klass)


def _verify(repository: ModelRepository, model: str, version: int | str | None) -> Manifest:
    try:
        return repository.verify(model, version)
    except ModelNotFoundError as exc:
        raise UnknownModelError(str(exc)) from exc
    except VersionNotFoundError as exc:
        raise UnknownVersionError(str(exc)) from exc
    except RepoChecksumError as exc:
        raise ArtifactIntegrityError(str(exc)) from exc
    except RepositoryError as exc:
        raise RuntimeLoadError(f"cannot load {model}@{version}: {exc}") from exc


def _has(manifest: Manifest, fmt: str) -> bool:
    return any(artifact.format == fmt for artifact in manifest.artifacts)


def _compiled_choice(
    repository: ModelRepository,
    manifest: Manifest,
    backend: BackendName,
    compile_cache: Path | None,
    device: str,
    intra_op_threads: int | None,
) -> tuple[ArtifactInfo, Runtime] | None:
    """The compiled program where ``backend`` asks for it (``aoti``) or prefers it (``auto`` with a cache and a
    torch.export artifact); None where it does not, or where ``auto`` cannot compile it or it fails parity."""
    compilable = any(_has(manifest, fmt) for fmt in _COMPILED_FORMATS)
    if backend != "aoti" and not (backend == "auto" and compile_cache is not None and compilable):
        return None
    artifact = _choose_artifact(manifest, "aoti")
    try:
        return artifact, _compiled_runtime(repository, manifest, artifact, compile_cache, device, intra_op_threads)
    except ArtifactIntegrityError:
        raise
    except RuntimeLoadError as exc:
        if backend == "aoti":
            raise
        logger.warning("%s@%d: not serving the compiled program: %s", manifest.model, manifest.version, exc)
        return None


def _compiled_runtime(
    repository: ModelRepository,
    manifest: Manifest,
    artifact: ArtifactInfo,
    compile_cache: Path | None,
    device: str,
    intra_op_threads: int | None,
) -> AotiBackend:
    """The torch.export artifact compiled for this CPU, after parity with the version's ONNX artifact."""
    if compile_cache is None:
        raise RuntimeLoadError("the aoti backend needs a compile cache directory (--compile-cache)")
    if device != "cpu":
        raise RuntimeLoadError(f"the aoti backend compiles for the CPU only, asked for {device}")
    if not _has(manifest, "onnx") and not _has(manifest, "fast_onnx"):
        raise RuntimeLoadError(f"{manifest.model}@{manifest.version} has no ONNX artifact to check parity against")
    package = compiled_package(compile_cache, artifact.sha256, _read_verified(repository, manifest, artifact))
    runtime = AotiBackend(
        package, device, noise_dim=manifest.noise_dim, n_voxels=manifest.n_voxels, intra_op_threads=intra_op_threads
    )
    reference_artifact = _choose_artifact(manifest, "onnx")
    reference = build_runtime(
        _read_verified(repository, manifest, reference_artifact), reference_artifact, manifest, "cpu", intra_op_threads
    )
    check_parity(runtime, reference, manifest.energy_range_mev, manifest.noise_dim)
    logger.info(
        "%s@%d runs %s (parity with %s)", manifest.model, manifest.version, package, reference_artifact.filename
    )
    return runtime


def _choose_artifact(manifest: Manifest, backend: BackendName) -> ArtifactInfo:
    wanted = _FORMATS_OF_BACKEND[backend]
    for fmt in wanted:
        for artifact in manifest.artifacts:
            if artifact.format == fmt:
                return artifact
    formats = sorted({artifact.format for artifact in manifest.artifacts})
    raise RuntimeLoadError(f"{manifest.model}@{manifest.version} has no {' or '.join(wanted)} artifact ({formats})")


def _read_verified(repository: ModelRepository, manifest: Manifest, artifact: ArtifactInfo) -> bytes:
    """The artifact's bytes, read once and checked against the manifest (closes the verify-then-open gap)."""
    try:
        path = repository.artifact_path(manifest.model, manifest.version, artifact.filename)
        data = path.read_bytes()
    except (RepositoryError, OSError) as exc:
        raise RuntimeLoadError(f"cannot read {artifact.filename}: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != artifact.size_bytes or digest != artifact.sha256:
        raise ArtifactIntegrityError(
            f"{path}: read {len(data)} bytes with sha256 {digest}, the manifest says {artifact.size_bytes} bytes "
            f"with sha256 {artifact.sha256} (changed after verification)"
        )
    return data


def build_runtime(
    data: bytes,
    artifact: ArtifactInfo,
    manifest: Manifest,
    device: str,
    intra_op_threads: int | None = None,
    precision: str = DEFAULT_PRECISION,
) -> Runtime:
    """The verified artifact ``data`` in ``precision`` on ``device``, gated or not (the gate itself uses this)."""
    noise_dim, n_voxels = manifest.noise_dim, manifest.n_voxels
    if artifact.format in _ONNX_FORMATS:
        return OnnxRuntimeBackend(
            data, device, intra_op_threads=intra_op_threads, noise_dim=noise_dim, n_voxels=n_voxels, precision=precision
        )
    return TorchScriptBackend(data, device, noise_dim=noise_dim, n_voxels=n_voxels, precision=precision)
