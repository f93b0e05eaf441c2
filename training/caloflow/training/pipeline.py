"""The three training stages and ``train all``: flow-I, the MAF teacher, the distilled IAF student.

A run directory holds ``run.json`` (particle, preset, preprocessing constants, seed, data checksum: what
export needs to rebuild the models), one sub-directory per stage (see :mod:`caloflow.training.stage`) and
``summary.json`` (every stage's figures, the student quality gate, wall times).
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from caloflow import __version__
from caloflow import preprocessing as pp
from caloflow.data.datasets import geometry_for
from caloflow.errors import CaloflowError
from caloflow.flows import Flow
from caloflow.training import distillation as dist
from caloflow.training.data import ShowerTensors, TrainingData, batches_per_epoch, iterate_batches
from caloflow.training.models import make_flow1, make_student, make_teacher
from caloflow.training.objectives import LayerMaps, flow1_inputs, flow2_inputs, mean_nll
from caloflow.training.presets import Preset, Schedule
from caloflow.training.stage import (
    RunRecordError,
    RunSettings,
    StageResult,
    data_record,
    load_weights,
    run_stage,
    write_json_atomic,
    write_or_check_record,
)
from caloflow.training.stage import (
    write_run_summary as write_summary,
)

logger = logging.getLogger(__name__)

EVAL_BATCH = 2000
EVAL_SEED = 12345
BIAS_MATCH_SHOWERS = 2000
"""Training showers over which a fresh student's output bias is matched to the teacher's."""
STAGE_SEED_OFFSETS = {"flow1": 1, "teacher": 2, "student": 3}
STAGES: tuple[str, ...] = ("flow1", "teacher", "student")


RunConfigError = RunRecordError
"""A run directory's ``run.json`` does not match the requested training (kept name)."""


@dataclass(frozen=True)
class RunContext:
    """Everything the stages share: where, on what, with which constants."""

    directory: Path
    particle: str
    preset: Preset
    prep: pp.Preprocessing
    data: TrainingData
    seed: int
    device: torch.device
    progress: bool = True
    resume: bool = False

    @cached_property
    def maps(self) -> LayerMaps:
        return LayerMaps.build(self.prep.layer_sizes, self.device)

    def flow1_inputs(self, batch: ShowerTensors, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        return flow1_inputs(batch, self.prep, self.maps, generator)

    def flow2_inputs(self, batch: ShowerTensors, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        return flow2_inputs(batch, self.prep, self.maps, generator)


def make_preprocessing(particle: str, data: TrainingData) -> pp.Preprocessing:
    """The constants of a run; u_0's scale is fitted on the training split."""
    geometry = geometry_for(particle)
    ratio = data.train.showers.sum(dim=1) / data.train.incident[:, 0]
    noise1, noise2 = pp.default_noise(particle)
    return pp.Preprocessing(
        layer_sizes=geometry.layer_sizes,
        u0_scale=pp.fit_u0_scale(ratio),
        noise_flow1=noise1,
        noise_flow2=noise2,
    )


def run_record(ctx: RunContext) -> dict[str, Any]:
    return {
        "caloflow_version": __version__,
        "particle": ctx.particle,
        "preset": ctx.preset.to_dict(),
        "preprocessing": ctx.prep.to_dict(),
        "seed": ctx.seed,
        "data": data_record(
            ctx.data,
            len(ctx.data.train),
            len(ctx.data.validation),
            (
                float(ctx.data.train.incident.min()) * pp.ENERGY_UNIT_MEV,
                float(ctx.data.train.incident.max()) * pp.ENERGY_UNIT_MEV,
            ),
        ),
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": str(ctx.device),
        },
    }


def write_or_check_run_record(ctx: RunContext) -> None:
    """Create ``run.json``, or check that an existing one describes the same training (same data too)."""
    write_or_check_record(ctx.directory / "run.json", run_record(ctx), ("particle", "preset", "seed", "preprocessing"))


def _batches(split: ShowerTensors, schedule: Schedule) -> Callable[[torch.Generator], Iterable[Tensor]]:
    def batches(generator: torch.Generator) -> Iterable[Tensor]:
        return iterate_batches(len(split), schedule.batch_size, generator, max_batches=schedule.max_train_batches)

    return batches


def _steps(split: ShowerTensors, schedule: Schedule) -> int:
    return batches_per_epoch(len(split), schedule.batch_size, schedule.max_train_batches)


def validation_nll(
    flow: Flow,
    split: ShowerTensors,
    inputs: Callable[[ShowerTensors, torch.Generator | None], tuple[Tensor, Tensor]],
    device: torch.device,
) -> float:
    """Mean NLL over ``split`` with fixed dequantisation noise (same noise every epoch: a steadier metric)."""
    generator = torch.Generator(device=device).manual_seed(EVAL_SEED)
    total, count = 0.0, 0
    for start in range(0, len(split), EVAL_BATCH):
        x, c = inputs(split.subset(torch.arange(start, min(start + EVAL_BATCH, len(split)), device=device)), generator)
        total += float(-flow.log_prob(x, c).sum())
        count += len(x)
    return total / max(count, 1)


def train_flow1(ctx: RunContext) -> tuple[Flow, StageResult]:
    flow = make_flow1(ctx.preset, ctx.prep, ctx.seed, ctx.device)
    train, schedule = ctx.data.train, ctx.preset.flow1.schedule

    def step(index: Tensor, generator: torch.Generator) -> Tensor:
        return mean_nll(flow, *ctx.flow1_inputs(train.subset(index), generator))

    def evaluate() -> dict[str, float]:
        nll = validation_nll(flow, ctx.data.validation, ctx.flow1_inputs, ctx.device)
        return {"val_nll": nll}

    return flow, _run_stage(ctx, "flow1", flow, schedule, step, evaluate, "val_nll")


def train_teacher(ctx: RunContext) -> tuple[Flow, StageResult]:
    flow = make_teacher(ctx.preset, ctx.prep, ctx.seed, ctx.device)
    train, schedule = ctx.data.train, ctx.preset.teacher.schedule

    def step(index: Tensor, generator: torch.Generator) -> Tensor:
        return mean_nll(flow, *ctx.flow2_inputs(train.subset(index), generator))

    def evaluate() -> dict[str, float]:
        nll = validation_nll(flow, ctx.data.validation, ctx.flow2_inputs, ctx.device)
        return {"val_nll": nll}

    return flow, _run_stage(ctx, "teacher", flow, schedule, step, evaluate, "val_nll")


def train_student(ctx: RunContext, flow1: Flow, teacher: Flow) -> tuple[Flow, StageResult]:
    """Distil ``teacher`` into a fresh IAF; select the epoch with the smallest held-out KL proxy."""
    cfg, train = ctx.preset.student, ctx.data.train
    flow1.eval().requires_grad_(False)
    teacher.eval().requires_grad_(False)
    student = make_student(ctx.preset, teacher, ctx.seed, ctx.device)
    if cfg.match_teacher_bias:  # a resumed run's checkpoint overwrites this
        bias_generator = torch.Generator(device=ctx.device).manual_seed(EVAL_SEED)
        index = torch.randperm(len(train), generator=bias_generator, device=ctx.device)[:BIAS_MATCH_SHOWERS]
        x, labels = ctx.flow2_inputs(train.subset(index), bias_generator)
        dist.match_output_bias(student, teacher, x, labels)
    weights = dist.GuidanceWeights()
    held_out = dist.sample_latent_batch(
        flow1,
        train.incident,
        cfg.kl_eval_size,
        ctx.prep,
        torch.Generator(device=ctx.device).manual_seed(EVAL_SEED),
    )

    def step(index: Tensor, generator: torch.Generator) -> Tensor:
        x, labels = ctx.flow2_inputs(train.subset(index), generator)
        latent = dist.sample_latent_batch(flow1, train.incident, len(index), ctx.prep, generator)
        return dist.distillation_loss(student, teacher, x, labels, latent, beta=cfg.beta, weights=weights)

    def evaluate() -> dict[str, float]:
        kl = sum(
            float(dist.kl_proxy(student, teacher, chunk)) * len(chunk.noise) for chunk in _chunks(held_out, EVAL_BATCH)
        )
        return {"kl": kl / len(held_out.noise)}

    result = _run_stage(ctx, "student", student, cfg.schedule, step, evaluate, "kl")
    result.extra["quality_gate"] = student_quality_gate(ctx, student, teacher)
    write_json_atomic(result.to_dict(), ctx.directory / "student" / "summary.json")
    return student, result


def _chunks(batch: dist.LatentBatch, size: int) -> Iterable[dist.LatentBatch]:
    for start in range(0, len(batch.noise), size):
        yield dist.LatentBatch(batch.noise[start : start + size], batch.labels[start : start + size])


def student_quality_gate(ctx: RunContext, student: Flow, teacher: Flow) -> dict[str, float]:
    """Student vs teacher NLL on the same validation showers and noise (student: slow D-pass direction)."""
    subset = ctx.data.validation.head(ctx.preset.student.nll_eval_size)
    started = time.perf_counter()
    with torch.no_grad():
        teacher_nll = validation_nll(teacher, subset, ctx.flow2_inputs, ctx.device)
        student_nll = validation_nll(student, subset, ctx.flow2_inputs, ctx.device)
    gap = (student_nll - teacher_nll) / abs(teacher_nll) if teacher_nll != 0 else float("nan")
    logger.info("quality gate: teacher NLL %.3f, student NLL %.3f (gap %+.2f %%)", teacher_nll, student_nll, 100 * gap)
    return {
        "n_showers": len(subset),
        "teacher_nll": teacher_nll,
        "student_nll": student_nll,
        "relative_gap": gap,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _run_stage(
    ctx: RunContext,
    name: str,
    model: Flow,
    schedule: Schedule,
    step: Callable[[Tensor, torch.Generator], Tensor],
    evaluate: Callable[[], dict[str, float]],
    select_key: str,
) -> StageResult:
    settings = RunSettings(ctx.directory, ctx.seed, STAGE_SEED_OFFSETS, ctx.device, ctx.progress, ctx.resume)
    return run_stage(
        settings, name, model, schedule, step, evaluate, n_samples=len(ctx.data.train), select_key=select_key
    )


def load_stage(ctx: RunContext, name: str, flow: Flow) -> Flow:
    path = ctx.directory / name / "best.pt"
    if not path.exists():
        raise CaloflowError(f"{path} not found: train {name} first (caloflow train {name} ... --out {ctx.directory})")
    load_weights(flow, path)
    return flow.eval()


def train_all(ctx: RunContext, stages: tuple[str, ...] = STAGES) -> dict[str, Any]:
    """Train the requested stages in order (earlier ones are loaded from the run directory) and summarise."""
    write_or_check_run_record(ctx)
    started = time.perf_counter()
    results: dict[str, StageResult] = {}
    if "flow1" in stages:
        flow1, results["flow1"] = train_flow1(ctx)
    if "teacher" in stages:
        teacher, results["teacher"] = train_teacher(ctx)
    if "student" in stages:
        if "flow1" not in stages:
            flow1 = load_stage(ctx, "flow1", make_flow1(ctx.preset, ctx.prep, ctx.seed, ctx.device))
        if "teacher" not in stages:
            teacher = load_stage(ctx, "teacher", make_teacher(ctx.preset, ctx.prep, ctx.seed, ctx.device))
        _, results["student"] = train_student(ctx, flow1, teacher)
    logger.info("trained %s in %.1f s", ", ".join(results), time.perf_counter() - started)
    return write_run_summary(ctx)


def write_run_summary(ctx: RunContext) -> dict[str, Any]:
    """``summary.json``: every finished stage's summary (also those trained by earlier commands)."""

    header = {
        "particle": ctx.particle,
        "preset": ctx.preset.name,
        "data_sha256": ctx.data.sha256,
        "standin": ctx.data.is_standin,
    }
    return write_summary(ctx.directory, STAGES, header)
