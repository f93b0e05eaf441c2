"""1-Wasserstein distance per observable, computed on the per-shower samples (``w1`` metric).

``scipy.stats.wasserstein_distance(u_values, v_values)`` takes *sample values*. The published comparison
(evaluation note section 1.3.3) passed it the ``density=True`` heights of two histograms, which gives the W1
between two multisets of bin heights: blind to the order of the bins (a shifted histogram scores about 0)
and in units of density. Here W1 is always taken on the raw samples, in the observable's units, and also
divided by the reference standard deviation so that observables can be compared (``normalised``).
:func:`w1_from_histogram` is the correct histogram form (bin centres weighted by the heights), for a
histogram-only input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import wasserstein_distance

__all__ = ["W1Distance", "w1_distances", "w1_from_histogram", "w1_samples"]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class W1Distance:
    """W1 of one observable, in its units and divided by the reference standard deviation (NaN if that is 0)."""

    name: str
    value: float
    normalised: float
    reference_std: float


def w1_samples(reference: Array, generated: Array) -> float:
    """W1 between two 1-d samples (their values, not histogram heights)."""
    return float(wasserstein_distance(np.ravel(reference), np.ravel(generated)))


def w1_from_histogram(edges: Array, reference_heights: Array, generated_heights: Array) -> float:
    """W1 of two histograms over the same ``edges``: the bin centres weighted by the heights."""
    centres = 0.5 * (np.asarray(edges[:-1]) + np.asarray(edges[1:]))
    return float(wasserstein_distance(centres, centres, u_weights=reference_heights, v_weights=generated_heights))


def w1_distances(reference: Mapping[str, Array], generated: Mapping[str, Array]) -> list[W1Distance]:
    """W1 of every observable the two mappings share, in the order of ``reference``; empty samples skipped."""
    out = []
    for name, ref in reference.items():
        gen = generated.get(name)
        if gen is None or len(ref) == 0 or len(gen) == 0:
            continue
        value = w1_samples(ref, gen)
        std = float(np.std(ref))
        out.append(W1Distance(name, value, value / std if std > 0 else float("nan"), std))
    return out
