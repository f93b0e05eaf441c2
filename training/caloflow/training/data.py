"""Training data: a CaloChallenge file read once into device tensors, split 70/30 in file order.

The reference loader converted to a custom per-layer HDF5 layout (converter not published) and built every
batch with a per-sample numpy ``__getitem__``. Here the whole split lives on the training device as float32
in units of 100 GeV, and noise, layer sums and logits are computed per batch, vectorised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from caloflow.data.geometry import Geometry
from caloflow.data.hdf5 import ShowerFileInfo, check_shower_chunk, iter_showers, open_shower_file
from caloflow.preprocessing import ENERGY_UNIT_MEV

TRAIN_FRACTION = 0.7
"""Dataset 1 convention: the first 70 % of ``*_1.hdf5`` trains, the last 30 % selects models."""


@dataclass(frozen=True)
class ShowerTensors:
    showers: Tensor
    """(N, V) voxel energies in units of 100 GeV (CaloFlow; another family may hold (N, ...) cells in its unit)."""
    incident: Tensor
    """(N, 1) incident energies in the same unit."""

    def __len__(self) -> int:
        return int(self.showers.shape[0])

    def subset(self, index: Tensor) -> ShowerTensors:
        return ShowerTensors(self.showers[index], self.incident[index])

    def head(self, n: int) -> ShowerTensors:
        return ShowerTensors(self.showers[:n], self.incident[:n])


@dataclass(frozen=True)
class FileProvenance:
    """Which file a model family's training data came from (every family's data records this)."""

    path: str
    sha256: str
    n_in_file: int
    attrs: dict[str, object]

    @property
    def is_standin(self) -> bool:
        return "stand-in" in str(self.attrs.get("description", ""))

    @staticmethod
    def fields_of(path: str | Path, info: ShowerFileInfo) -> dict[str, Any]:
        """The provenance fields of the file at ``path`` (its checksum is computed here)."""
        return {"path": str(path), "sha256": file_sha256(path), "n_in_file": info.n_showers, "attrs": dict(info.attrs)}


@dataclass(frozen=True)
class TrainingData(FileProvenance):
    train: ShowerTensors
    validation: ShowerTensors


def file_sha256(path: str | Path, block_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(block_size), b""):
            digest.update(block)
    return digest.hexdigest()


def load_training_data(
    path: str | Path,
    geometry: Geometry,
    *,
    train_fraction: float = TRAIN_FRACTION,
    max_showers: int | None = None,
    device: torch.device | str = "cpu",
) -> TrainingData:
    """Load ``path`` (optionally only its first ``max_showers``), validating every row it reads."""
    info = open_shower_file(path, geometry)
    n = info.n_showers if max_showers is None else min(max_showers, info.n_showers)
    showers = np.empty((n, geometry.n_voxels), dtype=np.float32)
    incident = np.empty((n, 1), dtype=np.float32)
    filled = 0
    for energies_chunk, showers_chunk in iter_showers(path, geometry):
        check_shower_chunk(path, filled, energies_chunk, showers_chunk)
        take = min(len(showers_chunk), n - filled)
        showers[filled : filled + take] = showers_chunk[:take] / ENERGY_UNIT_MEV
        incident[filled : filled + take] = energies_chunk[:take] / ENERGY_UNIT_MEV
        filled += take
        if filled >= n:
            break
    n_train = int(train_fraction * n)
    tensors = ShowerTensors(torch.from_numpy(showers).to(device), torch.from_numpy(incident).to(device))
    return TrainingData(
        train=tensors.head(n_train),
        validation=ShowerTensors(tensors.showers[n_train:], tensors.incident[n_train:]),
        **FileProvenance.fields_of(path, info),
    )


def iterate_batches(
    n: int,
    batch_size: int,
    generator: torch.Generator,
    *,
    shuffle: bool = True,
    max_batches: int | None = None,
) -> Iterator[Tensor]:
    """Index tensors of the batches of one epoch (the last batch may be smaller)."""
    device = generator.device
    order = torch.randperm(n, generator=generator, device=device) if shuffle else torch.arange(n, device=device)
    for i, start in enumerate(range(0, n, batch_size)):
        if max_batches is not None and i >= max_batches:
            return
        yield order[start : start + batch_size]


def batches_per_epoch(n: int, batch_size: int, max_batches: int | None = None) -> int:
    count = -(-n // batch_size)
    return count if max_batches is None else min(count, max_batches)
