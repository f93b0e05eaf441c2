"""Pearson correlation matrices of the layer energies, reference and generated.

A flow that samples each layer's energy independently would reproduce every per-layer histogram and
still get these matrices wrong; CaloFlow's flow-I exists to get them right. A layer whose energy is
constant in a sample (e.g. always zero after the cut) has no correlation: its row and column are NaN,
and the summary figures skip them.

The Frobenius norm of ``C_gen - C_ref`` over the finite entries sums the whole matrix's error in one number.
Two finite samples of one distribution do not give 0, so it comes with a floor: the same norm between the
two halves of the reference (a seeded random split). Each half has N/2 showers, so the floor is about
sqrt(2) times the noise expected between two full samples of N: a generated sample whose norm is at or below
the floor is as close to the reference as the reference's own halves are to each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["LayerCorrelations", "frobenius_distance", "layer_correlations", "pearson_matrix", "split_half_floor"]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class LayerCorrelations:
    layer_ids: tuple[int, ...]
    reference: Array  # (L, L)
    generated: Array  # (L, L)
    split_half_floor: float = float("nan")  # frobenius_distance between the reference's halves

    @property
    def frobenius(self) -> float:
        """||C_gen - C_ref||_F over the entries finite in both (constant layers skipped)."""
        return frobenius_distance(self.reference, self.generated)

    @property
    def n_constant_layers(self) -> int:
        """Layers whose energy is constant in either sample: no correlation, skipped by the summaries."""
        return int(np.sum(np.isnan(np.diag(self.reference)) | np.isnan(np.diag(self.generated))))

    @property
    def difference(self) -> Array:
        return self.generated - self.reference

    @property
    def max_abs_difference(self) -> float:
        """Largest |generated - reference| over the off-diagonal entries (NaN entries skipped)."""
        off = ~np.eye(len(self.layer_ids), dtype=bool)
        values = np.abs(self.difference[off])
        values = values[np.isfinite(values)]
        return float(values.max()) if values.size else float("nan")


def pearson_matrix(values: Array) -> Array:
    """Pearson correlations of the columns of ``values`` (N, L); NaN rows/columns for constant columns."""
    x = np.asarray(values, dtype=np.float64)
    centred = x - x.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = (centred.T @ centred) / np.outer(norms, norms)
    matrix[norms == 0, :] = np.nan
    matrix[:, norms == 0] = np.nan
    return np.asarray(matrix, dtype=np.float64)


def frobenius_distance(a: Array, b: Array) -> float:
    """||a - b||_F over the entries finite in both (NaN when none is)."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    finite = diff[np.isfinite(diff)]
    return float(np.sqrt(np.sum(finite**2))) if finite.size else float("nan")


def split_half_floor(values: Array, seed: int = 0) -> float:
    """The Frobenius distance between the Pearson matrices of two random halves of ``values`` (N, L)."""
    x = np.asarray(values, dtype=np.float64)
    order = np.random.default_rng(seed).permutation(len(x))
    half = len(x) // 2
    if half < 2:
        return float("nan")
    return frobenius_distance(pearson_matrix(x[order[:half]]), pearson_matrix(x[order[half : 2 * half]]))


def layer_correlations(
    layer_ids: tuple[int, ...], reference_e_layer: Array, generated_e_layer: Array, seed: int = 0
) -> LayerCorrelations:
    return LayerCorrelations(
        layer_ids,
        pearson_matrix(reference_e_layer),
        pearson_matrix(generated_e_layer),
        split_half_floor(reference_e_layer, seed),
    )
