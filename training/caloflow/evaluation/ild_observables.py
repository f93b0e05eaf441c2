"""Per-shower observables of a Cartesian grid calorimeter (the ILD ECAL), as the L2LFlows note section 4.1 lists them.

For showers ``x`` (N, layers * n_x * n_z) in MeV, already cut at the dataset threshold (0.1 MeV for ILD, so a
cell counts as a hit when it is > 0):

* ``e_vis`` = sum of all cells (the visible energy), ``e_ratio`` = e_vis / E_inc;
* ``n_hits`` = number of cells > 0; ``hits_layer[:, l]`` per layer;
* ``e_layer[:, l]`` = energy of layer l (the longitudinal profile);
* ``cog_x``, ``cog_z`` (transverse, mm from the grid centre) and ``cog_y`` (depth: the energy-weighted sensitive
  layer position minus the first layer's, mm) and the energy-weighted standard deviations ``width_x/y/z``;
* ``e_radial[:, k]`` = energy in ring k of one cell pitch around the shower axis, the axis being the shower's
  own (cog_x, cog_z); the last ring collects everything further out (``RADIAL_BINS`` rings, as the "Getting
  High" plots: 24 bins of one cell).

An empty shower has every centre and width 0. All float64, vectorised over the chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

from caloflow.data.features import centre_and_width
from caloflow.data.grid_geometry import GridGeometry

__all__ = ["RADIAL_BINS", "GridObservables", "grid_observables"]

Array = NDArray[np.float64]
RADIAL_BINS = 24


@dataclass(frozen=True)
class GridObservables:
    """Observables of N showers; 2-d arrays have one column per layer or radial ring."""

    e_inc: Array  # (N,) MeV
    e_vis: Array  # (N,) MeV
    e_ratio: Array  # (N,)
    n_hits: Array  # (N,)
    hits_layer: Array  # (N, L)
    e_layer: Array  # (N, L)
    e_radial: Array  # (N, RADIAL_BINS)
    cog_x: Array
    cog_y: Array
    cog_z: Array
    width_x: Array
    width_y: Array
    width_z: Array

    def __len__(self) -> int:
        return len(self.e_vis)

    @classmethod
    def concatenate(cls, parts: Sequence[GridObservables]) -> GridObservables:
        if not parts:
            raise ValueError("nothing to concatenate")
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})


def grid_observables(showers_cut: Array, geometry: GridGeometry, incident_mev: Array) -> GridObservables:
    """The observables of ``showers_cut`` (N, V) MeV with incident energies (N,) MeV."""
    x = np.asarray(showers_cut, dtype=np.float64).reshape(len(showers_cut), *geometry.shower_shape)
    e_layer = x.sum(axis=(2, 3))
    e_vis = e_layer.sum(axis=1)
    hits_layer = (x > 0).sum(axis=(2, 3)).astype(np.float64)
    image = x.sum(axis=1)  # (N, n_x, n_z)
    depth = np.asarray(geometry.layer_position_mm, dtype=np.float64) - geometry.layer_position_mm[0]
    cog_y, width_y = _moments(e_layer, depth, e_vis)
    cog_x, width_x = _moments(image.sum(axis=2), geometry.x_centres_mm, e_vis)
    cog_z, width_z = _moments(image.sum(axis=1), geometry.z_centres_mm, e_vis)
    e_inc = np.asarray(incident_mev, dtype=np.float64)
    return GridObservables(
        e_inc=e_inc,
        e_vis=e_vis,
        e_ratio=e_vis / e_inc,
        n_hits=hits_layer.sum(axis=1),
        hits_layer=hits_layer,
        e_layer=e_layer,
        e_radial=_radial_profile(image, geometry, cog_x, cog_z),
        cog_x=cog_x,
        cog_y=cog_y,
        cog_z=cog_z,
        width_x=width_x,
        width_y=width_y,
        width_z=width_z,
    )


def _moments(weights: Array, positions: Array, total: Array) -> tuple[Array, Array]:
    """Energy-weighted mean and standard deviation of ``positions`` with per-shower ``weights`` (N, P)."""
    return centre_and_width(weights @ positions, weights @ positions**2, total)


def _radial_profile(image: Array, geometry: GridGeometry, cog_x: Array, cog_z: Array) -> Array:
    """Energy per ring of one cell pitch around each shower's own transverse centre of gravity."""
    dx = geometry.x_centres_mm[None, :, None] - cog_x[:, None, None]
    dz = geometry.z_centres_mm[None, None, :] - cog_z[:, None, None]
    ring = np.minimum(np.hypot(dx, dz) / geometry.cell_mm, RADIAL_BINS - 1).astype(np.int64)
    n = len(image)
    flat = (ring + RADIAL_BINS * np.arange(n)[:, None, None]).ravel()
    energy = np.bincount(flat, weights=image.ravel(), minlength=n * RADIAL_BINS)
    return np.asarray(energy, dtype=np.float64).reshape(n, RADIAL_BINS)
