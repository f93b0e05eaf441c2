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

Datasets 2 and 3 (:func:`grouped_hlf_histograms`): the 45 layers are shown in groups of 5 consecutive layers
(``e_layer_0-4`` ... ``e_layer_40-44``), the group's layer energies summed and its centres, widths and
sparsities averaged over its layers, with ``evaluate_plotting_helper.py``'s DS2/3 ranges: centres in x and y
(our ``ec_eta`` / ``ec_phi``) 100 bins over [-30, 30] mm, their widths over [0, 30] mm, ``ec_r`` over
[0, 42] mm, ``width_r`` over [0, 20] mm, sparsity 20 bins over [0, 1], layer energies 39 log bins from
``min_energy`` to the reference maximum.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from caloflow.data.features import HighLevelFeatures
from caloflow.evaluation.histograms import HistogramComparison, compare_histograms, linear_edges, log_edges

__all__ = [
    "EXTRA_FAMILIES",
    "FAMILIES",
    "LAYER_GROUP",
    "grouped_features",
    "grouped_hlf_histograms",
    "hlf_histograms",
    "layer_groups",
    "voxel_histogram",
]

Array = NDArray[np.float64]
WIDE_LAYERS = (12, 13)  # the Tile layers whose centre and width ranges are five / four times wider
FAMILIES = ("e_ratio", "e_layer", "ec_eta", "ec_phi", "width_eta", "width_phi", "voxel")
EXTRA_FAMILIES = ("sparsity", "ec_r", "width_r")
LAYER_GROUP = 5  # consecutive layers per panel for Datasets 2 and 3
GROUPED_RANGES_MM = {
    "ec_eta": (-30.0, 30.0, 100),
    "ec_phi": (-30.0, 30.0, 100),
    "width_eta": (0.0, 30.0, 100),
    "width_phi": (0.0, 30.0, 100),
    "sparsity": (0.0, 1.0, 20),
    "ec_r": (0.0, 42.0, 100),
    "width_r": (0.0, 20.0, 100),
}


def layer_groups(layer_ids: tuple[int, ...], size: int = LAYER_GROUP) -> list[tuple[int, ...]]:
    """Consecutive groups of ``size`` layer ids (the last may be shorter)."""
    return [layer_ids[i : i + size] for i in range(0, len(layer_ids), size)]


def grouped_features(f: HighLevelFeatures, size: int = LAYER_GROUP) -> dict[str, Array]:
    """``e_layer_<a>-<b>`` (summed) and every other per-layer family (averaged) per group of layers; ``e_ratio``."""
    if f.e_ratio is None:
        raise ValueError("features need incident energies (e_ratio)")
    out: dict[str, Array] = {"e_ratio": f.e_ratio}
    groups = layer_groups(f.layer_ids, size)
    for family in ("e_layer", *GROUPED_RANGES_MM):
        for group in groups:
            values = np.stack([_layer_values(f, family, layer) for layer in group], axis=1)
            out[f"{family}_{group[0]}-{group[-1]}"] = values.sum(axis=1) if family == "e_layer" else values.mean(axis=1)
    return out


def _layer_values(f: HighLevelFeatures, family: str, layer: int) -> Array:
    array: Array = getattr(f, family)
    column = f.alpha_column(layer) if family in ("ec_eta", "ec_phi", "width_eta", "width_phi") else f.column(layer)
    return array[:, column]


def grouped_hlf_histograms(
    reference: HighLevelFeatures, generated: HighLevelFeatures, min_energy_mev: float, size: int = LAYER_GROUP
) -> list[HistogramComparison]:
    """The Datasets 2/3 histograms over groups of ``size`` layers (voxel spectrum excluded)."""
    ref, gen = grouped_features(reference, size), grouped_features(generated, size)
    out = []
    for name, values in ref.items():
        family = family_of(name)
        if family == "e_ratio":
            edges = linear_edges(0.5, 1.5, 100)
        elif family == "e_layer":
            edges = log_edges(min_energy_mev, float(values.max(initial=0.0)), 40)
        else:
            low, high, bins = GROUPED_RANGES_MM[family]
            edges = linear_edges(low, high, bins)
        out.append(compare_histograms(name, values, gen[name], edges))
    return out


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


def family_of(name: str, families: tuple[str, ...] = (*FAMILIES, *EXTRA_FAMILIES)) -> str:
    """``e_layer_12`` -> ``e_layer``; ``e_ratio`` and ``voxel`` are their own family (the longest match wins)."""
    matches = [f for f in families if name == f or name.startswith(f + "_")]
    if not matches:
        raise ValueError(f"unknown histogram {name!r}")
    return max(matches, key=len)
