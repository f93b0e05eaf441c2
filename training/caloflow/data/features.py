"""High-level shower features, as CaloChallenge ``HighLevelFeatures.CalculateFeatures`` defines them.

For showers ``x`` (N, n_voxels) in MeV and every relevant layer l (voxel energies E, positions in mm):

* ``e_tot`` = sum of all voxels; ``e_layer[:, l]`` = sum over the voxels of layer l;
* ``sparsity[:, l]`` = 1 - mean over the layer's voxels of (E > threshold);
* ``ec_r[:, l]`` = sum(r E) / (sum(E) + 1e-16), ``width_r[:, l]`` = sqrt(max(<r^2> - ec_r^2, 0)) with
  <r^2> = sum(r^2 E) / (sum(E) + 1e-16) and r the radial bin centre (repeated for every alpha bin);
* ``ec_eta`` / ``ec_phi`` and ``width_eta`` / ``width_phi`` likewise, with eta = r cos(alpha) and
  phi = r sin(alpha), only for the layers binned in alpha (column j is ``alpha_layer_ids[j]``);
* ``e_ratio`` = E_tot / E_inc when incident energies are given.

An empty layer therefore has centre 0 and width 0. ``threshold`` only enters the sparsity, as in the
reference; the evaluation's 1 MeV cut is applied to the showers beforehand, not here. Everything is
float64 and vectorised: all weighted sums come from one matrix product with per-layer position columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray

from caloflow.data.geometry import Geometry

__all__ = ["EPSILON", "HighLevelFeatures", "compute_features"]

EPSILON = 1e-16  # added to layer energies in every centre-of-energy denominator, as in the reference

Array = NDArray[np.float64]


@dataclass(frozen=True)
class HighLevelFeatures:
    """Per-shower features; 2-d arrays have one column per layer (see ``layer_ids`` / ``alpha_layer_ids``)."""

    layer_ids: tuple[int, ...]
    alpha_layer_ids: tuple[int, ...]
    e_tot: Array  # (N,)
    e_layer: Array  # (N, n_layers)
    sparsity: Array  # (N, n_layers)
    ec_r: Array  # (N, n_layers)
    width_r: Array  # (N, n_layers)
    ec_eta: Array  # (N, n_alpha_layers)
    ec_phi: Array  # (N, n_alpha_layers)
    width_eta: Array  # (N, n_alpha_layers)
    width_phi: Array  # (N, n_alpha_layers)
    e_inc: Array | None = None  # (N,)
    e_ratio: Array | None = None  # (N,) E_tot / E_inc

    def __len__(self) -> int:
        return len(self.e_tot)

    def column(self, layer_id: int) -> int:
        """Column of ``layer_id`` in the per-layer arrays."""
        return self.layer_ids.index(layer_id)

    def alpha_column(self, layer_id: int) -> int:
        """Column of ``layer_id`` in the eta/phi arrays (ValueError if it is not binned in alpha)."""
        return self.alpha_layer_ids.index(layer_id)

    @classmethod
    def concatenate(cls, parts: Sequence[HighLevelFeatures]) -> HighLevelFeatures:
        """Join the features of consecutive chunks of showers."""
        if not parts:
            raise ValueError("nothing to concatenate")
        values: dict[str, object] = {}
        for f in fields(cls):
            column = [getattr(p, f.name) for p in parts]
            if f.name in ("layer_ids", "alpha_layer_ids"):
                if any(c != column[0] for c in column):
                    raise ValueError(f"parts disagree on {f.name}")
                values[f.name] = column[0]
            else:
                values[f.name] = None if any(c is None for c in column) else np.concatenate(column)
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Weights:
    """Columns for one matrix product: layer sums, then r, r^2, eta, eta^2, phi, phi^2 weighted sums."""

    matrix: Array  # (n_voxels, 3 * n_layers + 4 * n_alpha_layers)
    n_layers: int
    layer_sizes: Array  # (n_layers,)


@lru_cache(maxsize=8)
def _weights(geometry: Geometry) -> _Weights:
    one_hot = (geometry.voxel_layer[:, None] == np.arange(geometry.n_layers)[None, :]).astype(np.float64)
    alpha = one_hot[:, list(geometry.alpha_binned_layers)]
    r, eta, phi = geometry.voxel_r_mm[:, None], geometry.voxel_eta_mm[:, None], geometry.voxel_phi_mm[:, None]
    blocks = [one_hot, one_hot * r, one_hot * r**2, alpha * eta, alpha * eta**2, alpha * phi, alpha * phi**2]
    return _Weights(
        matrix=np.ascontiguousarray(np.hstack(blocks)),
        n_layers=geometry.n_layers,
        layer_sizes=np.asarray(geometry.layer_sizes, dtype=np.float64),
    )


def compute_features(
    showers: ArrayLike,
    geometry: Geometry,
    incident_energies: ArrayLike | None = None,
    threshold: float = 0.0,
) -> HighLevelFeatures:
    """The high-level features of ``showers`` (N, n_voxels), MeV; energies (N,) or (N, 1) MeV if given."""
    x = _as_showers(showers, geometry)
    w = _weights(geometry)
    sums = x @ w.matrix
    n_l = w.n_layers
    e_layer, r1, r2 = sums[:, :n_l], sums[:, n_l : 2 * n_l], sums[:, 2 * n_l : 3 * n_l]
    eta1, eta2, phi1, phi2 = np.split(sums[:, 3 * n_l :], 4, axis=1)
    e_alpha = e_layer[:, list(geometry.alpha_binned_layers)]
    ec_r, width_r = centre_and_width(r1, r2, e_layer)
    ec_eta, width_eta = centre_and_width(eta1, eta2, e_alpha)
    ec_phi, width_phi = centre_and_width(phi1, phi2, e_alpha)
    hits = (x > threshold).astype(np.float64) @ w.matrix[:, :n_l]
    e_tot = x.sum(axis=1)
    e_inc = None if incident_energies is None else _as_energies(incident_energies, len(x))
    return HighLevelFeatures(
        layer_ids=geometry.layer_ids,
        alpha_layer_ids=tuple(geometry.layer_ids[i] for i in geometry.alpha_binned_layers),
        e_tot=e_tot,
        e_layer=e_layer,
        sparsity=1.0 - hits / w.layer_sizes,
        ec_r=ec_r,
        width_r=width_r,
        ec_eta=ec_eta,
        ec_phi=ec_phi,
        width_eta=width_eta,
        width_phi=width_phi,
        e_inc=e_inc,
        e_ratio=None if e_inc is None else e_tot / e_inc,
    )


def centre_and_width(first: Array, second: Array, energy: Array) -> tuple[Array, Array]:
    """Centre sum(xE)/(sum E + eps) and width sqrt(max(sum(x^2 E)/(sum E + eps) - centre^2, 0))."""
    denominator = energy + EPSILON
    centre = first / denominator
    return centre, np.sqrt(np.maximum(second / denominator - centre**2, 0.0))


def _as_showers(showers: ArrayLike, geometry: Geometry) -> Array:
    x = np.asarray(showers, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != geometry.n_voxels:
        raise ValueError(f"showers must have shape (N, {geometry.n_voxels}) for {geometry.name}, got {x.shape}")
    return x


def _as_energies(energies: ArrayLike, n: int) -> Array:
    e = np.asarray(energies, dtype=np.float64)
    if e.ndim == 2 and e.shape[1] == 1:
        e = e[:, 0]
    if e.shape != (n,):
        raise ValueError(f"incident energies must have shape ({n},) or ({n}, 1), got {e.shape}")
    return e
