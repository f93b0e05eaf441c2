"""Fluctuation helpers shared by the photon and pion models.

* :func:`gamma_smear`: a non-negative, mean-preserving fluctuation with a given relative width
  (Gamma distribution of shape ``1 / sigma^2``), used for sampling fluctuations: right-skewed, so
  low-energy deposits have the long upper tails real calorimeters show. Widths are capped at
  :data:`MAX_RELATIVE_SIGMA`.
* :func:`stochastic_sigma`: ``a / sqrt(E / GeV)``, the stochastic term of a calorimeter resolution.
* :func:`landau_factor`: ionisation fluctuations of a MIP, ``1 + width * (X - 0)`` with X Moyal
  distributed (``X = -ln(G^2)``, G standard normal; mode 0, mean ~1.27, long upper tail), floored at 0.3.
  :func:`landau_factor32` is the same in float32 with ``G^2 = -2 ln(u1) cos^2(2 pi u2)`` (Box-Muller from two
  uniforms: the cheap draws), for models that need millions of crossings per block.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

MAX_RELATIVE_SIGMA = 3.0


def stochastic_sigma(energy_mev: FloatArray, a: float) -> FloatArray:
    """Relative width ``a / sqrt(E / GeV)`` (infinite at E = 0, capped later by :func:`gamma_smear`)."""
    with np.errstate(divide="ignore"):
        return a / np.sqrt(np.maximum(energy_mev, 0.0) / 1000.0)


def gamma_smear(mean: FloatArray, relative_sigma: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Mean-preserving Gamma fluctuation of ``mean`` (>= 0) with the given relative width."""
    sigma = np.minimum(relative_sigma, MAX_RELATIVE_SIGMA)
    shape = 1.0 / sigma**2
    return rng.gamma(shape, np.maximum(mean, 0.0) / shape)


def landau_factor(size: tuple[int, ...], width: float, rng: np.random.Generator) -> FloatArray:
    """Moyal-distributed ionisation factors around 1 (most probable value 1)."""
    g = rng.standard_normal(size)
    moyal = -np.log(np.maximum(g * g, 1e-300))
    return np.maximum(1.0 + width * moyal, 0.3)


def landau_factor32(size: int, width: float, rng: np.random.Generator) -> NDArray[np.float32]:
    """:func:`landau_factor` in float32, ``G^2`` from two uniforms (Box-Muller)."""
    u, turn = rng.random((2, size), dtype=np.float32)
    turn *= np.float32(2.0 * np.pi)
    np.cos(turn, out=turn)
    turn *= turn
    np.subtract(np.float32(1.0), u, out=u)
    np.log(u, out=u)
    u *= np.float32(-2.0)
    u *= turn  # G^2
    np.maximum(u, np.float32(1e-30), out=u)
    np.log(u, out=u)  # -Moyal
    u *= np.float32(-width)
    u += np.float32(1.0)
    factor: NDArray[np.float32] = np.maximum(u, np.float32(0.3), out=u)
    return factor
