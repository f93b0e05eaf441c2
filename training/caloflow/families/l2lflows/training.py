"""L2LFlows' three stages on the project's :class:`~caloflow.training.stage.Stage` (seeded, resumable):

* ``flow1``: flow-I over the L layer energies given E_inc (maximum likelihood);
* ``teacher``: the L per-layer MAF flows, teacher forcing (true previous images as context, note 3.4). They
  share no parameter, so one optimiser on the sum of their NLLs trains each exactly as on its own (Adam is
  per parameter), one batch of showers feeding all L layers;
* ``student``: each layer's MAF distilled into an IAF with the project's fully guided loss
  (:func:`caloflow.training.distillation.distillation_loss`). The data (x) path uses the true contexts; in the
  latent (z) path a ``generated_context_fraction`` share of the rows see the student chain's own earlier
  layers (generated without gradient at the start of the step), so the students learn on the contexts they
  meet when serving and errors do not drift along the chain. Selection: the summed per-layer KL proxy on a
  fixed held-out set with chain-generated contexts.

After the student stage, ``student/summary.json`` holds per layer the student-teacher KL and the drift: W1
between data and the student chain's layers for hits and brightest-cell share, with true vs generated context.
"""

from __future__ import annotations

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
from caloflow.families.l2lflows import transforms as tf
from caloflow.families.l2lflows.chain import generate_images, layer_observables, w1
from caloflow.families.l2lflows.data import L2LData
from caloflow.families.l2lflows.inputs import BatchInputs, batch_inputs
from caloflow.families.l2lflows.models import LayerFlows, make_flow1, make_layer_students, make_layer_teachers
from caloflow.families.l2lflows.presets import L2LPreset
from caloflow.flows import Flow
from caloflow.training import distillation as dist
from caloflow.training.data import ShowerTensors
from caloflow.training.pipeline import EVAL_SEED, STAGE_SEED_OFFSETS, STAGES
from caloflow.training.presets import Schedule
from caloflow.training.stage import (
    EvalFn,
    RunSettings,
    StageResult,
    StepFn,
    data_record,
    load_weights,
    run_stage,
    write_json_atomic,
    write_or_check_record,
    write_run_summary,
)

logger = logging.getLogger(__name__)

FAMILY = "l2lflows"
EVAL_BATCH = 1000
DRIFT_LAYERS = 5
"""The drift figures cover the last this many layers."""


class L2LRunError(CaloflowError):
    """A run directory does not match the requested training, or misses a stage."""


@dataclass(frozen=True)
class L2LRun:
    directory: Path
    ds: Dataset
    preset: L2LPreset
    prep: tf.L2LPreprocessing
    data: L2LData
    seed: int
    device: torch.device
    progress: bool = True
    resume: bool = False

    @property
    def particle(self) -> str:
        return self.ds.particle

    @property
    def n_layers(self) -> int:
        return self.prep.n_layers

    def inputs(self, batch: ShowerTensors, generator: torch.Generator | None) -> BatchInputs:
        return batch_inputs(batch, self.prep, generator)

    def flow1(self) -> Flow:
        return make_flow1(self.preset, self.n_layers, self.seed, self.device)

    def teachers(self) -> LayerFlows:
        return make_layer_teachers(self.preset, self.n_layers, self.prep.cells_per_layer, self.seed, self.device)

    def settings(self) -> RunSettings:
        return RunSettings(self.directory, self.seed, STAGE_SEED_OFFSETS, self.device, self.progress, self.resume)

    def run_stage(
        self, name: str, model: torch.nn.Module, schedule: Schedule, step: StepFn, evaluate: EvalFn, select_key: str
    ) -> StageResult:
        """The shared :func:`~caloflow.training.stage.run_stage` over this run's training showers."""
        n_samples = len(self.data.train)
        return run_stage(
            self.settings(), name, model, schedule, step, evaluate, n_samples=n_samples, select_key=select_key
        )


def make_preprocessing(data: L2LData, threshold_mev: float, context_pool: int = 1) -> tf.L2LPreprocessing:
    energies = data.train.showers.sum(dim=-1)
    return tf.L2LPreprocessing(
        n_layers=data.crop.n_layers,
        cells_per_layer=data.crop.cells_per_layer,
        threshold_mev=threshold_mev,
        ratio_scale=tf.fit_ratio_scale(energies, data.train.incident),
        context_pool=context_pool,
    )


def run_record(run: L2LRun) -> dict[str, Any]:
    data = run.data
    return {
        "caloflow_version": __version__,
        "family": FAMILY,
        "dataset": run.ds.name,
        "particle": run.ds.particle,
        "preset": run.preset.to_dict(),
        "preprocessing": run.prep.to_dict(),
        "crop": data.crop.to_dict(),
        "seed": run.seed,
        "data": data_record(data, len(data.train), len(data.validation), _energy_range_mev(data.train)),
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "device": str(run.device)},
    }


def _energy_range_mev(split: ShowerTensors) -> tuple[float, float]:
    return float(split.incident.min()), float(split.incident.max())


RECORD_KEYS = ("family", "dataset", "preset", "seed", "preprocessing", "crop")
"""What an existing ``run.json`` must agree on (with the data's checksum) before a run resumes in it."""


def _validation_batches(run: L2LRun, limit: int | None = None) -> Iterable[BatchInputs]:
    """Validation inputs with fixed dequantisation noise (the same every epoch)."""
    split = run.data.validation if limit is None else run.data.validation.head(limit)
    generator = torch.Generator(device=run.device).manual_seed(EVAL_SEED)
    for start in range(0, len(split), EVAL_BATCH):
        index = torch.arange(start, min(start + EVAL_BATCH, len(split)), device=run.device)
        yield run.inputs(split.subset(index), generator)


def flow1_nll(flow1: Flow, inputs: BatchInputs) -> Tensor:
    return -flow1.log_prob(inputs.flow1_x, inputs.incident_condition)


def layers_nll(flows: LayerFlows, inputs: BatchInputs, window: int) -> Tensor:
    """(B,) summed over the layers: -sum_i log p_i(image_i | context_i)."""
    return -sum(
        (flows.flow(i).log_prob(inputs.images[:, i], inputs.context(i, window)) for i in range(len(flows))),
        start=torch.zeros_like(inputs.incident_mev[:, 0]),
    )


def _mean_over_validation(run: L2LRun, loss: Callable[[BatchInputs], Tensor]) -> float:
    total, count = 0.0, 0
    for inputs in _validation_batches(run):
        total += float(loss(inputs).sum())
        count += len(inputs.incident_mev)
    return total / max(count, 1)


def train_flow1(run: L2LRun) -> tuple[Flow, StageResult]:
    flow1 = run.flow1()
    train = run.data.train

    def step(index: Tensor, generator: torch.Generator) -> Tensor:
        return flow1_nll(flow1, run.inputs(train.subset(index), generator)).mean()

    def evaluate() -> dict[str, float]:
        return {"val_nll": _mean_over_validation(run, lambda inputs: flow1_nll(flow1, inputs))}

    return flow1, run.run_stage("flow1", flow1, run.preset.flow1.schedule, step, evaluate, "val_nll")


def train_teachers(run: L2LRun) -> tuple[LayerFlows, StageResult]:
    teachers = run.teachers()
    train, window = run.data.train, run.preset.window

    def step(index: Tensor, generator: torch.Generator) -> Tensor:
        return layers_nll(teachers, run.inputs(train.subset(index), generator), window).mean()

    def evaluate() -> dict[str, float]:
        return {"val_nll": _mean_over_validation(run, lambda inputs: layers_nll(teachers, inputs, window))}

    return teachers, run.run_stage("teacher", teachers, run.preset.teacher.schedule, step, evaluate, "val_nll")


def _layer_noise(inputs: BatchInputs, generator: torch.Generator | None) -> Tensor:
    images = inputs.images
    return torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)


def _mixed_images(inputs: BatchInputs, generated: Tensor, fraction: float) -> Tensor:
    """The first ``fraction`` of the rows take the chain's images, the rest the true ones."""
    rows = round(fraction * len(generated))
    return torch.cat([generated[:rows], inputs.images[rows:]], dim=0)


def distillation_step(
    run: L2LRun, students: LayerFlows, teachers: LayerFlows, inputs: BatchInputs, generator: torch.Generator
) -> Tensor:
    """The summed per-layer guided loss of one batch (see the module docstring)."""
    cfg, window = run.preset.student, run.preset.window
    noise = _layer_noise(inputs, generator)
    with torch.no_grad():
        generated = generate_images(students, inputs, noise, window, forced=False)
    previous = _mixed_images(inputs, generated, run.preset.generated_context_fraction)
    weights = dist.GuidanceWeights()
    losses = [
        dist.distillation_loss(
            students.flow(i),
            teachers.flow(i),
            inputs.images[:, i],
            inputs.context(i, window),
            dist.LatentBatch(noise[:, i], inputs.context(i, window, previous)),
            beta=cfg.beta,
            weights=weights,
        )
        for i in range(run.n_layers)
    ]
    return torch.stack(losses).sum()


def per_layer_kl(run: L2LRun, students: LayerFlows, teachers: LayerFlows, inputs: BatchInputs) -> list[float]:
    """KL(student || teacher) proxy per layer, contexts from the student chain (fixed noise)."""
    generator = torch.Generator(device=run.device).manual_seed(EVAL_SEED + 1)
    noise = _layer_noise(inputs, generator)
    generated = generate_images(students, inputs, noise, run.preset.window, forced=False)
    return [
        float(
            dist.kl_proxy(
                students.flow(i),
                teachers.flow(i),
                dist.LatentBatch(noise[:, i], inputs.context(i, run.preset.window, generated)),
            )
        )
        for i in range(run.n_layers)
    ]


def drift(run: L2LRun, flows: LayerFlows, inputs: BatchInputs) -> dict[str, list[float]]:
    """W1 between data and the chain's last layers, true vs generated context (same noise, same E_i)."""
    generator = torch.Generator(device=run.device).manual_seed(EVAL_SEED + 2)
    noise = _layer_noise(inputs, generator)
    prep, window = run.prep, run.preset.window
    data = layer_observables(inputs.images, inputs.energies_mev, prep.alpha, prep.threshold_mev)
    report: dict[str, list[float]] = {"layers": []}
    for forced, label in ((True, "true_context"), (False, "generated_context")):
        images = generate_images(flows, inputs, noise, window, forced=forced)
        observed = layer_observables(images, inputs.energies_mev, prep.alpha, prep.threshold_mev)
        for name in data:
            report[f"w1_{name}_{label}"] = [
                w1(observed[name][:, i], data[name][:, i]) for i in range(run.n_layers - DRIFT_LAYERS, run.n_layers)
            ]
    report["layers"] = list(range(max(run.n_layers - DRIFT_LAYERS, 0), run.n_layers))
    return report


def train_students(run: L2LRun, teachers: LayerFlows) -> tuple[LayerFlows, StageResult]:
    cfg, train = run.preset.student, run.data.train
    teachers.eval().requires_grad_(False)
    students = make_layer_students(run.preset, teachers, run.seed, run.device)
    held_out = next(iter(_validation_batches(run, limit=cfg.kl_eval_size)))

    def step(index: Tensor, generator: torch.Generator) -> Tensor:
        return distillation_step(run, students, teachers, run.inputs(train.subset(index), generator), generator)

    def evaluate() -> dict[str, float]:
        return {"kl": sum(per_layer_kl(run, students, teachers, held_out))}

    result = run.run_stage("student", students, cfg.schedule, step, evaluate, "kl")
    with torch.no_grad():
        result.extra["kl_per_layer"] = per_layer_kl(run, students, teachers, held_out)
        result.extra["drift"] = {"student": drift(run, students, held_out)}
    write_json_atomic(result.to_dict(), run.directory / "student" / "summary.json")
    return students, result


def train_all(run: L2LRun, stages: tuple[str, ...] = STAGES) -> dict[str, Any]:
    """Train the requested stages in order (earlier ones are loaded from the run directory) and summarise."""
    write_or_check_record(run.directory / "run.json", run_record(run), RECORD_KEYS)
    started = time.perf_counter()
    if "flow1" in stages:
        train_flow1(run)
    teachers: LayerFlows | None = None
    if "teacher" in stages:
        teachers, _ = train_teachers(run)
    if "student" in stages:
        if teachers is None:
            teachers = run.teachers()
            load_trained(run.directory, "teacher", teachers)
        train_students(run, teachers)
    logger.info("trained %s in %.1f s", ", ".join(stages), time.perf_counter() - started)
    return write_summary(run)


def write_summary(run: L2LRun) -> dict[str, Any]:
    header = {"family": FAMILY, "dataset": run.ds.name, "particle": run.particle, "preset": run.preset.name}
    return write_run_summary(
        run.directory, STAGES, {**header, "data_sha256": run.data.sha256, "standin": run.data.is_standin}
    )


def load_trained(directory: Path, name: str, module: torch.nn.Module) -> None:
    """Load stage ``name``'s ``best.pt`` into ``module`` (eval mode, frozen); a missing stage is refused."""
    path = directory / name / "best.pt"
    if not path.exists():
        raise L2LRunError(f"{path} not found: the run is not finished (train {name} first)")
    load_weights(module, path)
    module.eval().requires_grad_(False)
