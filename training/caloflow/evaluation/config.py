"""What one evaluation computes: files, particle, metric groups, seeds, classifier settings, device."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from caloflow.evaluation.classifier import ClassifierSettings
from caloflow.evaluation.errors import EvaluationError

__all__ = ["CLASSIFIER_MODES", "METRICS", "EvaluationConfig", "parse_metrics"]

CLASSIFIER_MODES = ("cls-low", "cls-low-normed", "cls-high")
# hist: feature and voxel histograms; energy: E_tot/E_inc per incident energy; avg: average showers;
# corr: layer-energy correlations; the classifiers; fpd and kpd on the cls-high features.
METRICS = ("hist", "energy", "avg", "corr", *CLASSIFIER_MODES, "fpd", "kpd")
MIN_ENERGY_MEV = 1.0  # evaluate.py's Dataset 1 cut, applied to both files before anything else


@dataclass(frozen=True)
class EvaluationConfig:
    generated: Path
    reference: Path
    particle: str
    out: Path
    metrics: tuple[str, ...] = METRICS
    runs: int = 1
    seed: int = 0
    device: str = "auto"
    max_showers: int | None = None
    min_energy_mev: float = MIN_ENERGY_MEV
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    fpd_min_samples: int = 10_000
    fpd_max_samples: int = 50_000
    kpd_batch_size: int = 10_000
    threads: int | None = None  # torch CPU threads for the classifiers; None leaves torch's default
    progress: bool = True

    def __post_init__(self) -> None:
        if self.particle not in ("photon", "pion"):
            raise EvaluationError(f"--particle must be photon or pion, got {self.particle!r}")
        if self.runs < 1:
            raise EvaluationError(f"--runs must be at least 1, got {self.runs}")
        if not self.min_energy_mev >= 0:
            raise EvaluationError(f"--min-energy must be >= 0 MeV, got {self.min_energy_mev}")
        for name in ("hidden", "epochs", "batch_size"):
            if getattr(self.classifier, name) < 1:
                raise EvaluationError(f"--cls-{name.replace('_', '-')} must be positive")
        if not 2 <= self.fpd_min_samples <= self.fpd_max_samples or self.kpd_batch_size < 2:
            raise EvaluationError("need 2 <= --fpd-min-samples <= --fpd-max-samples and --kpd-batch-size >= 2")
        if self.threads is not None and self.threads < 1:
            raise EvaluationError(f"--threads must be positive, got {self.threads}")


def parse_metrics(text: str) -> tuple[str, ...]:
    """``all`` or a comma-separated subset of ``METRICS``, returned in the canonical order."""
    if text.strip() == "all":
        return METRICS
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(wanted - set(METRICS))
    if unknown or not wanted:
        raise EvaluationError(f"--metrics: unknown {unknown or text!r}; choose 'all' or from {', '.join(METRICS)}")
    return tuple(m for m in METRICS if m in wanted)
