"""Classifier inputs of CaloChallenge ``evaluate.py`` (``prepare_{low,high}_data_for_classifier``).

For Dataset 1 (L layers, alpha-binned layers A; energies in MeV, label appended elsewhere):

* ``cls-low``: [log10 E_inc, voxels / E_inc] on voxels cut at ``min_energy``: 1 + V columns;
* ``cls-low-normed``: [log10 E_inc, voxels / (E_layer + 1e-16), log10(E_layer + 1e-8)]: 1 + V + L columns.
  As in the reference, the voxels here are **not** cut while E_layer comes from the cut features (a
  quirk of ``evaluate.py`` we keep so that the figures stay comparable);
* ``cls-high``: [log10 E_inc, log10(E_layer + 1e-8) x L, EC_eta / 100 x A, EC_phi / 100 x A,
  W_eta / 100 x A, W_phi / 100 x A, log10(E_tot + 1e-8), sparsity x L, EC_r / 100 x L, W_r / 100 x L]:
  30 columns for photons, 46 for pions. FPD and KPD use the same array.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from caloflow.data.features import EPSILON, HighLevelFeatures
from caloflow.data.geometry import Geometry
from caloflow.data.grid_geometry import GridGeometry

__all__ = ["LOG_EPSILON", "high_level_inputs", "low_level_inputs", "low_normed_inputs"]

Array = NDArray[np.float64]
LOG_EPSILON = 1e-8  # added inside log10 of layer and total energies, as in the reference
POSITION_SCALE_MM = 100.0


def low_level_inputs(incident_mev: Array, showers_cut: Array) -> Array:
    e = incident_mev[:, None]
    return np.hstack([np.log10(e), showers_cut / e])


def low_normed_inputs(
    incident_mev: Array, showers_uncut: Array, e_layer_cut: Array, geometry: Geometry | GridGeometry
) -> Array:
    per_voxel_layer_energy = e_layer_cut[:, geometry.voxel_layer]
    return np.hstack(
        [
            np.log10(incident_mev[:, None]),
            showers_uncut / (per_voxel_layer_energy + EPSILON),
            np.log10(e_layer_cut + LOG_EPSILON),
        ]
    )


def high_level_inputs(features: HighLevelFeatures) -> Array:
    if features.e_inc is None:
        raise ValueError("features need incident energies")
    s = POSITION_SCALE_MM
    return np.hstack(
        [
            np.log10(features.e_inc[:, None]),
            np.log10(features.e_layer + LOG_EPSILON),
            features.ec_eta / s,
            features.ec_phi / s,
            features.width_eta / s,
            features.width_phi / s,
            np.log10(features.e_tot[:, None] + LOG_EPSILON),
            features.sparsity,
            features.ec_r / s,
            features.width_r / s,
        ]
    )
