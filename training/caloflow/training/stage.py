"""One training stage (flow-I, teacher or student): epochs, validation, model selection, checkpoints, resume.

A stage directory holds:
  ``best.pt``        the selected model's weights only (what export reads; loaded with ``weights_only``),
  ``last.pt``        model weights of the last finished epoch,
  ``train_state.pt`` optimiser, scheduler and RNG state for ``--resume`` (kept apart from the weights),
  ``summary.json``   losses per epoch, best epoch and metric, wall time.
Files are written to a temporary name and renamed, so an interrupted run never leaves a torn checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from caloflow.errors import CaloflowError
from caloflow.training.presets import Schedule
from caloflow.training.schedules import build_optimizer, build_scheduler

logger = logging.getLogger(__name__)

StepFn = Callable[[Tensor, torch.Generator], Tensor]
"""(batch indices, the stage's generator for noise) -> scalar loss (with a graph)."""
EvalFn = Callable[[], dict[str, float]]
"""Evaluate the model; returns metrics, among them the selection key."""


@dataclass
class StageResult:
    name: str
    best_epoch: int
    best_metric: float
    select_key: str
    history: list[dict[str, float]] = field(default_factory=list)
    wall_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "best_epoch": self.best_epoch,
            "select_key": self.select_key,
            "best_metric": self.best_metric,
            "wall_seconds": round(self.wall_seconds, 3),
            "epochs": self.history,
            **self.extra,
        }


def save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomic(data: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)


@dataclass
class Stage:
    """Runs ``schedule.epochs`` epochs of ``step`` over batches from ``batches``, selecting by ``evaluate``."""

    name: str
    model: torch.nn.Module
    schedule: Schedule
    directory: Path
    step: StepFn
    evaluate: EvalFn
    batches: Callable[[torch.Generator], Iterable[Tensor]]
    steps_per_epoch: int
    select_key: str
    seed: int
    progress: bool = True
    resume: bool = False
    parameters: list[torch.nn.Parameter] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    extra: dict[str, Any] = field(default_factory=dict)
    """Fixed figures recorded in the summary (e.g. the parameter count)."""

    def run(self) -> StageResult:
        self.directory.mkdir(parents=True, exist_ok=True)
        params = self.parameters if self.parameters is not None else list(self.model.parameters())
        optimizer = build_optimizer(params, self.schedule)
        scheduler = build_scheduler(optimizer, self.schedule, self.steps_per_epoch)
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        result = StageResult(
            self.name, best_epoch=-1, best_metric=math.inf, select_key=self.select_key, extra=dict(self.extra)
        )
        start_epoch = self._maybe_resume(optimizer, scheduler, generator, result)
        started = time.perf_counter() - result.wall_seconds
        for epoch in range(start_epoch, self.schedule.epochs):
            train_loss = self._train_epoch(epoch, optimizer, scheduler, generator)
            self.model.eval()
            with torch.no_grad():
                metrics = self.evaluate()
            record = {"epoch": epoch, "train_loss": train_loss, "lr": float(scheduler.get_last_lr()[0]), **metrics}
            result.history.append(record)
            self._select(epoch, metrics, result)
            result.wall_seconds = time.perf_counter() - started
            self._checkpoint(epoch, optimizer, scheduler, generator, result)
            logger.info("%s epoch %d: %s", self.name, epoch, _format(record))
        write_json_atomic(result.to_dict(), self.directory / "summary.json")
        if result.best_epoch >= 0:
            load_weights(self.model, self.directory / "best.pt")
        self.model.eval()
        return result

    def _train_epoch(
        self, epoch: int, optimizer: torch.optim.Optimizer, scheduler: Any, generator: torch.Generator
    ) -> float:
        self.model.train()
        total, count = 0.0, 0
        bar = tqdm(
            self.batches(generator),
            total=self.steps_per_epoch,
            desc=f"{self.name} {epoch + 1}/{self.schedule.epochs}",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        )
        for index in bar:
            loss = self.step(index, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            value = float(loss.detach())
            total, count = total + value, count + 1
            bar.set_postfix(loss=f"{value:.4g}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        return total / max(count, 1)

    def _select(self, epoch: int, metrics: dict[str, float], result: StageResult) -> None:
        metric = metrics[self.select_key]
        if math.isfinite(metric) and metric < result.best_metric:
            result.best_epoch, result.best_metric = epoch, metric
            save_atomic(self.model.state_dict(), self.directory / "best.pt")

    def _checkpoint(
        self,
        epoch: int,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        generator: torch.Generator,
        result: StageResult,
    ) -> None:
        save_atomic(self.model.state_dict(), self.directory / "last.pt")
        state = {
            "epoch": epoch,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "result": json.dumps(result.to_dict()),
        }
        save_atomic(state, self.directory / "train_state.pt")
        write_json_atomic(result.to_dict(), self.directory / "summary.json")

    def _maybe_resume(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        generator: torch.Generator,
        result: StageResult,
    ) -> int:
        state_path = self.directory / "train_state.pt"
        if not (self.resume and state_path.exists()):
            return 0
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        load_weights(self.model, self.directory / "last.pt")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        saved = json.loads(state["result"])
        result.history = saved["epochs"]
        result.best_epoch, result.best_metric = saved["best_epoch"], saved["best_metric"]
        result.wall_seconds = saved["wall_seconds"]
        logger.info("%s: resuming after epoch %d", self.name, state["epoch"])
        return int(state["epoch"]) + 1


@dataclass(frozen=True)
class RunSettings:
    """Where and how a run's stages train: stage ``name`` writes ``directory / name`` and is seeded with
    ``seed + seed_offsets[name]``."""

    directory: Path
    seed: int
    seed_offsets: dict[str, int]
    device: torch.device
    progress: bool = True
    resume: bool = False


def run_stage(
    settings: RunSettings,
    name: str,
    model: torch.nn.Module,
    schedule: Schedule,
    step: StepFn,
    evaluate: EvalFn,
    *,
    n_samples: int,
    select_key: str,
) -> StageResult:
    """One :class:`Stage` over ``n_samples`` training samples (shuffled batches of ``schedule.batch_size``, at
    most ``schedule.max_train_batches`` per epoch), its parameter count recorded: what every family runs."""
    from caloflow.training.data import batches_per_epoch, iterate_batches

    def batches(generator: torch.Generator) -> Iterable[Tensor]:
        return iterate_batches(n_samples, schedule.batch_size, generator, max_batches=schedule.max_train_batches)

    stage = Stage(
        name=name,
        model=model,
        schedule=schedule,
        directory=settings.directory / name,
        step=step,
        evaluate=evaluate,
        batches=batches,
        steps_per_epoch=batches_per_epoch(n_samples, schedule.batch_size, schedule.max_train_batches),
        select_key=select_key,
        seed=settings.seed + settings.seed_offsets[name],
        progress=settings.progress,
        resume=settings.resume,
        device=settings.device,
        extra={"parameters": sum(p.numel() for p in model.parameters())},
    )
    return stage.run()


class RunRecordError(CaloflowError):
    """A run directory's ``run.json`` does not match the requested training."""


def data_record(data: Any, n_train: int, n_validation: int, energy_range_mev: tuple[float, float]) -> dict[str, Any]:
    """The ``data`` section of a run record: file, checksum, split sizes, incident-energy range, stand-in or not
    (``data`` has ``path``, ``sha256``, ``n_in_file``, ``is_standin`` and ``attrs``, as every family's data)."""
    return {
        "path": data.path,
        "sha256": data.sha256,
        "n_in_file": data.n_in_file,
        "n_train": n_train,
        "n_validation": n_validation,
        "energy_range_mev": [round(energy_range_mev[0], 3), round(energy_range_mev[1], 3)],
        "standin": data.is_standin,
        "attrs": {k: str(v) for k, v in data.attrs.items()},
    }


def write_or_check_record(path: Path, record: dict[str, Any], keys: Iterable[str]) -> None:
    """Create the run record ``path``, or check that the existing one has the same ``keys`` and data checksum."""
    if path.exists():
        existing = json.loads(path.read_text())
        for key in keys:
            if existing.get(key) != json.loads(json.dumps(record[key])):
                raise RunRecordError(f"{path}: existing run has a different {key}; use a new --out directory")
        if existing["data"]["sha256"] != record["data"]["sha256"]:
            raise RunRecordError(f"{path}: existing run was trained on other data (sha256 differs)")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, path)


def stage_summaries(directory: Path, names: Iterable[str]) -> dict[str, Any]:
    """The ``summary.json`` of each finished stage among ``names`` (also those trained by earlier commands)."""
    return {
        name: json.loads(path.read_text()) for name in names if (path := directory / name / "summary.json").exists()
    }


def write_run_summary(directory: Path, names: Iterable[str], header: dict[str, Any]) -> dict[str, Any]:
    """``directory/summary.json``: ``header``, the stages' total wall time and every finished stage's summary."""
    stages = stage_summaries(directory, names)
    wall = round(sum(s.get("wall_seconds", 0.0) for s in stages.values()), 2)
    summary = {**header, "wall_seconds": wall, "stages": stages}
    write_json_atomic(summary, directory / "summary.json")
    return summary


def _format(record: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
