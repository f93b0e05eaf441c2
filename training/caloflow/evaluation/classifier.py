"""The CaloChallenge binary classifier test: a DNN told generated (0) from reference (1) showers.

As in ``evaluate.py`` (HEAD): each class is shuffled and split into train / test / validation, with the
published Dataset 1 sizes 80 000 / 20 000 / 21 000 (pions 20 800) per class and the Datasets 2/3 ``ttv_split``
60 000 / 20 000 / 20 000 (also the ConvL2LFlows 60/20/20 used for the ILD set), i.e. fractions of the file
that we keep for smaller files; the DNN is Linear(in, 2048) -> LeakyReLU, then 2 x [Linear(2048, 2048) ->
LeakyReLU], then Linear(2048, 1) (dropout 0), trained with BCEWithLogits and Adam (lr 2e-4, batch 1000,
50 epochs); after each epoch the test accuracy is measured and the best state kept, stopping early at
accuracy 1. Then an isotonic regression (``out_of_bounds='clip'``, y in [1e-6, 1 - 1e-6]) fitted on the
test set's sigmoid outputs calibrates the validation outputs, and

* AUC = ROC AUC of the calibrated validation outputs;
* JSD = (ln 2 - BCE_cal) / ln 2, with BCE_cal the binary cross-entropy of the calibrated outputs.

A calibrated classifier that cannot tell the samples apart outputs about 1/2 everywhere: AUC 0.5, JSD 0.
Unlike the reference, the split and the initialisation are seeded, and we run in float32. The split gathers
the rows straight into float32 tensors block by block (no float64 copy of a 40 501-column input is made).
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn
from tqdm import tqdm

__all__ = [
    "ClassifierResult",
    "ClassifierSettings",
    "RepeatedResult",
    "Split",
    "calibrated_metrics",
    "jsd_from_probabilities",
    "run_classifier",
    "run_repeated",
    "split_sizes",
]

Array = NDArray[np.float64]
CALIBRATION_EPSILON = 1e-6
# (train, test, validation) per class for a full Dataset 1 file, and that file's size
PUBLISHED_SPLIT = {"ds1-photon": (80_000, 20_000, 21_000), "ds1-pion": (80_000, 20_000, 20_800)}
DEFAULT_SPLIT = (60_000, 20_000, 20_000)  # evaluate.py's ttv_split for Datasets 2 and 3; ConvL2LFlows' 60/20/20
_GATHER_ROWS = 1024


@dataclass(frozen=True)
class ClassifierSettings:
    """The published classifier; tests and quick runs lower ``hidden`` and ``epochs``."""

    hidden: int = 2048
    hidden_layers: int = 2
    epochs: int = 50
    learning_rate: float = 2e-4
    batch_size: int = 1000
    dropout: float = 0.0


@dataclass(frozen=True)
class Split:
    """Per-class numbers of showers in train / test (calibration, model selection) / validation."""

    train: int
    test: int
    validation: int


@dataclass(frozen=True)
class ClassifierResult:
    auc: float
    jsd: float
    auc_uncalibrated: float
    best_epoch: int
    epochs_run: int
    best_test_accuracy: float


@dataclass(frozen=True)
class RepeatedResult:
    runs: tuple[ClassifierResult, ...]
    split: Split
    n_inputs: int
    settings: ClassifierSettings = field(default_factory=ClassifierSettings)

    @property
    def auc_mean(self) -> float:
        return float(np.mean([r.auc for r in self.runs]))

    @property
    def auc_std(self) -> float:
        return float(np.std([r.auc for r in self.runs], ddof=1)) if len(self.runs) > 1 else 0.0

    @property
    def jsd_mean(self) -> float:
        return float(np.mean([r.jsd for r in self.runs]))

    @property
    def jsd_std(self) -> float:
        return float(np.std([r.jsd for r in self.runs], ddof=1)) if len(self.runs) > 1 else 0.0


def split_sizes(n_per_class: int, dataset_name: str) -> Split:
    """The published split of ``dataset_name`` (a registry name or short form) in its fractions of ``n_per_class``."""
    from caloflow.data.datasets import dataset

    train, test, validation = PUBLISHED_SPLIT.get(dataset(dataset_name).name, DEFAULT_SPLIT)
    total = train + test + validation
    n_train, n_test = n_per_class * train // total, n_per_class * test // total
    split = Split(n_train, n_test, n_per_class - n_train - n_test)
    if min(split.train, split.test, split.validation) < 1:
        raise ValueError(f"{n_per_class} showers per class are too few to split into train/test/validation")
    return split


def build_dnn(n_inputs: int, settings: ClassifierSettings) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(n_inputs, settings.hidden), nn.LeakyReLU(), nn.Dropout(settings.dropout)]
    for _ in range(settings.hidden_layers):
        layers += [nn.Linear(settings.hidden, settings.hidden), nn.LeakyReLU(), nn.Dropout(settings.dropout)]
    layers.append(nn.Linear(settings.hidden, 1))
    return nn.Sequential(*layers)


def jsd_from_probabilities(probabilities: Array, labels: Array) -> float:
    """(ln 2 - BCE) / ln 2 of (calibrated) probabilities, 0 for a coin flip and 1 for a perfect separation."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), CALIBRATION_EPSILON, 1.0 - CALIBRATION_EPSILON)
    y = np.asarray(labels, dtype=np.float64)
    bce = -np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))
    return float((math.log(2.0) - bce) / math.log(2.0))


def calibrated_metrics(
    test_probabilities: Array, test_labels: Array, val_probabilities: Array, val_labels: Array
) -> tuple[float, float]:
    """(AUC, JSD) of the validation outputs after an isotonic calibration fitted on the test outputs."""
    iso = IsotonicRegression(out_of_bounds="clip", y_min=CALIBRATION_EPSILON, y_max=1.0 - CALIBRATION_EPSILON)
    iso.fit(test_probabilities, test_labels)
    calibrated = iso.predict(val_probabilities)
    return float(roc_auc_score(val_labels, calibrated)), jsd_from_probabilities(calibrated, val_labels)


@dataclass(frozen=True)
class _Data:
    x: Tensor
    y: Tensor


def _split_data(
    generated: NDArray[Any], reference: NDArray[Any], split: Split, rng: np.random.Generator, device: torch.device
) -> tuple[_Data, _Data, _Data]:
    """Shuffle each class, cut it into train/test/validation, merge the classes and shuffle again."""
    bounds = (0, split.train, split.train + split.test, split.train + split.test + split.validation)
    parts: list[_Data] = []
    gen_order, ref_order = rng.permutation(len(generated)), rng.permutation(len(reference))
    for lo, hi in itertools.pairwise(bounds):
        rows = np.concatenate([gen_order[lo:hi], ref_order[lo:hi] + len(generated)])
        y = np.concatenate([np.zeros(hi - lo), np.ones(hi - lo)])
        order = rng.permutation(len(rows))
        parts.append(_Data(_gather(generated, reference, rows[order], device), _tensor(y[order], device)))
    return parts[0], parts[1], parts[2]


def _tensor(a: Array, device: torch.device) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)


def _gather(generated: NDArray[Any], reference: NDArray[Any], rows: NDArray[np.int64], device: torch.device) -> Tensor:
    """Rows of the virtual concatenation [generated; reference] as one float32 tensor, filled block by block."""
    out = torch.empty((len(rows), generated.shape[1]), dtype=torch.float32)
    n_gen = len(generated)
    for start in range(0, len(rows), _GATHER_ROWS):
        index = rows[start : start + _GATHER_ROWS]
        is_gen = index < n_gen
        block = np.empty((len(index), generated.shape[1]), dtype=np.float32)
        block[is_gen] = generated[index[is_gen]]
        block[~is_gen] = reference[index[~is_gen] - n_gen]
        out[start : start + len(index)] = torch.from_numpy(block)
    return out.to(device)


def _train_epoch(
    model: nn.Module, data: _Data, optimiser: torch.optim.Optimizer, batch: int, generator: torch.Generator
) -> None:
    model.train()
    loss_fn = nn.BCEWithLogitsLoss()
    order = torch.randperm(len(data.x), generator=generator).to(data.x.device)
    for start in range(0, len(order), batch):
        index = order[start : start + batch]
        optimiser.zero_grad()
        loss_fn(model(data.x[index])[:, 0], data.y[index]).backward()
        optimiser.step()


@torch.no_grad()
def _probabilities(model: nn.Module, data: _Data, batch: int) -> Array:
    model.eval()
    out = [torch.sigmoid(model(data.x[s : s + batch])[:, 0]) for s in range(0, len(data.x), batch)]
    return torch.cat(out).double().cpu().numpy()


def _accuracy(probabilities: Array, labels: Tensor) -> float:
    return float(np.mean((probabilities > 0.5) == (labels.cpu().numpy() > 0.5)))


def run_classifier(
    generated: NDArray[Any],
    reference: NDArray[Any],
    split: Split,
    settings: ClassifierSettings,
    *,
    seed: int,
    device: torch.device,
    desc: str = "classifier",
    progress: bool = True,
) -> ClassifierResult:
    """Train, select and calibrate one classifier on (generated, reference) input arrays of equal length."""
    if len(generated) != len(reference):
        raise ValueError(
            f"classes must be equally large, got {len(generated)} generated and {len(reference)} reference"
        )
    train, test, val = _split_data(generated, reference, split, np.random.default_rng(seed), device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = build_dnn(generated.shape[1], settings).to(device)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    best_state, best_accuracy, best_epoch, epochs_run = copy.deepcopy(model.state_dict()), -1.0, 0, 0
    for epoch in tqdm(range(1, settings.epochs + 1), desc=desc, unit="epoch", disable=not progress, leave=False):
        _train_epoch(model, train, optimiser, settings.batch_size, generator)
        accuracy = _accuracy(_probabilities(model, test, settings.batch_size), test.y)
        epochs_run = epoch
        if accuracy > best_accuracy:
            best_state, best_accuracy, best_epoch = copy.deepcopy(model.state_dict()), accuracy, epoch
        if accuracy >= 1.0:
            break
    model.load_state_dict(best_state)
    test_p, val_p = _probabilities(model, test, settings.batch_size), _probabilities(model, val, settings.batch_size)
    val_labels = val.y.double().cpu().numpy()
    auc, jsd = calibrated_metrics(test_p, test.y.double().cpu().numpy(), val_p, val_labels)
    return ClassifierResult(auc, jsd, float(roc_auc_score(val_labels, val_p)), best_epoch, epochs_run, best_accuracy)


def run_repeated(
    generated: NDArray[Any],
    reference: NDArray[Any],
    dataset_name: str,
    settings: ClassifierSettings,
    *,
    runs: int,
    seed: int,
    device: torch.device,
    desc: str = "classifier",
    progress: bool = True,
) -> RepeatedResult:
    """``runs`` classifiers with seeds seed, seed + 1, ... (fresh split and initialisation each): mean and spread."""
    split = split_sizes(len(generated), dataset_name)
    results = tuple(
        run_classifier(
            generated,
            reference,
            split,
            settings,
            seed=seed + r,
            device=device,
            desc=f"{desc} {r + 1}/{runs}",
            progress=progress,
        )
        for r in range(runs)
    )
    return RepeatedResult(results, split, generated.shape[1], settings)
