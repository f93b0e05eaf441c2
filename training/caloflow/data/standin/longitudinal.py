"""Longitudinal profiles on the depth grid: Gamma distributions in depth and their per-layer sums.

A profile ``dE/dt ~ u^(a-1) exp(-b u)``, ``u = t - start`` (GFlash form; the depth of its maximum is
``T = (a-1)/b``), is evaluated at the mid-points of the cells of a :class:`DepthGrid`, weighted by the
cell widths and normalised to 1 over the whole grid (which ends far behind the detector), so energy is
conserved and the share in dead cells is the loss.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from caloflow.data.standin.detector import DepthGrid

FloatArray = NDArray[np.float64]


def gamma_profile(
    cell_mid: FloatArray, cell_width: FloatArray, start: FloatArray, shape: FloatArray, t_max: FloatArray
) -> FloatArray:
    """Share of each shower's profile in each cell, (n, cells); rows sum to 1 (0 if nothing falls).

    ``start``, ``shape`` (a > 1) and ``t_max`` (T, depth of the maximum after ``start``) are per shower,
    in the units of ``cell_mid``.
    """
    u = cell_mid[None, :] - start[:, None]
    positive = u > 0
    log_ratio = np.log(np.where(positive, u, 1.0) / t_max[:, None])
    rate = (shape - 1.0) / t_max
    log_density = (shape[:, None] - 1.0) * log_ratio - rate[:, None] * (u - t_max[:, None])
    weights = np.where(positive, np.exp(np.minimum(log_density, 0.0)), 0.0) * cell_width[None, :]
    return _normalised_rows(weights)


def _normalised_rows(weights: FloatArray) -> FloatArray:
    totals = weights.sum(axis=1, keepdims=True)
    shares: FloatArray = np.divide(weights, totals, out=np.zeros_like(weights), where=totals > 0)
    return shares


def layer_shares(grid: DepthGrid, profile: FloatArray) -> FloatArray:
    """Share of each profile in each read-out layer, (n, layers)."""
    return profile @ grid.cell_to_layer


def layer_mean_depth(grid: DepthGrid, profile: FloatArray, depth: FloatArray) -> FloatArray:
    """Profile-weighted mean of ``depth`` (per cell, or (n, cells)) in each layer; 0 where empty."""
    shares = layer_shares(grid, profile)
    moments = (profile * depth) @ grid.cell_to_layer
    means: FloatArray = np.divide(moments, shares, out=np.zeros_like(shares), where=shares > 0)
    return means
