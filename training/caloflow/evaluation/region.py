"""The lateral region of a Cartesian grid that an evaluation covers: the whole grid, or a model's crop.

An L2LFlows model may serve only a crop of the ILD grid (manifest ``geometry.crop``: ``x_cells`` [x0, x1) and
``z_cells`` [z0, z1) of every layer). To compare it with a full-grid reference on the same region, both files
are restricted to the crop before any observable: the cells outside it are set to zero in both (the grid's
geometry, cell positions and file layout stay those of the full grid). Every figure of such an evaluation
describes the crop region only, not the whole grid.

The served-shower writer stores a crop model's showers in the full grid's layout with the crop embedded and
zeros outside; the file attribute ``crop`` (:data:`CROP_ATTR`, ``"x0:x1,z0:z1"``) says which cells are modelled,
so the zeros outside are never taken for physics. A client (``caloflow generate``) writes a crop model's showers
as served instead: the crop's cells alone, the ILD group named after them (``10x10/layers`` (N, 30, 10, 10)).
:func:`stored_crop` finds that form; the evaluation reads it embedded in the full grid, the crop taken from the
file's ``crop`` attribute or, without one, from ``--crop`` (both given, they must agree).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from caloflow.data.datasets import Dataset
from caloflow.data.grid_geometry import GridGeometry
from caloflow.data.hdf5 import FileLayoutSpec, file_layout, lateral_layout, layout_spec, open_shower_file, read_attrs
from caloflow.errors import ShowerFileError
from caloflow.evaluation.errors import EvaluationError

if TYPE_CHECKING:
    from caloflow.evaluation.inputs import ShowerSample

__all__ = [
    "CROP_ATTR",
    "CropRegion",
    "check_declared_crop",
    "crop_from_manifest",
    "crop_layout",
    "parse_crop",
    "stored_crop",
]

CROP_ATTR = "crop"


@dataclass(frozen=True)
class CropRegion:
    """Cells ``x[0] <= x < x[1]`` and ``z[0] <= z < z[1]`` of every layer of ``grid``."""

    grid: GridGeometry
    x: tuple[int, int]
    z: tuple[int, int]
    source: str = "--crop"  # the field the region came from, named in errors

    def __post_init__(self) -> None:
        for axis, (lo, hi), n in (("x", self.x, self.grid.n_x), ("z", self.z, self.grid.n_z)):
            if not 0 <= lo < hi <= n:
                raise EvaluationError(
                    f"{self.source}: {axis} cells {lo}:{hi} do not fit the grid's {n} {axis} cells "
                    f"(need 0 <= {axis}0 < {axis}1 <= {n})"
                )

    @property
    def crop_shape(self) -> tuple[int, int, int]:
        return (self.grid.n_layers, self.x[1] - self.x[0], self.z[1] - self.z[0])

    @property
    def n_crop_voxels(self) -> int:
        return int(np.prod(self.crop_shape))

    def text(self) -> str:
        """``"x0:x1,z0:z1"``, as ``--crop`` takes it and the file attribute records it."""
        return f"{self.x[0]}:{self.x[1]},{self.z[0]}:{self.z[1]}"

    def _grid_view(self, showers: NDArray[np.floating]) -> NDArray[np.floating]:
        return showers.reshape(len(showers), *self.grid.shower_shape)

    def mask(self, showers: NDArray[np.float64]) -> NDArray[np.float64]:
        """(n, V) full-grid showers with every cell outside the region set to zero (a new array)."""
        out = np.zeros_like(showers)
        window = (slice(None), slice(None), slice(*self.x), slice(*self.z))
        self._grid_view(out)[window] = self._grid_view(showers)[window]
        return out

    def embed(self, crops: NDArray[np.floating]) -> NDArray[np.float64]:
        """(n, crop voxels) showers of the region -> (n, V) full-grid showers, zeros outside the region."""
        if crops.ndim < 2 or int(np.prod(crops.shape[1:])) != self.n_crop_voxels:
            raise EvaluationError(
                f"showers of shape {list(crops.shape[1:])} are neither the crop {list(self.crop_shape)} "
                f"({self.source} {self.text()}) nor flat crops of {self.n_crop_voxels} voxels"
            )
        full = np.zeros((len(crops), self.grid.n_voxels), dtype=np.float64)
        self._grid_view(full)[:, :, slice(*self.x), slice(*self.z)] = crops.reshape(len(crops), *self.crop_shape)
        return full


def parse_crop(text: str, grid: GridGeometry, *, source: str = "--crop") -> CropRegion:
    """``"X0:X1,Z0:Z1"`` (half-open cell ranges) -> the region; errors name ``source``."""
    try:
        x_part, z_part = text.split(",")
        x0, x1 = (int(v) for v in x_part.split(":"))
        z0, z1 = (int(v) for v in z_part.split(":"))
    except ValueError:
        raise EvaluationError(
            f"{source}: {text!r} is not X0:X1,Z0:Z1 (half-open cell ranges, e.g. 9:19,10:20)"
        ) from None
    return CropRegion(grid, (x0, x1), (z0, z1), source)


def crop_from_manifest(geometry: Mapping[str, object], grid: GridGeometry) -> CropRegion | None:
    """The region of a manifest's ``geometry.crop`` (``x_cells``, ``z_cells``, ``full_shape``); None without one."""
    crop = geometry.get("crop")
    if crop is None:
        return None
    source = "manifest geometry.crop"
    if not isinstance(crop, Mapping):
        raise EvaluationError(f"{source}: must be a mapping, got {type(crop).__name__}")
    full = crop.get("full_shape")
    if full is not None and list(full) != list(grid.shower_shape):  # type: ignore[call-overload]
        raise EvaluationError(f"{source}.full_shape: {full} is not the dataset's grid {list(grid.shower_shape)}")
    cells = {}
    for name in ("x_cells", "z_cells"):
        value = crop.get(name)
        if not isinstance(value, list | tuple) or len(value) != 2 or not all(isinstance(v, int) for v in value):
            raise EvaluationError(f"{source}.{name}: must be [start, stop] integers, got {value!r}")
        cells[name] = (int(value[0]), int(value[1]))
    return CropRegion(grid, cells["x_cells"], cells["z_cells"], source)


def check_declared_crop(generated: ShowerSample, region: CropRegion | None) -> None:
    """Refuse a generated file whose ``crop`` attribute (the cells its model covers) differs from ``region``:
    comparing a crop model's zeros outside its crop with the reference's showers would measure nothing."""
    declared = generated.attrs.get(CROP_ATTR)
    if declared is None:
        return
    stated = region.text() if region is not None else None
    if str(declared) != stated:
        raise EvaluationError(
            f"generated file {generated.path}: attribute {CROP_ATTR!r} says its model covers only cells "
            f"{declared} (x0:x1,z0:z1); evaluate it with --crop {declared}, not "
            f"{'the whole grid' if stated is None else '--crop ' + stated}"
        )


def stored_crop(path: Path, ds: Dataset, stated: CropRegion | None) -> CropRegion | None:
    """The crop whose cells alone the generated file ``path`` holds (a client's form), or None when it holds the
    dataset's whole grid; ``stated`` is ``--crop``. Errors name the file and the field."""
    grid = ds.geometry
    where = f"generated file {path}"
    try:
        if not isinstance(grid, GridGeometry) or file_layout(path) is not None:
            return None
        declared = read_attrs(path).get(CROP_ATTR)
    except ShowerFileError as exc:
        raise EvaluationError(f"generated file: {exc}") from exc
    region = stated if declared is None else parse_crop(str(declared), grid, source=f"{where}: attribute 'crop'")
    if region is None:
        raise EvaluationError(
            f"{where}: holds no {layout_spec(ds.layout).showers_path} (the whole {ds.name} grid) and no attribute "
            f"{CROP_ATTR!r} saying which cells it holds: give --crop X0:X1,Z0:Z1 (the model's geometry.crop)"
        )
    if stated is not None and region.text() != stated.text():
        raise EvaluationError(
            f"{where}: attribute {CROP_ATTR!r} says it holds cells {region.text()} (x0:x1,z0:z1), --crop says "
            f"{stated.text()}"
        )
    _check_stored_shape(path, crop_layout(ds, region), region)
    return region


def crop_layout(ds: Dataset, region: CropRegion) -> FileLayoutSpec:
    """The layout of a file holding only ``region``'s cells of ``ds`` (ILD: group ``10x10``)."""
    return lateral_layout(ds.layout, *region.crop_shape[1:])


def _check_stored_shape(path: Path, spec: FileLayoutSpec, region: CropRegion) -> None:
    try:
        shape = open_shower_file(path, None, layout=spec).shower_shape
    except ShowerFileError as exc:
        raise EvaluationError(f"generated file (crop {region.text()}): {exc}") from exc
    if shape != region.crop_shape:
        raise EvaluationError(
            f"generated file {path}: {spec.showers_path} holds showers of shape {list(shape)}, not the crop "
            f"{region.text()}'s {list(region.crop_shape)}"
        )
