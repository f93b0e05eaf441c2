"""L2LFlows training data: an ILD-layout file read chunk by chunk into the crop's cells, split 70/30 in file order.

Only the crop is kept in memory (10 x 10 x 30 float32 = 12 kB per shower instead of 108 kB), as MeV; the crop is
centred on the axis of the first chunk's mean image (:func:`caloflow.families.l2lflows.crop.axis_cells`) unless given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from caloflow.data.dataset_files import check_dataset_file
from caloflow.data.datasets import Dataset
from caloflow.data.grid_geometry import GridGeometry
from caloflow.data.hdf5 import check_shower_chunk, iter_showers
from caloflow.errors import CaloflowError
from caloflow.families.l2lflows.crop import LateralCrop, axis_cells, centred_crop
from caloflow.training.data import TRAIN_FRACTION, FileProvenance, ShowerTensors, TrainingData

__all__ = ["L2LData", "grid_geometry", "load_l2l_data"]


@dataclass(frozen=True)
class L2LData(TrainingData):
    """The project's training data (``showers``: (N, L, C) crop cells in MeV, ``incident``: (N, 1) MeV) and
    the crop they cover."""

    crop: LateralCrop


def grid_geometry(ds: Dataset) -> GridGeometry:
    """The dataset's Cartesian grid; L2LFlows models layered grids only."""
    if not isinstance(ds.geometry, GridGeometry):
        raise CaloflowError(f"--dataset {ds.name}: L2LFlows needs a Cartesian grid, {ds.name} is {ds.geometry_kind}")
    return ds.geometry


def load_l2l_data(
    path: str | Path,
    ds: Dataset,
    crop_cells: int,
    *,
    crop: LateralCrop | None = None,
    max_showers: int | None = None,
    device: torch.device | str = "cpu",
) -> L2LData:
    """Read ``path`` (a file of ``ds``; another dataset's file is refused naming it) into crop tensors."""
    geometry = grid_geometry(ds)
    info = check_dataset_file(path, ds)
    n = info.n_showers if max_showers is None else min(max_showers, info.n_showers)
    cells: np.ndarray | None = None
    incident = np.empty((n, 1), dtype=np.float32)
    filled = 0
    for energies_chunk, showers_chunk in iter_showers(path, geometry, layout=ds.layout):
        check_shower_chunk(path, filled, energies_chunk, showers_chunk)
        if crop is None:
            crop = centred_crop(geometry, crop_cells, axis_cells(showers_chunk, geometry))
        if cells is None:
            cells = np.empty((n, crop.n_voxels), dtype=np.float32)
        take = min(len(showers_chunk), n - filled)
        cells[filled : filled + take] = crop.apply(showers_chunk[:take])
        incident[filled : filled + take] = energies_chunk[:take]
        filled += take
        if filled >= n:
            break
    if cells is None or crop is None or filled < 2:
        raise CaloflowError(f"{path}: needs at least 2 showers to train, has {filled}")
    n_train = int(TRAIN_FRACTION * n)
    tensors = ShowerTensors(
        torch.from_numpy(cells).reshape(n, crop.n_layers, crop.cells_per_layer).to(device),
        torch.from_numpy(incident).to(device),
    )
    return L2LData(
        train=tensors.head(n_train),
        validation=ShowerTensors(tensors.showers[n_train:], tensors.incident[n_train:]),
        crop=crop,
        **FileProvenance.fields_of(path, info),
    )
