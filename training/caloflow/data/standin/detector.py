"""The stand-in detector in depth: dead material and read-out layers, in X0 and in interaction lengths.

ATLAS barrel at |eta| ~ 0.2, as the stand-in sees it (front to back; approximate, see
``shared/design/standin-showers.md``):

============  ========  ===========  ============  =====  ==========================================
region        layer id  X0           lambda        cells  meaning
============  ========  ===========  ============  =====  ==========================================
front         -         2.0          0.20          8      inner detector, solenoid, cryostat wall
presampler    0         0.4          0.02          2      LAr presampler
strips        1         4.3          0.23          9      EM layer 1 (LAr/Pb strips)
middle        2         16.0         0.85          32     EM layer 2
back          3         2.0          0.11          4      EM layer 3
cryostat      -         0.4          0.09          2      LAr cryostat back wall, Tile front plate
tile_a        12        14.7         1.50          15     Tile layer A
tile_bc       13        40.2         4.10          21     Tile layer BC
tile_d        14        17.6         1.80          9      Tile layer D
beyond        -         150.0        15.00         30     not instrumented: leakage
============  ========  ===========  ============  =====  ==========================================

The EM calorimeter is 22.7 X0 ~ 1.2 lambda (about 19 X0 per lambda); Tile has about 9.8 X0 per lambda
(iron/scintillator), the aluminium cryostat about 4.3. ``beyond`` only closes the depth grid, so that
longitudinal profiles normalised on the grid conserve energy and whatever falls there is lost.
A layer absent from a particle's geometry (13 and 14 for photons) behaves as dead material.

Profiles are integrated on a grid of cells: each region is cut into ``cells`` equal slices, and a
profile is evaluated at the cell mid-points (in X0 for electromagnetic, in lambda for hadronic parts).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from caloflow.data.geometry import Geometry


@dataclass(frozen=True)
class Region:
    """A slab of the detector in depth; ``layer_id`` is None for dead material."""

    name: str
    layer_id: int | None
    thickness_x0: float
    thickness_lambda: float
    n_cells: int


REGIONS: tuple[Region, ...] = (
    Region("front", None, 2.0, 0.20, 8),
    Region("presampler", 0, 0.4, 0.02, 2),
    Region("strips", 1, 4.3, 0.23, 9),
    Region("middle", 2, 16.0, 0.85, 32),
    Region("back", 3, 2.0, 0.11, 4),
    Region("cryostat", None, 0.4, 0.09, 2),
    Region("tile_a", 12, 14.7, 1.50, 15),
    Region("tile_bc", 13, 40.2, 4.10, 21),
    Region("tile_d", 14, 17.6, 1.80, 9),
    Region("beyond", None, 150.0, 15.0, 30),
)


def _edges(thicknesses: list[float]) -> NDArray[np.float64]:
    return np.concatenate([[0.0], np.cumsum(thicknesses)])


@dataclass(frozen=True)
class DepthGrid:
    """The regions of :data:`REGIONS` cut into cells, mapped onto the layers of one geometry."""

    geometry: Geometry
    regions: tuple[Region, ...] = REGIONS

    @cached_property
    def region_edges_x0(self) -> NDArray[np.float64]:
        return _edges([r.thickness_x0 for r in self.regions])

    @cached_property
    def region_edges_lambda(self) -> NDArray[np.float64]:
        return _edges([r.thickness_lambda for r in self.regions])

    @cached_property
    def region_layer(self) -> NDArray[np.int64]:
        """Index into ``geometry.layers`` of every region; -1 for dead or not read out."""
        index = {layer_id: i for i, layer_id in enumerate(self.geometry.layer_ids)}
        return np.array([index.get(r.layer_id, -1) if r.layer_id is not None else -1 for r in self.regions])

    @cached_property
    def cell_region(self) -> NDArray[np.int64]:
        return np.repeat(np.arange(len(self.regions)), [r.n_cells for r in self.regions])

    @cached_property
    def cell_mid_x0(self) -> NDArray[np.float64]:
        return self._cell_mids(self.region_edges_x0)

    @cached_property
    def cell_mid_lambda(self) -> NDArray[np.float64]:
        return self._cell_mids(self.region_edges_lambda)

    @cached_property
    def cell_width_x0(self) -> NDArray[np.float64]:
        return self._cell_widths(self.region_edges_x0)

    @cached_property
    def cell_width_lambda(self) -> NDArray[np.float64]:
        return self._cell_widths(self.region_edges_lambda)

    def _cell_widths(self, edges: NDArray[np.float64]) -> NDArray[np.float64]:
        return (np.diff(edges) / [r.n_cells for r in self.regions])[self.cell_region]

    def _cell_mids(self, edges: NDArray[np.float64]) -> NDArray[np.float64]:
        parts = [
            edges[i] + (np.arange(r.n_cells) + 0.5) * (edges[i + 1] - edges[i]) / r.n_cells
            for i, r in enumerate(self.regions)
        ]
        return np.concatenate(parts)

    @cached_property
    def cell_to_layer(self) -> NDArray[np.float64]:
        """(cells, layers) 0/1 matrix: ``profile @ cell_to_layer`` sums a profile per read-out layer."""
        layer = self.region_layer[self.cell_region]
        matrix = np.zeros((layer.size, self.geometry.n_layers))
        read = layer >= 0
        matrix[np.flatnonzero(read), layer[read]] = 1.0
        return matrix

    @cached_property
    def region_to_layer(self) -> NDArray[np.float64]:
        """(regions, layers) 0/1 matrix, as :attr:`cell_to_layer` for per-region quantities."""
        matrix = np.zeros((len(self.regions), self.geometry.n_layers))
        read = self.region_layer >= 0
        matrix[np.flatnonzero(read), self.region_layer[read]] = 1.0
        return matrix

    @cached_property
    def layer_mid_lambda(self) -> NDArray[np.float64]:
        """Depth (lambda) of the middle of each read-out layer of the geometry."""
        mids = 0.5 * (self.region_edges_lambda[1:] + self.region_edges_lambda[:-1])
        return mids @ self.region_to_layer

    def x0_at_lambda(self, depth_lambda: NDArray[np.float64]) -> NDArray[np.float64]:
        """Depth in X0 of a depth in lambda (piecewise linear, region by region)."""
        return np.interp(depth_lambda, self.region_edges_lambda, self.region_edges_x0)
