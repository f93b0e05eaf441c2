"""What an L2LFlows preset costs to train: one optimisation step of each stage, timed, and the projected epoch
and training times (issue 15 item 3: the full-grid presets against the crop).

``python -m caloflow.families.l2lflows.cost --data data/ild_1.h5 --presets small,full --threads 1`` builds each
preset's flows with random weights, takes one batch of the preset's size from the file (the preset's crop or the
whole grid), and times, in CPU seconds of this process (``time.process_time``: robust to other jobs on a shared
machine, the wall time is printed beside it):

* ``flow1``: flow-I's NLL, forward and backward;
* ``teacher layer``: the last layer's MAF NLL (widest context), forward and backward; ``teacher step``: all
  layers (the teacher stage trains all layer flows on one batch per step);
* ``student step``: the whole distillation step (the student chain generated for the contexts, then the 30
  layers' guided losses), forward and backward; ``student layer``: that step / layers.

The projection multiplies each step by the preset's steps per epoch for ``--train-showers`` (default 7 000,
the demo's 70 % of 10 000) and its epochs; validation and model selection are not included.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from caloflow.data.datasets import Dataset, dataset
from caloflow.families.l2lflows.data import load_l2l_data
from caloflow.families.l2lflows.inputs import BatchInputs
from caloflow.families.l2lflows.models import make_layer_students
from caloflow.families.l2lflows.presets import L2LPreset, get_l2l_preset
from caloflow.families.l2lflows.runner import l2l_parameter_counts
from caloflow.families.l2lflows.training import (
    L2LRun,
    distillation_step,
    flow1_nll,
    layers_nll,
    make_preprocessing,
)
from caloflow.training.presets import Schedule

__all__ = ["main", "stage_costs"]


def _timed(step: Callable[[], Tensor]) -> tuple[float, float]:
    """CPU and wall seconds of ``step()`` and its backward pass."""
    cpu, wall = time.process_time(), time.perf_counter()
    step().backward()  # type: ignore[no-untyped-call]
    return time.process_time() - cpu, time.perf_counter() - wall


def _steps(schedule: Schedule, n_train: int) -> int:
    steps = math.ceil(n_train / schedule.batch_size)
    return steps if schedule.max_train_batches is None else min(steps, schedule.max_train_batches)


def stage_costs(preset: L2LPreset, ds: Dataset, data_path: str, n_train: int, seed: int = 0) -> dict[str, float]:
    """CPU seconds of one step per stage and the projected training time (module docstring)."""
    batch = max(
        preset.flow1.schedule.batch_size, preset.teacher.schedule.batch_size, preset.student.schedule.batch_size
    )
    data = load_l2l_data(data_path, ds, preset.crop_cells, max_showers=math.ceil(batch / 0.7) + 1)
    prep = make_preprocessing(data, ds.threshold_mev, preset.context_pool)
    with tempfile.TemporaryDirectory() as directory:
        run = L2LRun(Path(directory), ds, preset, prep, data, seed, torch.device("cpu"), progress=False)
        generator = torch.Generator().manual_seed(seed)

        def inputs(size: int) -> BatchInputs:
            return run.inputs(data.train.head(size), generator)

        flow1, teachers = run.flow1(), run.teachers()
        students = make_layer_students(preset, teachers, seed)
        last = prep.n_layers - 1
        t_in, s_in = inputs(preset.teacher.schedule.batch_size), inputs(preset.student.schedule.batch_size)
        costs = {
            "flow1_step": _timed(lambda: flow1_nll(flow1, inputs(preset.flow1.schedule.batch_size)).mean())[0],
            "teacher_layer": _timed(
                lambda: -teachers.flow(last).log_prob(t_in.images[:, last], t_in.context(last, preset.window)).mean()
            )[0],
            "teacher_step": _timed(lambda: layers_nll(teachers, t_in, preset.window).mean())[0],
            "student_step": _timed(
                lambda: distillation_step(run, students, teachers.requires_grad_(False), s_in, generator)
            )[0],
        }
    costs["student_layer"] = costs["student_step"] / prep.n_layers
    stages = {
        "flow1": (costs["flow1_step"], preset.flow1.schedule),
        "teacher": (costs["teacher_step"], preset.teacher.schedule),
        "student": (costs["student_step"], preset.student.schedule),
    }
    for name, (step, schedule) in stages.items():
        costs[f"{name}_epoch"] = step * _steps(schedule, n_train)
        costs[f"{name}_total"] = costs[f"{name}_epoch"] * schedule.epochs
    costs["total_hours"] = sum(costs[f"{name}_total"] for name in stages) / 3600.0
    return costs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="an ILD-layout HDF5 file (one batch is read)")
    parser.add_argument("--dataset", default="ild-photon")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--presets", default="small,full")
    parser.add_argument("--train-showers", type=int, default=7000, help="showers of one training epoch")
    args = parser.parse_args(argv)
    ds = dataset(args.dataset)
    torch.set_num_threads(args.threads)
    print(f"CPU seconds, {args.threads} thread(s); projections for {args.train_showers} training showers")
    for name in args.presets.split(","):
        preset = get_l2l_preset(name, ds)
        counts = l2l_parameter_counts(preset, ds)
        costs = stage_costs(preset, ds, args.data, args.train_showers)
        print(
            f"preset {name}: parameters flow-I {counts['flow1']:,d}, teachers {counts['teachers']:,d}, "
            f"students {counts['students']:,d}"
        )
        for stage in ("flow1", "teacher", "student"):
            extra = f" (one layer {costs[f'{stage}_layer']:.3f} s)" if f"{stage}_layer" in costs else ""
            print(
                f"  {stage:<8} step {costs[f'{stage}_step']:8.3f} s{extra}; epoch {costs[f'{stage}_epoch']:8.1f} s; "
                f"stage {costs[f'{stage}_total'] / 60:7.1f} min"
            )
        print(f"  projected training (no validation): {costs['total_hours']:.2f} h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
