"""What the clients return: stream metadata, chunks, whole results and the model listing (numpy, no transport)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["GenerationInfo", "GenerationResult", "ModelInfo", "ModelVersionInfo", "ShowerChunk"]

Float32Array = NDArray[np.float32]
Transport = Literal["http", "grpc"]


@dataclass(frozen=True)
class GenerationInfo:
    """Where a request's showers came from: enough to reproduce them (server, model artifact, seed, indices).

    ``start_index`` and ``count`` are the request's, whatever resumptions happened; ``energy_mev`` is set for the
    homogeneous form (``energy_mev`` + ``count``), None for per-shower energies. ``standin``: the model was
    trained on stand-in data, not Geant4.
    """

    server: str
    transport: Transport
    model: str
    version: int
    particle: str
    artifact_sha256: str
    seed: int
    seed_drawn: bool
    start_index: int
    count: int
    n_voxels: int
    chunk_showers: int
    deterministic: bool
    extrapolated: bool
    standin: bool
    energy_mev: float | None
    dataset: str = ""  # "" only for a hand-made info: a server states it (an old one implies ds1-<particle>)
    shower_shape: tuple[int, ...] = ()  # one shower's natural shape; () means flat (n_voxels,)
    file_layout: str = "calochallenge"  # the official HDF5 layout of the dataset: "calochallenge" or "ild"

    @property
    def shape(self) -> tuple[int, ...]:
        """One shower's natural shape (``(n_voxels,)`` for CaloChallenge datasets, ``(30, 30, 30)`` for ILD)."""
        return self.shower_shape or (self.n_voxels,)

    def provenance(self) -> dict[str, Any]:
        """HDF5 attributes recording this stream (none of them None)."""
        trained_on = "stand-in data (not Geant4)" if self.standin else "the model's training data"
        attrs: dict[str, Any] = {
            "generator": "caloflow-serve",
            "server": self.server,
            "transport": self.transport,
            "model": self.model,
            "model_version": self.version,
            "particle": self.particle,
            "dataset": self.dataset or f"ds1-{self.particle}",
            "shower_shape": list(self.shape),
            "artifact_sha256": self.artifact_sha256,
            "seed": self.seed,
            "seed_drawn": int(self.seed_drawn),
            "start_index": self.start_index,
            "count": self.count,
            "deterministic": int(self.deterministic),
            "extrapolated": int(self.extrapolated),
            "standin": int(self.standin),
            "description": f"CaloFlow showers from {self.model} v{self.version}, trained on {trained_on}",
        }
        if self.energy_mev is not None:
            attrs["energy_mev"] = self.energy_mev
        return attrs


@dataclass(frozen=True)
class ShowerChunk:
    """Showers ``start_index .. start_index + n_showers - 1`` of a stream, float32 MeV ``(n, n_voxels)``."""

    start_index: int
    showers: Float32Array
    incident_energy_mev: Float32Array

    @property
    def n_showers(self) -> int:
        return int(self.showers.shape[0])


@dataclass(frozen=True)
class GenerationResult:
    """A whole request: ``showers`` float32 ``(N, n_voxels)`` MeV, ``incident_energies_mev`` float32 ``(N,)``."""

    showers: Float32Array
    incident_energies_mev: Float32Array
    info: GenerationInfo


@dataclass(frozen=True)
class ModelVersionInfo:
    """One loaded version. Fields only one API reports (``device``, ``max_count`` ... gRPC) are None on the other."""

    version: int
    artifact_sha256: str
    n_voxels: int
    energy_min_mev: float
    energy_max_mev: float
    standin: bool
    backend: str
    device: str | None = None
    description: str | None = None
    deterministic: bool | None = None
    max_count: int | None = None


@dataclass(frozen=True)
class ModelInfo:
    """A served model: its particle and dataset, the version a request without one gets, its loaded versions,
    and whether a request naming only its particle / dataset gets it (None: the API does not say)."""

    name: str
    particle: str
    default_version: int
    versions: tuple[ModelVersionInfo, ...]
    particle_default: bool | None = None
    dataset: str = ""
    dataset_default: bool | None = None
    shower_shape: tuple[int, ...] = ()
    file_layout: str = ""
