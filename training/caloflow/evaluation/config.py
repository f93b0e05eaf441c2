"""What one evaluation computes: files, dataset, metric groups, seeds, classifier settings, device, memory bounds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from caloflow.data.datasets import Dataset, DatasetError, dataset
from caloflow.data.grid_geometry import GridGeometry
from caloflow.evaluation.classifier import ClassifierSettings
from caloflow.evaluation.errors import EvaluationError
from caloflow.evaluation.region import CropRegion, parse_crop

__all__ = ["CLASSIFIER_MODES", "METRICS", "EvaluationConfig", "parse_metrics"]

CLASSIFIER_MODES = ("cls-low", "cls-low-normed", "cls-high")
# hist: feature and voxel histograms; energy: E_tot/E_inc per incident energy; avg: average showers;
# corr: layer-energy correlations; the classifiers; fpd and kpd on the cls-high features; w1: the
# 1-Wasserstein distance of every per-shower observable, on the samples; prdc: precision, recall, density and
# coverage on the cls-high features.
METRICS = ("hist", "energy", "avg", "corr", *CLASSIFIER_MODES, "fpd", "kpd", "w1", "prdc")
MIN_ENERGY_MEV = 1.0  # evaluate.py's Dataset 1 cut; every dataset's own is its registry threshold_mev
# float32 bytes that the low-level classifier inputs (both classes, the arrays and their tensors) may take
# when --cls-low-max-showers is not given: about 4 100 Dataset 3 showers per class, all of a Dataset 1 file
CLS_LOW_BUDGET_BYTES = 2_560 * 2**20


@dataclass(frozen=True)
class EvaluationConfig:
    generated: Path
    reference: Path
    dataset: str  # a registry name or short form (photon, pion)
    out: Path
    metrics: tuple[str, ...] = METRICS
    runs: int = 1
    seed: int = 0
    device: str = "auto"
    max_showers: int | None = None
    min_energy_mev: float | None = None  # None: the dataset's threshold_mev
    cls_low_max_showers: int | None = None  # rows per class of the low-level classifiers; None: from the budget
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    fpd_min_samples: int = 10_000
    fpd_max_samples: int = 50_000
    kpd_batch_size: int = 10_000
    prdc_k: int = 5
    prdc_max_samples: int = 10_000  # rows per sample (seeded subsample): time O(n^2), memory O(1024 n)
    threads: int | None = None  # torch CPU threads for the classifiers; None leaves torch's default
    progress: bool = True
    # "X0:X1,Z0:Z1": evaluate only this lateral region of a grid dataset (both files zeroed outside it), so
    # every figure describes the crop region, not the whole grid; None: the whole grid
    crop: str | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "dataset", dataset(self.dataset).name)
        except DatasetError as exc:
            raise EvaluationError(f"--dataset: {exc}") from exc
        if self.min_energy_mev is None:
            object.__setattr__(self, "min_energy_mev", self.spec.threshold_mev)
        if self.cls_low_max_showers is not None and self.cls_low_max_showers < 2:
            raise EvaluationError(f"--cls-low-max-showers must be at least 2, got {self.cls_low_max_showers}")
        if self.runs < 1:
            raise EvaluationError(f"--runs must be at least 1, got {self.runs}")
        if not self.cut_mev >= 0:
            raise EvaluationError(f"--min-energy must be >= 0 MeV, got {self.min_energy_mev}")
        for name in ("hidden", "epochs", "batch_size"):
            if getattr(self.classifier, name) < 1:
                raise EvaluationError(f"--cls-{name.replace('_', '-')} must be positive")
        if not 2 <= self.fpd_min_samples <= self.fpd_max_samples or self.kpd_batch_size < 2:
            raise EvaluationError("need 2 <= --fpd-min-samples <= --fpd-max-samples and --kpd-batch-size >= 2")
        if self.prdc_k < 1 or self.prdc_max_samples <= self.prdc_k:
            raise EvaluationError("need --prdc-k >= 1 and --prdc-max-samples above it")
        if self.threads is not None and self.threads < 1:
            raise EvaluationError(f"--threads must be positive, got {self.threads}")
        if self.crop is not None:
            self.region  # noqa: B018 - parses and checks --crop against the grid now

    @property
    def region(self) -> CropRegion | None:
        """The ``crop`` region on the dataset's grid; None for the whole grid."""
        if self.crop is None:
            return None
        grid = self.spec.geometry
        if not isinstance(grid, GridGeometry):
            raise EvaluationError(f"--crop: dataset {self.dataset} is not a Cartesian grid; crops are for grids only")
        return parse_crop(self.crop, grid)

    @property
    def spec(self) -> Dataset:
        """The registry entry of ``dataset``."""
        return dataset(self.dataset)

    @property
    def cut_mev(self) -> float:
        """The voxel cut (``min_energy_mev``, resolved)."""
        assert self.min_energy_mev is not None
        return self.min_energy_mev

    def low_level_rows(self, n_showers: int, n_inputs: int) -> int:
        """Rows per class for each low-level classifier mode asked for: the option, or what the budget allows."""
        if self.cls_low_max_showers is not None:
            return min(n_showers, self.cls_low_max_showers)
        modes = max(1, sum(m in self.metrics for m in ("cls-low", "cls-low-normed")))
        return min(n_showers, CLS_LOW_BUDGET_BYTES // (4 * n_inputs * 2 * 2 * modes))


def parse_metrics(text: str) -> tuple[str, ...]:
    """``all`` or a comma-separated subset of ``METRICS``, returned in the canonical order."""
    if text.strip() == "all":
        return METRICS
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(wanted - set(METRICS))
    if unknown or not wanted:
        raise EvaluationError(f"--metrics: unknown {unknown or text!r}; choose 'all' or from {', '.join(METRICS)}")
    return tuple(m for m in METRICS if m in wanted)
