"""A Cartesian calorimeter grid: layers of ``n_x`` x ``n_z`` square cells (the ILD Si-W ECAL layout).

A shower is an array ``(n_layers, n_x, n_z)`` in MeV, axes [layer (depth), x, z] as in the ILD files; flat,
it is C order, so the flat index of (layer l, x i, z j) is ``l * n_x * n_z + i * n_z + j``. The grid offers
the same layer bookkeeping as the cylindrical :class:`~caloflow.data.geometry.Geometry` (both are a
:class:`~caloflow.data.geometry.LayerIndex`: ``layer_offsets``, ``layer_slices``, ``voxel_layer``) so that code
working per layer needs no case for it.

Cell centres are in mm relative to the grid centre; ``layer_depth_x0`` is the tungsten depth in front of each
sensitive layer in radiation lengths; ``layer_position_mm`` is each sensitive layer's position along the
particle direction (the ILD barrel radius y).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from caloflow.data.geometry import LayerIndex
from caloflow.errors import GeometryError

__all__ = ["GridGeometry"]


@dataclass(frozen=True)
class GridGeometry(LayerIndex):
    """``n_layers`` layers of ``n_x`` x ``n_z`` cells of ``cell_mm`` pitch; absorber in front of each layer."""

    name: str
    pid: int
    n_layers: int
    n_x: int
    n_z: int
    cell_mm: float
    absorber_mm: tuple[float, ...]  # absorber plate in front of each layer (mm)
    absorber_x0_mm: float  # radiation length of the absorber material (mm)
    layer_position_mm: tuple[float, ...]  # position of each sensitive layer along the beam (mm)

    def __post_init__(self) -> None:
        if min(self.n_layers, self.n_x, self.n_z) < 1 or not self.cell_mm > 0:
            raise GeometryError(f"{self.name}: grid sizes and cell pitch must be positive")
        if len(self.absorber_mm) != self.n_layers or len(self.layer_position_mm) != self.n_layers:
            raise GeometryError(f"{self.name}: absorber_mm and layer_position_mm need one value per layer")

    kind = "cartesian"

    @property
    def shower_shape(self) -> tuple[int, int, int]:
        return (self.n_layers, self.n_x, self.n_z)

    @property
    def cells_per_layer(self) -> int:
        return self.n_x * self.n_z

    @cached_property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.cells_per_layer,) * self.n_layers

    @property
    def layer_ids(self) -> tuple[int, ...]:
        return tuple(range(self.n_layers))

    @cached_property
    def layer_depth_x0(self) -> NDArray[np.float64]:
        """Absorber depth in front of each sensitive layer, in radiation lengths (cumulative)."""
        return np.cumsum(np.asarray(self.absorber_mm, dtype=np.float64)) / self.absorber_x0_mm

    @cached_property
    def x_centres_mm(self) -> NDArray[np.float64]:
        return (np.arange(self.n_x, dtype=np.float64) - (self.n_x - 1) / 2) * self.cell_mm

    @cached_property
    def z_centres_mm(self) -> NDArray[np.float64]:
        return (np.arange(self.n_z, dtype=np.float64) - (self.n_z - 1) / 2) * self.cell_mm

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly description (model manifests)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "pid": self.pid,
            "n_voxels": self.n_voxels,
            "shape": list(self.shower_shape),
            "cell_mm": self.cell_mm,
            "absorber_mm": list(self.absorber_mm),
            "absorber_x0_mm": self.absorber_x0_mm,
            "layer_position_mm": list(self.layer_position_mm),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> GridGeometry:
        shape = data["shape"]
        assert isinstance(shape, list) and len(shape) == 3
        absorber, positions = data["absorber_mm"], data["layer_position_mm"]
        assert isinstance(absorber, list) and isinstance(positions, list)
        pid, cell, x0 = data["pid"], data["cell_mm"], data["absorber_x0_mm"]
        assert isinstance(pid, int) and isinstance(cell, int | float) and isinstance(x0, int | float)
        return cls(
            name=str(data["name"]),
            pid=pid,
            n_layers=int(shape[0]),
            n_x=int(shape[1]),
            n_z=int(shape[2]),
            cell_mm=float(cell),
            absorber_mm=tuple(float(a) for a in absorber),
            absorber_x0_mm=float(x0),
            layer_position_mm=tuple(float(p) for p in positions),
        )
