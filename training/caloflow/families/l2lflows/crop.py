"""The lateral region an L2LFlows model covers: a square of cells around the shower axis in every layer.

The faithful model covers the central 10 x 10 cells of the 30 x 30 ILD layers (method note 2.3, 3.1). The
crop indices of the original are not published (note 2.3, UNVERIFIED); as the note advises, the crop is
centred on the axis found in the training data's mean image (:func:`axis_cells`): the photon enters near the
corner of four cells (x edge 13|14, z edge 14|15), which gives x 9..18 and z 10..19.
A crop is declared in the manifest (``geometry.crop``) and the served showers are the crop's cells only -
never zeros pretending to be physics outside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from caloflow.data.grid_geometry import GridGeometry
from caloflow.errors import CaloflowError

__all__ = ["CropError", "LateralCrop", "axis_cells", "centred_crop"]


class CropError(CaloflowError):
    """A crop does not fit its grid."""


@dataclass(frozen=True)
class LateralCrop:
    """Cells ``x_start .. x_start + size - 1`` and ``z_start .. z_start + size - 1`` of every layer."""

    n_layers: int
    full_x: int
    full_z: int
    x_start: int
    z_start: int
    size: int

    def __post_init__(self) -> None:
        if self.size < 1 or self.x_start < 0 or self.z_start < 0:
            raise CropError(f"crop size {self.size} at ({self.x_start}, {self.z_start}) must be positive")
        if self.x_start + self.size > self.full_x or self.z_start + self.size > self.full_z:
            raise CropError(
                f"crop of {self.size} x {self.size} cells at x {self.x_start}, z {self.z_start} does not fit the "
                f"{self.full_x} x {self.full_z} grid"
            )

    @property
    def cells_per_layer(self) -> int:
        return self.size * self.size

    @property
    def n_voxels(self) -> int:
        return self.n_layers * self.cells_per_layer

    @property
    def shower_shape(self) -> tuple[int, int, int]:
        return (self.n_layers, self.size, self.size)

    @property
    def is_full(self) -> bool:
        return self.size == self.full_x == self.full_z

    def apply(self, showers: NDArray[np.floating]) -> NDArray[np.float32]:
        """(n, n_layers * full_x * full_z) flat C-order showers -> (n, n_voxels) flat crops, float32."""
        grid = showers.reshape(-1, self.n_layers, self.full_x, self.full_z)
        window = grid[:, :, self.x_start : self.x_start + self.size, self.z_start : self.z_start + self.size]
        return np.ascontiguousarray(window, dtype=np.float32).reshape(len(grid), self.n_voxels)

    def to_dict(self) -> dict[str, object]:
        """The crop as the manifest records it: where the served cells sit in the full grid."""
        return {
            "full_shape": [self.n_layers, self.full_x, self.full_z],
            "x_cells": [self.x_start, self.x_start + self.size],
            "z_cells": [self.z_start, self.z_start + self.size],
            "note": "served cells only; the grid outside the crop is not modelled (not zeros)",
        }

    def geometry_dict(self, geometry: GridGeometry) -> dict[str, object]:
        """The full grid's description with the crop's shape, voxel count and position (``crop``); a crop that
        is the whole grid (the ``full`` presets) is the grid's description as it is, with no ``crop``."""
        data = dict(geometry.to_dict())
        if self.is_full:
            return data
        data.update(n_voxels=self.n_voxels, shape=list(self.shower_shape), crop=self.to_dict())
        return data


def axis_cells(showers: NDArray[np.floating], geometry: GridGeometry) -> tuple[float, float]:
    """The energy-weighted mean (x, z) of ``showers`` (n, V) in cell-edge units (cell i spans [i, i + 1])."""
    grid = np.asarray(showers, dtype=np.float64).reshape(-1, geometry.n_layers, geometry.n_x, geometry.n_z)
    image = grid.sum(axis=(0, 1))
    total = float(image.sum())
    if total <= 0:
        raise CropError("showers hold no energy: cannot find the shower axis for the crop")
    x = float((image.sum(axis=1) * (np.arange(geometry.n_x) + 0.5)).sum() / total)
    z = float((image.sum(axis=0) * (np.arange(geometry.n_z) + 0.5)).sum() / total)
    return x, z


def centred_crop(geometry: GridGeometry, size: int, axis: tuple[float, float] | None = None) -> LateralCrop:
    """The ``size`` x ``size`` crop centred on ``axis`` (cell-edge units; default the grid centre); the whole
    grid when ``size`` covers it."""
    if size >= geometry.n_x and size >= geometry.n_z:
        return LateralCrop(geometry.n_layers, geometry.n_x, geometry.n_z, 0, 0, geometry.n_x)
    x, z = axis if axis is not None else (geometry.n_x / 2, geometry.n_z / 2)
    x_start = min(max(round(x - size / 2), 0), geometry.n_x - size)
    z_start = min(max(round(z - size / 2), 0), geometry.n_z - size)
    return LateralCrop(geometry.n_layers, geometry.n_x, geometry.n_z, x_start, z_start, size)
