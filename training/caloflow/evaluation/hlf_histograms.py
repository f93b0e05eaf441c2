"""The histograms of the high-level features that the CaloChallenge ``evaluate.py`` draws (``hist`` modes).

Binnings, as in ``plot_histograms`` / ``plot_cell_dist`` (both files are already cut at ``min_energy``):

* ``e_ratio``: E_tot / E_inc, 100 bins over [0.5, 1.5];
* ``e_layer_<id>``: 39 log bins (40 edges) from ``min_energy`` to the reference maximum of that layer;
* ``ec_eta_<id>`` / ``ec_phi_<id>`` (alpha-binned layers): 100 bins over [-100, 100] mm, [-500, 500] mm
  for layers 12 and 13;
* ``width_eta_<id>`` / ``width_phi_<id>``: 100 bins over [0, 100] mm, [0, 400] mm for layers 12 and 13;
* ``voxel``: every voxel, 49 log bins (50 edges) from ``min_energy`` to the reference maximum.

``evaluate.py`` defines but does not call plots of the sparsity and the radial centre and width; the
challenge paper made them separately. We add them with our own binning (marked ``extra``):
``sparsity_<id>`` 20 bins over [0, 1], ``ec_r_<id>`` / ``width_r_<id>`` 50 bins from 0 to the reference
maximum of that layer.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from caloflow.data.features import HighLevelFeatures
from caloflow.evaluation.histograms import HistogramComparison, compare_histograms, linear_edges, log_edges

__all__ = ["EXTRA_FAMILIES", "FAMILIES", "hlf_histograms", "voxel_histogram"]

Array = NDArray[np.float64]
WIDE_LAYERS = (12, 13)  # the Tile layers whose centre and width ranges are five / four times wider
FAMILIES = ("e_ratio", "e_layer", "ec_eta", "ec_phi", "width_eta", "width_phi", "voxel")
EXTRA_FAMILIES = ("sparsity", "ec_r", "width_r")


def hlf_histograms(
    reference: HighLevelFeatures, generated: HighLevelFeatures, min_energy_mev: float
) -> list[HistogramComparison]:
    """Every feature histogram except the voxel spectrum, in the order of ``FAMILIES`` then ``EXTRA_FAMILIES``."""
    return list(_comparisons(reference, generated, min_energy_mev))


def voxel_histogram(reference: Array, generated: Array, min_energy_mev: float) -> HistogramComparison:
    """The spectrum of all voxel energies (voxels below the cut are zero and fall outside the edges)."""
    edges = log_edges(min_energy_mev, float(np.max(reference, initial=0.0)), 50)
    return compare_histograms("voxel", reference, generated, edges)


def _comparisons(
    ref: HighLevelFeatures, gen: HighLevelFeatures, min_energy_mev: float
) -> Iterator[HistogramComparison]:
    if ref.e_ratio is None or gen.e_ratio is None:
        raise ValueError("features need incident energies (e_ratio)")
    yield compare_histograms("e_ratio", ref.e_ratio, gen.e_ratio, linear_edges(0.5, 1.5, 100))
    for col, layer in enumerate(ref.layer_ids):
        edges = log_edges(min_energy_mev, float(ref.e_layer[:, col].max(initial=0.0)), 40)
        yield compare_histograms(f"e_layer_{layer}", ref.e_layer[:, col], gen.e_layer[:, col], edges)
    for family in ("ec_eta", "ec_phi", "width_eta", "width_phi"):
        for col, layer in enumerate(ref.alpha_layer_ids):
            edges = _position_edges(family, layer)
            yield compare_histograms(
                f"{family}_{layer}", getattr(ref, family)[:, col], getattr(gen, family)[:, col], edges
            )
    for col, layer in enumerate(ref.layer_ids):
        yield compare_histograms(
            f"sparsity_{layer}", ref.sparsity[:, col], gen.sparsity[:, col], linear_edges(0, 1, 20)
        )
    for family in ("ec_r", "width_r"):
        for col, layer in enumerate(ref.layer_ids):
            high = max(float(getattr(ref, family)[:, col].max(initial=0.0)), 1.0)
            values = getattr(ref, family)[:, col], getattr(gen, family)[:, col]
            yield compare_histograms(f"{family}_{layer}", *values, linear_edges(0.0, high, 50))


def _position_edges(family: str, layer: int) -> Array:
    wide = layer in WIDE_LAYERS
    if family.startswith("ec_"):
        return linear_edges(-500.0, 500.0, 100) if wide else linear_edges(-100.0, 100.0, 100)
    return linear_edges(0.0, 400.0, 100) if wide else linear_edges(0.0, 100.0, 100)


def family_of(name: str) -> str:
    """``e_layer_12`` -> ``e_layer``; ``e_ratio`` and ``voxel`` are their own family."""
    for family in (*FAMILIES, *EXTRA_FAMILIES):
        if name == family or name.startswith(family + "_"):
            return family
    raise ValueError(f"unknown histogram {name!r}")
