"""Per-dataset feature providers: the one thing the evaluation pipeline asks of a dataset.

A provider turns a chunk of cut showers into per-shower features, joins chunks, and from the joined features
gives the layer energies (correlations, ``cls-low-normed``), E_tot / E_inc (energy response), the ``cls-high``
vector (also FPD / KPD), the histograms with the dataset's binning, and the 1-d observables of the ``w1``
metric. :func:`provider_for` picks it from the registry's geometry kind:

* a cylindrical CaloChallenge binning (Datasets 1, 2, 3): the CaloChallenge high-level features
  (``caloflow.data.features``); Dataset 1 is histogrammed per layer as ``evaluate.py`` does, Datasets 2 and 3
  in groups of five layers with their ranges (``hlf_histograms``);
* a Cartesian grid (the ILD ECAL): the observables of ``ild_observables``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from caloflow.data.datasets import Dataset
from caloflow.data.features import HighLevelFeatures, compute_features
from caloflow.data.geometry import Geometry
from caloflow.data.grid_geometry import GridGeometry
from caloflow.evaluation import hlf_histograms as hh
from caloflow.evaluation.classifier_features import LOG_EPSILON, high_level_inputs
from caloflow.evaluation.histograms import HistogramComparison, compare_histograms, linear_edges, log_edges
from caloflow.evaluation.ild_observables import GridObservables, grid_observables

__all__ = ["CylindricalProvider", "FeatureProvider", "GridProvider", "provider_for"]

Array = NDArray[np.float64]
F = TypeVar("F")


class FeatureProvider(Protocol[F]):
    """What the pipeline needs of a dataset's features (``F`` is the provider's per-shower feature type)."""

    @property
    def families(self) -> tuple[str, ...]:
        """Histogram families, in plotting order."""
        ...

    @property
    def geometry(self) -> Geometry | GridGeometry: ...

    def features(self, incident_mev: Array, showers_cut: Array) -> F: ...

    def join(self, parts: Sequence[F]) -> F: ...

    def layer_energies(self, features: F) -> Array: ...

    def e_ratio(self, features: F) -> Array: ...

    def high_level_inputs(self, features: F) -> Array: ...

    def histograms(self, reference: F, generated: F, min_energy_mev: float) -> list[HistogramComparison]: ...

    def observables(self, features: F) -> dict[str, Array]: ...

    def axis_label(self, family: str) -> str: ...


def provider_for(ds: Dataset) -> FeatureProvider[Any]:
    if isinstance(ds.geometry, GridGeometry):
        return GridProvider(ds.geometry)
    return CylindricalProvider(ds.cylindrical_geometry, grouped=not ds.is_ds1)


_CYLINDRICAL_LABELS = {
    "e_ratio": "E_tot / E_inc",
    "e_layer": "layer energy [MeV]",
    "ec_eta": "centre of energy in eta (x) [mm]",
    "ec_phi": "centre of energy in phi (y) [mm]",
    "width_eta": "width in eta (x) [mm]",
    "width_phi": "width in phi (y) [mm]",
    "voxel": "voxel energy [MeV]",
    "sparsity": "sparsity (share of empty voxels)",
    "ec_r": "centre of energy in r [mm]",
    "width_r": "width in r [mm]",
}


@dataclass(frozen=True)
class CylindricalProvider:
    """CaloChallenge high-level features; ``grouped``: histograms and W1 over groups of five layers (DS2/3)."""

    cylinder: Geometry
    grouped: bool
    families: tuple[str, ...] = (*hh.FAMILIES, *hh.EXTRA_FAMILIES)

    @property
    def geometry(self) -> Geometry:
        return self.cylinder

    def features(self, incident_mev: Array, showers_cut: Array) -> HighLevelFeatures:
        return compute_features(showers_cut, self.cylinder, incident_mev)

    def join(self, parts: Sequence[HighLevelFeatures]) -> HighLevelFeatures:
        return HighLevelFeatures.concatenate(parts)

    def layer_energies(self, features: HighLevelFeatures) -> Array:
        return features.e_layer

    def e_ratio(self, features: HighLevelFeatures) -> Array:
        assert features.e_ratio is not None
        return features.e_ratio

    def high_level_inputs(self, features: HighLevelFeatures) -> Array:
        return high_level_inputs(features)

    def histograms(
        self, reference: HighLevelFeatures, generated: HighLevelFeatures, min_energy_mev: float
    ) -> list[HistogramComparison]:
        if self.grouped:
            return hh.grouped_hlf_histograms(reference, generated, min_energy_mev)
        return hh.hlf_histograms(reference, generated, min_energy_mev)

    def observables(self, features: HighLevelFeatures) -> dict[str, Array]:
        if self.grouped:
            return hh.grouped_features(features)
        out = {"e_ratio": self.e_ratio(features)}
        for family in ("e_layer", "sparsity", "ec_r", "width_r"):
            for col, layer in enumerate(features.layer_ids):
                out[f"{family}_{layer}"] = getattr(features, family)[:, col]
        for family in ("ec_eta", "ec_phi", "width_eta", "width_phi"):
            for col, layer in enumerate(features.alpha_layer_ids):
                out[f"{family}_{layer}"] = getattr(features, family)[:, col]
        return out

    def axis_label(self, family: str) -> str:
        return _CYLINDRICAL_LABELS[family]


_GRID_SCALARS = ("e_vis", "e_ratio", "n_hits", "cog_x", "cog_y", "cog_z", "width_x", "width_y", "width_z")
_GRID_LABELS = {
    "e_vis": "visible energy [MeV]",
    "e_ratio": "E_vis / E_inc",
    "n_hits": "number of hits above threshold",
    "cog_x": "centre of gravity x [mm]",
    "cog_y": "centre of gravity y (depth from layer 0) [mm]",
    "cog_z": "centre of gravity z [mm]",
    "width_x": "width in x [mm]",
    "width_y": "width in y (depth) [mm]",
    "width_z": "width in z [mm]",
    "e_layer": "layer energy [MeV]",
    "voxel": "cell energy [MeV]",
}
_POSITION_SCALE_MM = 100.0


@dataclass(frozen=True)
class GridProvider:
    """The ILD observables: histograms of each over the reference's 0.5-99.5 percentile range (50 bins)."""

    grid: GridGeometry
    families: tuple[str, ...] = (*_GRID_SCALARS, "e_layer", "voxel")

    @property
    def geometry(self) -> GridGeometry:
        return self.grid

    def features(self, incident_mev: Array, showers_cut: Array) -> GridObservables:
        return grid_observables(showers_cut, self.grid, incident_mev)

    def join(self, parts: Sequence[GridObservables]) -> GridObservables:
        return GridObservables.concatenate(parts)

    def layer_energies(self, features: GridObservables) -> Array:
        return features.e_layer

    def e_ratio(self, features: GridObservables) -> Array:
        return features.e_ratio

    def high_level_inputs(self, f: GridObservables) -> Array:
        """[log10 E_inc, log10 E_vis, log10(hits + 1), CoG and widths / 100 mm, log10 E_layer, ring fractions]."""
        positions = np.stack([f.cog_x, f.cog_y, f.cog_z, f.width_x, f.width_y, f.width_z], axis=1)
        return np.hstack(
            [
                np.log10(f.e_inc[:, None]),
                np.log10(f.e_vis[:, None] + LOG_EPSILON),
                np.log10(f.n_hits[:, None] + 1.0),
                positions / _POSITION_SCALE_MM,
                np.log10(f.e_layer + LOG_EPSILON),
                f.e_radial / (f.e_vis[:, None] + LOG_EPSILON),
            ]
        )

    def histograms(
        self, reference: GridObservables, generated: GridObservables, min_energy_mev: float
    ) -> list[HistogramComparison]:
        out = []
        for name in _GRID_SCALARS:
            ref, gen = getattr(reference, name), getattr(generated, name)
            out.append(compare_histograms(name, ref, gen, _percentile_edges(ref)))
        for group in hh.layer_groups(tuple(range(self.grid.n_layers))):
            ref = reference.e_layer[:, list(group)].sum(axis=1)
            gen = generated.e_layer[:, list(group)].sum(axis=1)
            edges = log_edges(min_energy_mev, float(ref.max(initial=0.0)), 40)
            out.append(compare_histograms(f"e_layer_{group[0]}-{group[-1]}", ref, gen, edges))
        return out

    def observables(self, f: GridObservables) -> dict[str, Array]:
        out = {name: getattr(f, name) for name in _GRID_SCALARS}
        out.update({f"e_layer_{layer}": f.e_layer[:, layer] for layer in range(f.e_layer.shape[1])})
        out.update({f"e_radial_{ring}": f.e_radial[:, ring] for ring in range(f.e_radial.shape[1])})
        return out

    def axis_label(self, family: str) -> str:
        return _GRID_LABELS[family]


def _percentile_edges(reference: Array, bins: int = 50) -> Array:
    low, high = np.percentile(reference, [0.5, 99.5]) if len(reference) else (0.0, 1.0)
    margin = 0.05 * max(float(high - low), 1e-9)
    return linear_edges(float(low) - margin, float(high) + margin, bins)
