"""Training an iCaloFlow run: flow-1, the flow-2 and flow-3 MAF teachers, then their distilled IAF students.

Each stage is the shared :class:`caloflow.training.stage.Stage` (seeded, resumable, atomic checkpoints,
``best.pt`` loadable with ``weights_only``, schedules from the loader length) in ``<out>/<stage>/``; the run
directory's ``run.json`` records dataset, preset, conditioning constants, seed and data checksum.

Deviations from the reference, with their reasons (note 4.1):

* float32 training (the reference used float64 everywhere, 4.1.13): the flows are float32 in serving too.
* Teachers are selected by the validation NLL with fixed dequantisation noise; flow-3's on a fixed set of
  ``preset.eval_pairs`` validation (event, layer) pairs (the reference evaluated 1.3 M pairs every 250 steps).
* Students are selected by the KL proxy log q_S(x^) - log p_T(x^) on a *fixed held-out* set: validation
  conditions with fixed noise, eval mode (the reference used a running mean over training batches, 4.1.10).
* The z-path uses the data batch's conditions with noise of the batch's own size (the reference's
  ``args.batch_size`` rows crashed on a partial last batch, 4.1.6).
* The distillation loss is the shared fully guided one (:mod:`caloflow.training.distillation`), unchanged.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from caloflow import __version__
from caloflow.data.datasets import Dataset
from caloflow.errors import CaloflowError
from caloflow.families.icaloflow.context import Conditioning, fit_energy_scale
from caloflow.families.icaloflow.data import LayerData, LayerSplit
from caloflow.families.icaloflow.models import FLOW_NAMES, ICaloFlowModels, build_models
from caloflow.families.icaloflow.presets import ICaloFlowPreset
from caloflow.flows import Flow
from caloflow.training import distillation as dist
from caloflow.training.objectives import mean_nll
from caloflow.training.stage import (
    RunSettings,
    StageResult,
    data_record,
    load_weights,
    run_stage,
    write_or_check_record,
)
from caloflow.training.stage import write_run_summary as write_summary

logger = logging.getLogger(__name__)

__all__ = ["STAGES", "TrainContext", "make_conditioning", "train_run"]

STAGES = FLOW_NAMES
EVAL_SEED = 12345
EVAL_BATCH = 2000
STAGE_SEED_OFFSETS = {name: i + 1 for i, name in enumerate(STAGES)}
Batch = Callable[[Tensor, Conditioning, torch.Generator | None], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class TrainContext:
    directory: Path
    ds: Dataset
    preset: ICaloFlowPreset
    cond: Conditioning
    data: LayerData
    seed: int
    device: torch.device
    progress: bool = True
    resume: bool = False

    def settings(self) -> RunSettings:
        return RunSettings(self.directory, self.seed, STAGE_SEED_OFFSETS, self.device, self.progress, self.resume)


def make_conditioning(ds: Dataset, preset: ICaloFlowPreset, data: LayerData) -> Conditioning:
    return Conditioning(
        n_layers=ds.n_layers,
        layer_size=ds.n_voxels // ds.n_layers,
        energy_scale_mev=fit_energy_scale(data.max_layer_energy_mev),
        noise_mev=preset.noise_mev,
    )


def run_record(ctx: TrainContext) -> dict[str, Any]:
    incident = ctx.data.train.incident
    return {
        "caloflow_version": __version__,
        "family": "icaloflow",
        "dataset": ctx.ds.name,
        "preset": ctx.preset.to_dict(),
        "conditioning": ctx.cond.to_dict(),
        "seed": ctx.seed,
        "data": data_record(
            ctx.data, len(ctx.data.train), len(ctx.data.validation), (float(incident.min()), float(incident.max()))
        ),
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "device": str(ctx.device)},
    }


def write_or_check_run_record(ctx: TrainContext) -> None:
    """Create ``run.json`` or check that the existing one describes the same training on the same data."""
    keys = ("family", "dataset", "preset", "seed", "conditioning")
    write_or_check_record(ctx.directory / "run.json", run_record(ctx), keys)


def _size(split: LayerSplit, name: str) -> int:
    return split.n_pairs if name in ("flow3", "student3") else len(split)


def _batch_fn(split: LayerSplit, name: str) -> Batch:
    return {"flow1": split.flow1_batch, "flow2": split.flow2_batch, "student2": split.flow2_batch}.get(
        name, split.flow3_batch
    )


def _eval_index(ctx: TrainContext, name: str, limit: int) -> Tensor:
    """Fixed validation indices (all of them, or ``limit`` drawn once with a fixed seed)."""
    n = _size(ctx.data.validation, name)
    if n <= limit:
        return torch.arange(n, device=ctx.device)
    generator = torch.Generator(device=ctx.device).manual_seed(EVAL_SEED)
    return torch.randperm(n, generator=generator, device=ctx.device)[:limit]


def validation_nll(ctx: TrainContext, name: str, flow: Flow, index: Tensor) -> float:
    """Mean NLL of ``flow`` on the fixed validation ``index`` with fixed dequantisation noise."""
    batch = _batch_fn(ctx.data.validation, name)
    generator = torch.Generator(device=ctx.device).manual_seed(EVAL_SEED)
    total = 0.0
    for start in range(0, len(index), EVAL_BATCH):
        x, c = batch(index[start : start + EVAL_BATCH], ctx.cond, generator)
        total += float(-flow.log_prob(x, c).sum())
    return total / max(len(index), 1)


def train_teacher(ctx: TrainContext, name: str, flow: Flow) -> StageResult:
    """flow1, flow2 or flow3: maximum likelihood, selected by the fixed validation NLL."""
    schedule = getattr(ctx.preset, name).schedule
    batch = _batch_fn(ctx.data.train, name)
    index = _eval_index(ctx, name, ctx.preset.eval_pairs)

    def step(chunk: Tensor, generator: torch.Generator) -> Tensor:
        return mean_nll(flow, *batch(chunk, ctx.cond, generator))

    def evaluate() -> dict[str, float]:
        return {"val_nll": validation_nll(ctx, name, flow, index)}

    n = _size(ctx.data.train, name)
    return run_stage(ctx.settings(), name, flow, schedule, step, evaluate, n_samples=n, select_key="val_nll")


def _held_out(ctx: TrainContext, name: str, features: int, size: int) -> dist.LatentBatch:
    index = _eval_index(ctx, name, size)
    generator = torch.Generator(device=ctx.device).manual_seed(EVAL_SEED)
    _, labels = _batch_fn(ctx.data.validation, name)(index, ctx.cond, generator)
    noise = torch.randn(len(index), features, generator=generator, device=ctx.device)
    return dist.LatentBatch(noise, labels)


def train_student(ctx: TrainContext, name: str, student: Flow, teacher: Flow) -> StageResult:
    """student2 or student3: the shared fully guided distillation, selected by the held-out KL proxy."""
    spec = getattr(ctx.preset, name)
    teacher.eval().requires_grad_(False)
    batch = _batch_fn(ctx.data.train, name)
    held_out = _held_out(ctx, name, student.features, spec.kl_eval_size)
    weights = dist.GuidanceWeights()

    def step(chunk: Tensor, generator: torch.Generator) -> Tensor:
        x, labels = batch(chunk, ctx.cond, generator)
        noise = torch.randn(x.shape, generator=generator, device=ctx.device)
        latent = dist.LatentBatch(noise, labels)  # the data batch's conditions, as the reference's z-path
        return dist.distillation_loss(student, teacher, x, labels, latent, beta=spec.beta, weights=weights)

    def evaluate() -> dict[str, float]:
        n = len(held_out.noise)
        total = 0.0
        for start in range(0, n, EVAL_BATCH):
            part = dist.LatentBatch(
                held_out.noise[start : start + EVAL_BATCH], held_out.labels[start : start + EVAL_BATCH]
            )
            total += float(dist.kl_proxy(student, teacher, part)) * len(part.noise)
        return {"kl": total / max(n, 1)}

    n = _size(ctx.data.train, name)
    return run_stage(ctx.settings(), name, student, spec.schedule, step, evaluate, n_samples=n, select_key="kl")


def load_stage(directory: Path, name: str, flow: Flow) -> Flow:
    path = directory / name / "best.pt"
    if not path.exists():
        raise CaloflowError(f"{path} not found: train {name} first (caloflow train ... --out {directory})")
    try:
        load_weights(flow, path)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CaloflowError(f"{path}: cannot load the {name} checkpoint ({error})") from error
    return flow.eval()


def train_run(ctx: TrainContext, stages: tuple[str, ...] = STAGES) -> dict[str, Any]:
    """Train ``stages`` in order (earlier stages a student needs are loaded from the run) and summarise."""
    write_or_check_run_record(ctx)
    models = build_models(ctx.preset, ctx.cond, ctx.seed, ctx.device)
    started = time.perf_counter()
    for name in STAGES:
        if name in stages:
            if name.startswith("student"):
                teacher_name = name.replace("student", "flow")
                teacher = models.get(teacher_name)
                if teacher_name not in stages:
                    load_stage(ctx.directory, teacher_name, teacher)
                train_student(ctx, name, models.get(name), teacher)
            else:
                train_teacher(ctx, name, models.get(name))
    logger.info("trained %s in %.1f s", ", ".join(stages), time.perf_counter() - started)
    return write_run_summary(ctx)


def write_run_summary(ctx: TrainContext) -> dict[str, Any]:
    header = {"family": "icaloflow", "dataset": ctx.ds.name, "preset": ctx.preset.name}
    return write_summary(
        ctx.directory, STAGES, {**header, "data_sha256": ctx.data.sha256, "standin": ctx.data.is_standin}
    )


def trained_models(directory: Path, preset: ICaloFlowPreset, cond: Conditioning, seed: int) -> ICaloFlowModels:
    """All five flows of a finished run, from their ``best.pt``."""
    models = build_models(preset, cond, seed, "cpu")
    for name in STAGES:
        load_stage(directory, name, models.get(name))
    return models
