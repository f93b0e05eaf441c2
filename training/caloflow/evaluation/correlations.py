"""Pearson correlation matrices of the layer energies, reference and generated.

A flow that samples each layer's energy independently would reproduce every per-layer histogram and
still get these matrices wrong; CaloFlow's flow-I exists to get them right. A layer whose energy is
constant in a sample (e.g. always zero after the cut) has no correlation: its row and column are NaN,
and the summary figures skip them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["LayerCorrelations", "layer_correlations", "pearson_matrix"]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class LayerCorrelations:
    layer_ids: tuple[int, ...]
    reference: Array  # (L, L)
    generated: Array  # (L, L)

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


def layer_correlations(
    layer_ids: tuple[int, ...], reference_e_layer: Array, generated_e_layer: Array
) -> LayerCorrelations:
    return LayerCorrelations(layer_ids, pearson_matrix(reference_e_layer), pearson_matrix(generated_e_layer))
