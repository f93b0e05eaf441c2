"""The evaluator's settings and their hash: two reports compare only when this hash is equal.

Every setting that changes a figure for the same two samples is in it: the dataset and metric groups, the
voxel cut, the number of showers, the classifier (width, layers, epochs, learning rate, batch, dropout, runs,
the rows of the low-level classifiers), the crop region (when one), FPD / KPD / PRDC settings, and the
versions of the feature set and histogram binning (bumped by hand when their code changes what they compute).
The seed is not in it: reports made with different seeds are the run-to-run spread, which comparing them
measures.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from caloflow.evaluation.config import EvaluationConfig

__all__ = ["FEATURE_SET_VERSION", "HISTOGRAM_BINNING_VERSION", "evaluator_settings", "settings_hash"]

FEATURE_SET_VERSION = 1  # cls-high / FPD / KPD / PRDC inputs (classifier_features.py)
HISTOGRAM_BINNING_VERSION = 1  # the per-feature binning of histograms.py / hlf_histograms.py


def evaluator_settings(config: EvaluationConfig, n_showers: int) -> dict[str, Any]:
    """The settings that decide an evaluation's figures (``n_showers``: the showers per file actually used);
    ``crop`` only when the evaluation covers a crop region (so whole-grid hashes are unchanged)."""
    settings = {
        "dataset": config.dataset,
        "metrics": list(config.metrics),
        "min_energy_mev": config.cut_mev,
        "n_showers": n_showers,
        "classifier": asdict(config.classifier),
        "classifier_runs": config.runs,
        "cls_low_max_showers": config.cls_low_max_showers,
        "fpd_min_samples": config.fpd_min_samples,
        "fpd_max_samples": config.fpd_max_samples,
        "kpd_batch_size": config.kpd_batch_size,
        "prdc_k": config.prdc_k,
        "prdc_max_samples": config.prdc_max_samples,
        "feature_set_version": FEATURE_SET_VERSION,
        "histogram_binning_version": HISTOGRAM_BINNING_VERSION,
    }
    if config.crop is not None:
        settings["crop"] = config.crop
    return settings


def settings_hash(settings: dict[str, Any]) -> str:
    """sha256 of the settings' canonical JSON (sorted keys, no spaces): equal settings, equal hash."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
