"""Lateral deposition: energy as discrete spots, binned into the (alpha, r) voxels of each layer.

A spot lands at radius r from its cloud's centre, with r drawn from the core+tail profile
``p f(r; R_core) + (1 - p) f(r; R_tail)``, ``f(r; R) = 2 r R^2 / (r^2 + R^2)^2`` (sampled by inversion,
``r = R sqrt(v / (1 - v))``, v uniform), at an azimuth uniform in [0, 2 pi). The cloud's centre is the
jittered shower axis, so the voxel's (r, alpha) are those of ``centre + r (cos, sin)`` around the
nominal axis: an off-centre shower spreads unevenly over the alpha bins. Spots beyond a layer's last
radial edge are lost (as in Dataset 1, which stores nothing there).

A cloud's spots share the layer energy with Gamma-distributed weights (integer shape
:attr:`SpotCloud.weight_shape`, a sum of exponentials; normalised per shower and layer), so voxel
energies are granular, not quantised. Few spots make sparse
showers, many make dense ones. Isolated deposits (:func:`deposit_isolated`) instead carry their own
small, log-normally distributed energies.

Everything is vectorised over the spots of all showers of a block; the voxel energies are summed with
one ``np.bincount`` over flat ``shower * n_voxels + voxel`` indices (:func:`voxelise`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from caloflow.data.geometry import Geometry, Layer

FloatArray = NDArray[np.float64]
Float32Array = NDArray[np.float32]
IntArray = NDArray[np.int64]
Deposits = tuple[IntArray, FloatArray]
"""Flat ``shower * n_voxels + voxel`` indices and the energies (MeV) deposited there."""


@dataclass(frozen=True)
class SpotCloud:
    """One shower component's spots, per (shower, layer); every array broadcasts to (n, layers)."""

    energy_mev: FloatArray
    n_spots: IntArray
    core_mm: FloatArray
    tail_mm: FloatArray
    core_prob: FloatArray
    centre_x_mm: FloatArray
    centre_y_mm: FloatArray
    weight_shape: int = 2

    def layer(self, index: int) -> SpotLayer:
        """The cloud's (n,) per-shower values in one layer."""
        shape = self.n_spots.shape

        def column(values: FloatArray) -> FloatArray:
            return np.broadcast_to(values, shape)[:, index]

        return SpotLayer(
            energy_mev=column(self.energy_mev),
            n_spots=self.n_spots[:, index],
            core_mm=column(self.core_mm),
            tail_mm=column(self.tail_mm),
            core_prob=column(self.core_prob),
            centre_x_mm=column(self.centre_x_mm),
            centre_y_mm=column(self.centre_y_mm),
        )


class SpotLayer(NamedTuple):
    """A :class:`SpotCloud` restricted to one layer: (n,) arrays."""

    energy_mev: FloatArray
    n_spots: IntArray
    core_mm: FloatArray
    tail_mm: FloatArray
    core_prob: FloatArray
    centre_x_mm: FloatArray
    centre_y_mm: FloatArray


def deposit_cloud(cloud: SpotCloud, geometry: Geometry, rng: np.random.Generator) -> Deposits:
    """Spots of ``cloud`` in voxels; a layer with energy but no spot deposits nothing."""
    parts: list[Deposits] = []
    for layer in range(geometry.n_layers):
        if cloud.n_spots[:, layer].any():
            parts.append(_deposit_layer(cloud.layer(layer), cloud.weight_shape, geometry, layer, rng))
    return _concatenated(parts)


def _deposit_layer(
    spots: SpotLayer, weight_shape: int, geometry: Geometry, layer: int, rng: np.random.Generator
) -> Deposits:
    counts = spots.n_spots
    n_core = rng.binomial(counts, np.clip(spots.core_prob, 0.0, 1.0))
    # core spots of every shower first, then its tail spots: one repeat gives shower and radius scale
    split = np.stack([n_core, counts - n_core], axis=1).ravel()
    shower = np.repeat(np.repeat(np.arange(counts.size), 2), split)
    radius = np.repeat(np.stack([spots.core_mm, spots.tail_mm], axis=1).ravel().astype(np.float32), split)
    weights = rng.standard_exponential((weight_shape, shower.size), dtype=np.float32).sum(axis=0)
    totals = np.bincount(shower, weights, minlength=counts.size)
    scale = np.divide(spots.energy_mev, totals, out=np.zeros_like(totals), where=counts > 0)
    centre = (_repeat32(spots.centre_x_mm, counts), _repeat32(spots.centre_y_mm, counts))
    flat, kept = _spot_voxels(geometry, layer, shower, radius, centre, rng)
    return flat, (weights * np.repeat(scale, counts))[kept]


def _repeat32(values: FloatArray, counts: IntArray) -> Float32Array:
    return np.repeat(values.astype(np.float32), counts)


def deposit_isolated(
    n_per_layer: IntArray,
    median_mev: float,
    log_sigma: float,
    radius_mm: float,
    geometry: Geometry,
    rng: np.random.Generator,
) -> Deposits:
    """Isolated small deposits, ``median_mev * exp(log_sigma * N(0,1))`` each, spread with ``f(r; radius)``."""
    parts: list[Deposits] = []
    for layer in range(geometry.n_layers):
        shower = np.repeat(np.arange(n_per_layer.shape[0]), n_per_layer[:, layer])
        if shower.size:
            energy = median_mev * np.exp(log_sigma * rng.standard_normal(shower.size))
            radius = np.full(shower.size, radius_mm, dtype=np.float32)
            centre = (np.zeros(shower.size, np.float32), np.zeros(shower.size, np.float32))
            flat, kept = _spot_voxels(geometry, layer, shower, radius, centre, rng)
            parts.append((flat, energy[kept]))
    return _concatenated(parts)


def _spot_voxels(
    geometry: Geometry,
    layer: int,
    shower: IntArray,
    radius_mm: Float32Array,
    centre_mm: tuple[Float32Array, Float32Array],
    rng: np.random.Generator,
) -> tuple[IntArray, NDArray[np.bool_]]:
    """Flat voxel indices of spots drawn around ``centre_mm``, and which spots fell inside the layer.

    Positions are computed in float32 (ample for mm-scale bins, and twice as fast).
    """
    v, turn = rng.random((2, shower.size), dtype=np.float32)
    r = radius_mm * np.sqrt(v / (np.float32(1.0) - v))
    angle = np.float32(2.0 * np.pi) * turn
    x = centre_mm[0] + r * np.cos(angle)
    y = centre_mm[1] + r * np.sin(angle)
    voxel, kept = _voxel_in_layer(geometry.layers[layer], x, y)
    flat = shower[kept] * geometry.n_voxels + geometry.layer_offsets[layer] + voxel
    return flat, kept


def _voxel_in_layer(spec: Layer, x: Float32Array, y: Float32Array) -> tuple[IntArray, NDArray[np.bool_]]:
    """Voxel index inside the layer (alpha bin outer, r bin inner) of each kept point."""
    r_bin, kept = _radial_bin(spec, np.hypot(x, y))
    if spec.n_alpha == 1:
        return r_bin, kept
    alpha = np.arctan2(y[kept], x[kept]).astype(np.float64)
    alpha_bin = ((alpha + np.pi) * (spec.n_alpha / (2.0 * np.pi))).astype(np.int64)
    return np.minimum(alpha_bin, spec.n_alpha - 1) * spec.n_r + r_bin, kept


def _radial_bin(spec: Layer, r: Float32Array) -> tuple[IntArray, NDArray[np.bool_]]:
    """Radial bin of each point inside the last edge (a 1 mm look-up table: the edges are whole mm)."""
    table = _radial_table(spec.r_edges_mm)
    kept = r < np.float32(spec.r_edges_mm[-1])
    if table is None:
        return np.searchsorted(np.asarray(spec.r_edges_mm), r[kept], side="right") - 1, kept
    return table[r[kept].astype(np.int64)], kept


@functools.cache
def _radial_table(edges_mm: tuple[float, ...]) -> IntArray | None:
    """Radial bin of every whole-mm interval [i, i+1), or None if some edge is not a whole mm."""
    edges = np.asarray(edges_mm)
    if np.any(edges != np.round(edges)) or edges[-1] > 100_000:
        return None
    return np.searchsorted(edges, np.arange(int(edges[-1])) + 0.5, side="right") - 1


def _concatenated(parts: Sequence[Deposits]) -> Deposits:
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def voxelise(n_showers: int, geometry: Geometry, deposits: Sequence[Deposits]) -> FloatArray:
    """Sum deposits into an (n_showers, n_voxels) float64 array (MeV)."""
    flat, energy = _concatenated(deposits)
    size = n_showers * geometry.n_voxels
    summed = np.bincount(flat, weights=energy, minlength=size).astype(np.float64, copy=False)
    return summed.reshape(n_showers, geometry.n_voxels)
