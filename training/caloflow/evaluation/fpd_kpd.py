"""Frechet and kernel physics distances (FPD, KPD) of two feature samples, as ``jetnet.evaluation`` does them.

CaloChallenge ``evaluate.py`` calls ``jetnet.evaluation.fpd(real, gen, min_samples=10000)`` and
``kpd(real, gen, batch_size=10000)`` on the ``cls-high`` feature arrays (reference = real). We follow
jetnet (Kansal et al., arXiv:2211.10295) step by step rather than depend on it (it pulls numba and
energyflow):

* both samples are divided by the per-feature max |reference| (features that are always 0 are left);
* FPD: for N in ``1 / linspace(1/min_samples, 1/max_samples, num_points)`` (int32), draw ``num_batches``
  pairs of bootstrap samples of size N (``default_rng(seed)``, with replacement), average the Frechet
  distance |mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)) per N, fit a line in 1/N with intercept and slope
  >= 0 (``scipy.optimize.curve_fit``); FPD is the intercept (N -> infinity), its error the fit's;
* KPD: for batch i, ``default_rng(seed + 1000 i)`` draws a bootstrap pair of ``batch_size``; the unbiased
  quadratic MMD^2 with the polynomial kernel k(x, y) = (x.y / d + 1)^4; KPD is the median over batches,
  its error half the 16.275-83.725 percentile range.

Our kernel sums run over row blocks, so a batch of 10 000 never holds a 10 000^2 matrix; the sums are
the same numbers. CaloChallenge reports both x 1e3.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import linalg, optimize, stats

__all__ = ["Distance", "fpd", "frechet_distance", "kpd", "mmd_poly_unbiased", "normalise_features"]

Array = NDArray[np.float64]
_KERNEL_BLOCK_ROWS = 1024


@dataclass(frozen=True)
class Distance:
    """A distance and its error, in the features' own units (not x 1e3)."""

    value: float
    error: float


def normalise_features(real: Array, generated: Array) -> tuple[Array, Array]:
    """Divide both by the per-feature max |real| (a feature that is 0 throughout is divided by 1)."""
    maxes = np.max(np.abs(real), axis=0)
    maxes[maxes == 0] = 1.0
    return real / maxes, generated / maxes


def frechet_distance(mu1: Array, sigma1: Array, mu2: Array, sigma2: Array, eps: float = 1e-6) -> float:
    """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)); ``eps`` on the diagonals if the product is singular."""
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)  # numerical error leaves tiny imaginary parts, as jetnet discards them
    diff = np.atleast_1d(mu1) - np.atleast_1d(mu2)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fpd(
    real: Array,
    generated: Array,
    *,
    min_samples: int = 10_000,
    max_samples: int = 50_000,
    num_batches: int = 20,
    num_points: int = 10,
    seed: int = 42,
    on_point: Callable[[], None] | None = None,
) -> Distance:
    """Frechet physics distance: the N -> infinity intercept of the bootstrap-averaged Frechet distance."""
    x, y = normalise_features(real, generated)
    sizes = (1.0 / np.linspace(1.0 / min_samples, 1.0 / max_samples, num_points)).astype("int32")
    rng = np.random.default_rng(seed)
    means = []
    for size in sizes:
        means.append(np.mean([_bootstrap_frechet(x, y, int(size), rng) for _ in range(num_batches)]))
        if on_point is not None:
            on_point()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        params, cov = optimize.curve_fit(_linear, 1.0 / sizes, means, bounds=([0, 0], [np.inf, np.inf]))
    return Distance(float(params[0]), float(np.sqrt(np.diag(cov)[0])))


def _bootstrap_frechet(x: Array, y: Array, size: int, rng: np.random.Generator) -> float:
    sample_x = x[rng.choice(len(x), size=size)]
    sample_y = y[rng.choice(len(y), size=size)]
    return frechet_distance(
        sample_x.mean(axis=0), np.cov(sample_x, rowvar=False), sample_y.mean(axis=0), np.cov(sample_y, rowvar=False)
    )


def _linear(x: Array, intercept: float, slope: float) -> Array:
    return intercept + slope * x


def kpd(
    real: Array,
    generated: Array,
    *,
    num_batches: int = 10,
    batch_size: int = 10_000,
    seed: int = 42,
    on_batch: Callable[[], None] | None = None,
) -> Distance:
    """Kernel physics distance: median over bootstrap batches of the unbiased polynomial-kernel MMD^2."""
    x, y = normalise_features(real, generated)
    values = []
    for i in range(num_batches):
        rng = np.random.default_rng(seed + i * 1000)
        rand_x = rng.choice(len(x), size=batch_size)
        rand_y = rng.choice(len(y), size=batch_size)
        values.append(mmd_poly_unbiased(x[rand_x], y[rand_y]))
        if on_batch is not None:
            on_batch()
    return Distance(float(np.median(values)), float(stats.iqr(values, rng=(16.275, 83.725)) / 2.0))


def mmd_poly_unbiased(x: Array, y: Array, degree: int = 4) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^degree: mean k(x, x') + mean k(y, y') - 2 mean k(x, y)."""
    gamma = 1.0 / x.shape[1]
    m, n = len(x), len(y)
    xx = _kernel_sum(x, x, gamma, degree) - np.sum((np.einsum("ij,ij->i", x, x) * gamma + 1.0) ** degree)
    yy = _kernel_sum(y, y, gamma, degree) - np.sum((np.einsum("ij,ij->i", y, y) * gamma + 1.0) ** degree)
    xy = _kernel_sum(x, y, gamma, degree)
    return float(xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2.0 * xy / (m * n))


def _kernel_sum(a: Array, b: Array, gamma: float, degree: int) -> float:
    total = 0.0
    for start in range(0, len(a), _KERNEL_BLOCK_ROWS):
        total += float(np.sum((a[start : start + _KERNEL_BLOCK_ROWS] @ b.T * gamma + 1.0) ** degree))
    return total
