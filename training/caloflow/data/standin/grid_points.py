"""Points scattered with the GFlash radial form around per-(row, layer) centres, binned into a Cartesian grid.

The Cartesian counterpart of :mod:`.lateral` (which bins into the (alpha, r) voxels of a cylinder). A point
lands at ``centre + r (cos phi, sin phi)`` with r distributed as ``f(r; R) = 2 r R^2 / (r^2 + R^2)^2`` (drawn by
inversion, ``r = R sqrt(v / (1 - v))``, v uniform, as :mod:`.lateral` does) and phi uniform; positions in
float32 and in cell units (ample for mm-scale cells, and uniforms are the cheapest draws). Points outside the
grid are lost (lateral leakage).

Rows are the units that own a centre per layer (a shower, or one sub-cluster of a shower); ``row_shower`` maps
each row to its shower, and a kept point's flat index is ``shower * n_voxels + layer * n_x * n_z + ix * n_z +
iz``: the C-order index of an (n, layers, x, z) block.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from caloflow.data.grid_geometry import GridGeometry

FloatArray = NDArray[np.float64]
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
    row_layer = np.repeat(np.arange(counts.size), counts.ravel())
    if row_layer.size == 0:
        return np.zeros(0, dtype=np.int64)
    v, turn = rng.random((2, row_layer.size), dtype=np.float32)
    pitch = grid.cell_mm
    r = (radius_mm.ravel() / pitch).astype(np.float32)[row_layer] * np.sqrt(v / (np.float32(1.0) - v))
    angle = np.float32(2.0 * np.pi) * turn
    x = _in_cells(centre_x_mm, grid.x_centres_mm[0], pitch)[row_layer] + r * np.cos(angle)
    z = _in_cells(centre_z_mm, grid.z_centres_mm[0], pitch)[row_layer] + r * np.sin(angle)
    kept = (x >= 0) & (x < grid.n_x) & (z >= 0) & (z < grid.n_z)
    n_layers = counts.shape[1]
    row_layer = row_layer[kept]
    shower_layer = row_shower[row_layer // n_layers] * n_layers + row_layer % n_layers
    cell = x[kept].astype(np.int64) * grid.n_z + z[kept].astype(np.int64)
    flat: IntArray = shower_layer * grid.cells_per_layer + cell
    return flat


def _in_cells(centre_mm: FloatArray, first_centre_mm: float, pitch: float) -> NDArray[np.float32]:
    """Positions in cell units from the grid's low edge (cell i spans [i, i + 1)), flat float32."""
    return ((centre_mm.ravel() - (first_centre_mm - 0.5 * pitch)) / pitch).astype(np.float32)
