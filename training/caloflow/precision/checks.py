"""The gate's checks on arrays of showers (MeV, ``(N, n_voxels)``): sanity, paired differences, distributions.

Every function returns a JSON-ready dict with a ``pass`` entry; the thresholds are module constants, stated in
the record. Observables are geometry-agnostic: per-layer sums over the manifest's ``layer_offsets``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import wasserstein_distance

Array = NDArray[np.float64]

PAIRED_TOLERANCES = {"mean_rel_etot": 1e-3, "max_rel_etot": 1e-2, "mean_shower_l1": 2e-3, "flip_rate": 1e-4}
"""Tier A, mode against float64 on the same energies and noise: per-shower |dE_tot| / E_tot, per-shower
sum|d voxel| / sum|voxel| (relative L1), and the fraction of voxels on opposite sides of the threshold. fp32-strict
itself sits 1-2 orders of magnitude below these on the demo models (its float64 parity: mean L1 3e-5)."""
DISTRIBUTION_FACTOR = 2.0
DISTRIBUTION_FLOOR = 0.01
"""A mode passes an observable when W1(mode, fp32) <= FACTOR * W1(fp32, fp32 other seed) + FLOOR (in units of
the fp32 sample's standard deviation)."""


def sanity(showers: NDArray[np.float32], incident: NDArray[np.float32]) -> dict[str, Any]:
    """B4: no non-finite or negative voxel, and none above the incident energy (catches float16 overflow)."""
    finite = np.isfinite(showers)
    above = finite & (showers > incident.reshape(-1, 1))
    record = {
        "nonfinite": int(np.count_nonzero(~finite)),
        "negative": int(np.count_nonzero(finite & (showers < 0))),
        "voxels_above_incident": int(np.count_nonzero(above)),
    }
    return {"pass": not any(record.values()), **record}


def paired(candidate: Array, exact: Array, threshold_mev: float) -> dict[str, float]:
    """Per-shower differences of ``candidate`` from ``exact`` (same energies and noise)."""
    total = np.abs(exact).sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    rel_etot = np.abs(np.nan_to_num(candidate).sum(axis=1) - exact.sum(axis=1)) / safe
    shower_l1 = np.abs(np.nan_to_num(candidate) - exact).sum(axis=1) / safe
    flips = (candidate > threshold_mev) != (exact > threshold_mev)
    return {
        "max_rel_etot": float(rel_etot.max()),
        "mean_rel_etot": float(rel_etot.mean()),
        "max_shower_l1": float(shower_l1.max()),
        "mean_shower_l1": float(shower_l1.mean()),
        "flip_rate": float(flips.mean()),
    }


def paired_check(candidate: Array, fp32: Array, exact: Array, threshold_mev: float) -> dict[str, Any]:
    """Tier A: the mode's paired figures within ``PAIRED_TOLERANCES`` (fp32-strict's recorded beside them)."""
    mode = paired(candidate, exact, threshold_mev)
    failed = sorted(key for key, limit in PAIRED_TOLERANCES.items() if not mode[key] <= limit)
    return {
        "pass": not failed,
        "failed": failed,
        "tolerances": PAIRED_TOLERANCES,
        "mode_vs_float64": mode,
        "fp32_vs_float64": paired(fp32, exact, threshold_mev),
    }


def observables(
    showers: Array, incident: Array, layer_offsets: Sequence[int], threshold_mev: float
) -> dict[str, Array]:
    """E_tot/E_inc, and per layer E_layer/E_inc and the fraction of voxels above the threshold."""
    e_inc = incident.reshape(-1)
    result = {"etot_over_einc": np.nan_to_num(showers).sum(axis=1) / e_inc}
    for layer, (start, stop) in enumerate(itertools.pairwise(layer_offsets)):
        block = np.nan_to_num(showers[:, start:stop])
        result[f"layer{layer}_over_einc"] = block.sum(axis=1) / e_inc
        result[f"layer{layer}_sparsity"] = (block > threshold_mev).mean(axis=1)
    return result


def distribution_check(mode: dict[str, Array], fp32: dict[str, Array], fp32_other: dict[str, Array]) -> dict[str, Any]:
    """B2/B3 in W1 form: each observable of the mode (independent noise) against fp32, beside fp32's own
    run-to-run spread (two noise seeds), normalised by the fp32 standard deviation."""
    rows: dict[str, dict[str, float]] = {}
    failed = []
    for name, reference in fp32.items():
        scale = float(np.std(reference)) or 1.0
        spread = wasserstein_distance(fp32_other[name], reference) / scale
        value = wasserstein_distance(mode[name], reference) / scale
        limit = DISTRIBUTION_FACTOR * spread + DISTRIBUTION_FLOOR
        rows[name] = {"w1_mode": float(value), "w1_fp32_spread": float(spread), "limit": float(limit)}
        if not value <= limit:
            failed.append(name)
    return {
        "pass": not failed,
        "failed": failed,
        "rule": f"W1(mode, fp32)/std <= {DISTRIBUTION_FACTOR} * W1(fp32, fp32')/std + {DISTRIBUTION_FLOOR}",
        "observables": rows,
    }


def auc_sigma(n_per_class: int) -> float:
    """Standard error of the ROC AUC of an uninformative classifier on ``n_per_class`` showers of each class
    (Mann-Whitney U under the null: sqrt((n1 + n2 + 1) / (12 n1 n2)))."""
    n = float(n_per_class)
    return float(np.sqrt((2 * n + 1) / (12 * n * n)))
