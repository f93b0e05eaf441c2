"""Points scattered with the GFlash radial form around per-(row, layer) centres, binned into a Cartesian grid.

The Cartesian counterpart of :mod:`.lateral` (which bins into the (alpha, r) voxels of a cylinder). A point
lands at ``centre + r (cos phi, sin phi)`` with r distributed as ``f(r; R) = 2 r R^2 / (r^2 + R^2)^2`` (drawn by
inversion, ``r = R sqrt(v / (1 - v))``, v uniform, as :mod:`.lateral` does) and phi uniform; positions in
float32 and in cell units (ample for mm-scale cells, and uniforms are the cheapest draws). Points outside the
grid are lost (lateral leakage).

Rows are the units that own a centre per layer (a shower, or one sub-cluster of a shower); ``row_shower`` maps
each row to its shower, and a kept point's flat index is ``shower * n_voxels + layer * n_x * n_z + ix * n_z +
iz``: the C-order index of an (n, layers, x, z) block.

Speed (millions of points per block): everything per (row, layer) - radius, centre, the flat index of the
layer's first cell - is computed once on the small (rows, layers) arrays and gathered per point with one int32
source index; per point there are two float32 uniforms and in-place float32 arithmetic, and one compression
at the end (the flat indices of points outside the grid are computed and dropped).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from caloflow.data.grid_geometry import GridGeometry

FloatArray = NDArray[np.float64]
Float32Array = NDArray[np.float32]
IntArray = NDArray[np.int64]


def scatter_points(
    counts: IntArray,
    radius_mm: FloatArray,
    centre_x_mm: FloatArray,
    centre_z_mm: FloatArray,
    row_shower: IntArray,
    grid: GridGeometry,
    rng: np.random.Generator,
) -> IntArray:
    """Flat block indices of the points inside the grid; ``counts`` etc. are (rows, layers)."""
    source = np.repeat(np.arange(counts.size, dtype=np.int32), counts.ravel())
    if source.size == 0:
        return np.zeros(0, dtype=np.int64)
    v, phi = rng.random((2, source.size), dtype=np.float32)
    r = _radius(v, (radius_mm.ravel() / grid.cell_mm).astype(np.float32).take(source))
    phi *= np.float32(2.0 * np.pi)
    x = _in_cells(centre_x_mm, grid.x_centres_mm[0], grid.cell_mm).take(source)
    x += r * np.cos(phi)
    z = _in_cells(centre_z_mm, grid.z_centres_mm[0], grid.cell_mm).take(source)
    z += r * np.sin(phi, out=phi)
    kept = (x >= 0) & (x < grid.n_x) & (z >= 0) & (z < grid.n_z)
    cell = x.astype(np.int32) * np.int32(grid.n_z) + z.astype(np.int32)
    flat: IntArray = (_first_cells(row_shower, counts.shape[1], grid).take(source) + cell)[kept]
    return flat


def _radius(v: Float32Array, scale: Float32Array) -> Float32Array:
    """``scale * sqrt(v / (1 - v))`` in place of ``v``: radii from f(r; scale) by inversion."""
    v /= np.float32(1.0) - v
    np.sqrt(v, out=v)
    v *= scale
    return v


def _first_cells(row_shower: IntArray, n_layers: int, grid: GridGeometry) -> IntArray:
    """Flat block index of cell (0, 0) of each (row, layer), flat over (rows, layers)."""
    shower_layer = row_shower[:, None] * n_layers + np.arange(n_layers)
    first: IntArray = (shower_layer * grid.cells_per_layer).ravel()
    return first


def _in_cells(centre_mm: FloatArray, first_centre_mm: float, pitch: float) -> Float32Array:
    """Positions in cell units from the grid's low edge (cell i spans [i, i + 1)), flat float32."""
    return ((centre_mm.ravel() - (first_centre_mm - 0.5 * pitch)) / pitch).astype(np.float32)
