"""Histogram comparison and separation power, as the CaloChallenge ``evaluate.py`` defines them.

Every histogram is ``density=True`` over fixed edges (values outside the edges are not counted, as in
``numpy.histogram``), and the *separation power* of two histograms is

    S = 1/2 * sum_bins (h1 - h2)^2 / (h1 + h2 + 1e-16),   h = density * bin width,

so S = 0 for identical and S = 1 for disjoint distributions. The binnings of ``evaluate.py`` are built by
the helpers below (``logspace`` from the 1 MeV cut to the reference maximum for energies, fixed linear
ranges in mm for centres and widths).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "HistogramComparison",
    "compare_counts",
    "compare_histograms",
    "linear_edges",
    "log_edges",
    "separation_power",
]

Array = NDArray[np.float64]
SEPARATION_EPSILON = 1e-16


@dataclass(frozen=True)
class HistogramComparison:
    """Reference and generated densities over the same edges, and their separation power."""

    name: str
    edges: Array
    reference: Array  # density
    generated: Array  # density
    separation_power: float

    @property
    def widths(self) -> Array:
        return np.diff(self.edges)


def separation_power(density_1: Array, density_2: Array, edges: Array) -> float:
    """S = 1/2 sum (h1 - h2)^2 / (h1 + h2 + 1e-16) with h = density * bin width (0 identical, 1 disjoint)."""
    width = np.diff(np.asarray(edges, dtype=np.float64))
    h1 = np.asarray(density_1, dtype=np.float64) * width
    h2 = np.asarray(density_2, dtype=np.float64) * width
    if h1.shape != h2.shape or h1.shape != width.shape:
        raise ValueError(f"densities {h1.shape}, {h2.shape} and {len(edges)} edges do not match")
    return float(0.5 * np.sum((h1 - h2) ** 2 / (h1 + h2 + SEPARATION_EPSILON)))


def density(values: Array, edges: Array) -> Array:
    """``numpy.histogram(density=True)``, but all zeros (not NaN) when no value falls inside the edges."""
    counts, _ = np.histogram(values, bins=edges)
    total = counts.sum()
    if total == 0:
        return np.zeros(len(edges) - 1)
    return np.asarray(counts / (total * np.diff(edges)), dtype=np.float64)


def compare_histograms(name: str, reference: Array, generated: Array, edges: Array) -> HistogramComparison:
    """Histogram both samples over ``edges`` (density) and compute their separation power."""
    ref = density(np.ravel(reference), edges)
    gen = density(np.ravel(generated), edges)
    return HistogramComparison(name, edges, ref, gen, separation_power(ref, gen, edges))


def log_edges(low: float, high: float, n_edges: int) -> Array:
    """``logspace(log10 low, log10 high, n_edges)``; ``high`` is raised above ``low`` if it is not."""
    high = max(high, low * 10.0)
    return np.logspace(np.log10(low), np.log10(high), n_edges)


def linear_edges(low: float, high: float, n_bins: int) -> Array:
    return np.linspace(low, high, n_bins + 1)


def compare_counts(name: str, reference_counts: Array, generated_counts: Array, edges: Array) -> HistogramComparison:
    """As :func:`compare_histograms`, from counts accumulated over chunks (the same densities)."""
    ref, gen = _density_of_counts(reference_counts, edges), _density_of_counts(generated_counts, edges)
    return HistogramComparison(name, edges, ref, gen, separation_power(ref, gen, edges))


def _density_of_counts(counts: Array, edges: Array) -> Array:
    total = float(np.sum(counts))
    if total == 0:
        return np.zeros(len(edges) - 1)
    return np.asarray(counts / (total * np.diff(edges)), dtype=np.float64)
