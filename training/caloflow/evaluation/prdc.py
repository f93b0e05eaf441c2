"""Precision, recall, density and coverage of two feature samples (``prdc`` metric; Naeem et al. 2020).

With ``r_k(x)`` the distance from ``x`` to its k-th nearest neighbour in its own sample (itself excluded):

* precision: the fraction of generated points inside some reference ball ``B(x_i, r_k(x_i))``;
* recall: the fraction of reference points inside some generated ball ``B(y_j, r_k(y_j))``;
* density: the mean number of reference balls holding a generated point, divided by k (about 1 for two
  draws of one distribution; unbounded above);
* coverage: the fraction of reference points whose own ball holds at least one generated point.

Both samples are first standardised by the reference's per-feature mean and standard deviation, so that
no feature dominates the distance by its units, then each is subsampled without replacement to at most
``max_samples`` rows (seeded). The distances are computed in row blocks, so memory stays at
``block_rows x max_samples`` doubles (about 80 MB at the default 10 000) and time at ``O(max_samples^2 D)``.
Arrays of per-shower features in, numbers out: any dataset's feature extractor plugs in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from caloflow.evaluation.errors import EvaluationError

__all__ = ["PRDC", "prdc"]

Array = NDArray[np.float64]
_BLOCK_ROWS = 1024


@dataclass(frozen=True)
class PRDC:
    precision: float
    recall: float
    density: float
    coverage: float
    k: int
    n_reference: int
    n_generated: int


def prdc(reference: Array, generated: Array, *, k: int = 5, max_samples: int = 10_000, seed: int = 0) -> PRDC:
    """PRDC of ``generated`` (M, D) against ``reference`` (N, D); see the module docstring."""
    ref, gen = np.atleast_2d(np.asarray(reference, np.float64)), np.atleast_2d(np.asarray(generated, np.float64))
    if ref.shape[1] != gen.shape[1]:
        raise EvaluationError(f"prdc: reference has {ref.shape[1]} features, generated {gen.shape[1]}")
    if min(len(ref), len(gen)) <= k:
        raise EvaluationError(f"prdc: need more than k={k} rows per sample, got {len(ref)} and {len(gen)}")
    ref, gen = _standardise(ref, gen)
    rng = np.random.default_rng(seed)
    ref, gen = _subsample(ref, max_samples, rng), _subsample(gen, max_samples, rng)
    ref_radii, gen_radii = _knn_radii(ref, k), _knn_radii(gen, k)
    inside_ref = np.zeros(len(gen), dtype=np.int64)  # per generated point: how many reference balls hold it
    covered = np.zeros(len(ref), dtype=bool)  # per reference point: its ball holds a generated point
    recalled = np.zeros(len(ref), dtype=bool)  # per reference point: inside some generated ball
    for start, d in _distance_blocks(ref, gen):  # d: (block of reference rows, all generated rows)
        rows = slice(start, start + len(d))
        in_ref_ball = d <= ref_radii[rows, None]
        inside_ref += in_ref_ball.sum(axis=0)
        covered[rows] = in_ref_ball.any(axis=1)
        recalled[rows] = (d <= gen_radii[None, :]).any(axis=1)
    return PRDC(
        precision=float(np.mean(inside_ref > 0)),
        recall=float(np.mean(recalled)),
        density=float(inside_ref.sum() / (k * len(gen))),
        coverage=float(np.mean(covered)),
        k=k,
        n_reference=len(ref),
        n_generated=len(gen),
    )


def _standardise(ref: Array, gen: Array) -> tuple[Array, Array]:
    mean, std = ref.mean(axis=0), ref.std(axis=0)
    std[std == 0] = 1.0
    return (ref - mean) / std, (gen - mean) / std


def _subsample(x: Array, max_samples: int, rng: np.random.Generator) -> Array:
    if len(x) <= max_samples:
        return x
    return x[np.sort(rng.choice(len(x), size=max_samples, replace=False))]


def _distance_blocks(a: Array, b: Array) -> Iterator[tuple[int, Array]]:
    """Euclidean distances of row blocks of ``a`` to every row of ``b``."""
    b_sq = (b**2).sum(axis=1)
    for start in range(0, len(a), _BLOCK_ROWS):
        block = a[start : start + _BLOCK_ROWS]
        sq = (block**2).sum(axis=1)[:, None] + b_sq[None, :] - 2.0 * block @ b.T
        yield start, np.sqrt(np.maximum(sq, 0.0))


def _knn_radii(x: Array, k: int) -> Array:
    """Distance of every row to its k-th nearest other row (the row itself, at distance 0, is the 0-th)."""
    radii = np.empty(len(x))
    for start, d in _distance_blocks(x, x):
        radii[start : start + len(d)] = np.partition(d, k, axis=1)[:, k]
    return radii
