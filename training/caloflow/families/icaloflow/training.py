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

import json
import logging
import platform
import time
from collections.abc import Callable, Iterable
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
from caloflow.families.icaloflow.models import FLOW_NAMES, ICaloFlowModels, build_models, count_parameters
from caloflow.families.icaloflow.presets import ICaloFlowPreset
from caloflow.flows import Flow
from caloflow.training import distillation as dist
from caloflow.training.data import batches_per_epoch, iterate_batches
from caloflow.training.objectives import mean_nll
from caloflow.training.presets import Schedule
from caloflow.training.stage import Stage, StageResult, load_weights, write_json_atomic

logger = logging.getLogger(__name__)

__all__ = ["STAGES", "RunConfigError", "TrainContext", "make_conditioning", "train_run"]

STAGES = FLOW_NAMES
EVAL_SEED = 12345
EVAL_BATCH = 2000
STAGE_SEED_OFFSETS = {name: i + 1 for i, name in enumerate(STAGES)}
Batch = Callable[[Tensor, Conditioning, torch.Generator | None], tuple[Tensor, Tensor]]


class RunConfigError(CaloflowError):
    """A run directory's ``run.json`` does not match the requested training."""


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
        "data": {
            "path": ctx.data.path,
            "sha256": ctx.data.sha256,
            "n_in_file": ctx.data.n_in_file,
            "n_train": len(ctx.data.train),
            "n_validation": len(ctx.data.validation),
            "energy_range_mev": [round(float(incident.min()), 3), round(float(incident.max()), 3)],
            "standin": ctx.data.is_standin,
            "attrs": {k: str(v) for k, v in ctx.data.attrs.items()},
        },
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "device": str(ctx.device)},
    }


def write_or_check_run_record(ctx: TrainContext) -> None:
    """Create ``run.json`` or check that the existing one describes the same training on the same data."""
    path = ctx.directory / "run.json"
    record = run_record(ctx)
    if path.exists():
        existing = json.loads(path.read_text())
        for key in ("family", "dataset", "preset", "seed", "conditioning"):
            if existing.get(key) != json.loads(json.dumps(record[key])):
                raise RunConfigError(f"{path}: existing run has a different {key}; use a new --out directory")
        if existing["data"]["sha256"] != record["data"]["sha256"]:
            raise RunConfigError(f"{path}: existing run was trained on other data (sha256 differs)")
        return
    ctx.directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, path)


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


def _run_stage(
    ctx: TrainContext,
    name: str,
    model: Flow,
    schedule: Schedule,
    step: Callable[[Tensor, torch.Generator], Tensor],
    evaluate: Callable[[], dict[str, float]],
    select_key: str,
) -> StageResult:
    n = _size(ctx.data.train, name)

    def batches(generator: torch.Generator) -> Iterable[Tensor]:
        return iterate_batches(n, schedule.batch_size, generator, max_batches=schedule.max_train_batches)

    stage = Stage(
        name=name,
        model=model,
        schedule=schedule,
        directory=ctx.directory / name,
        step=step,
        evaluate=evaluate,
        batches=batches,
        steps_per_epoch=batches_per_epoch(n, schedule.batch_size, schedule.max_train_batches),
        select_key=select_key,
        seed=ctx.seed + STAGE_SEED_OFFSETS[name],
        progress=ctx.progress,
        resume=ctx.resume,
        device=ctx.device,
        extra={"parameters": count_parameters(model)},
    )
    return stage.run()


def train_teacher(ctx: TrainContext, name: str, flow: Flow) -> StageResult:
    """flow1, flow2 or flow3: maximum likelihood, selected by the fixed validation NLL."""
    schedule = getattr(ctx.preset, name).schedule
    batch = _batch_fn(ctx.data.train, name)
    index = _eval_index(ctx, name, ctx.preset.eval_pairs)

    def step(chunk: Tensor, generator: torch.Generator) -> Tensor:
        return mean_nll(flow, *batch(chunk, ctx.cond, generator))

    def evaluate() -> dict[str, float]:
        return {"val_nll": validation_nll(ctx, name, flow, index)}

    return _run_stage(ctx, name, flow, schedule, step, evaluate, "val_nll")


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

    return _run_stage(ctx, name, student, spec.schedule, step, evaluate, "kl")


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
    stages = {
        name: json.loads(path.read_text())
        for name in STAGES
        if (path := ctx.directory / name / "summary.json").exists()
    }
    summary = {
        "family": "icaloflow",
        "dataset": ctx.ds.name,
        "preset": ctx.preset.name,
        "data_sha256": ctx.data.sha256,
        "standin": ctx.data.is_standin,
        "wall_seconds": round(sum(s.get("wall_seconds", 0.0) for s in stages.values()), 2),
        "stages": stages,
    }
    write_json_atomic(summary, ctx.directory / "summary.json")
    return summary


def trained_models(directory: Path, preset: ICaloFlowPreset, cond: Conditioning, seed: int) -> ICaloFlowModels:
    """All five flows of a finished run, from their ``best.pt``."""
    models = build_models(preset, cond, seed, "cpu")
    for name in STAGES:
        load_stage(directory, name, models.get(name))
    return models
