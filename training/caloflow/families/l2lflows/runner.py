"""Entry points behind ``caloflow train --dataset ild-photon``: data, run directory, dry-run counts, reloading a
trained run as a sampler (student chain or teacher chain) for export, benchmarks and evaluation."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from caloflow.data.datasets import Dataset, dataset
from caloflow.families.l2lflows import transforms as tf
from caloflow.families.l2lflows.context import context_widths
from caloflow.families.l2lflows.crop import LateralCrop
from caloflow.families.l2lflows.data import grid_geometry, load_l2l_data
from caloflow.families.l2lflows.models import (
    LayerFlows,
    count_parameters,
    make_flow1,
    make_layer_students,
    make_layer_teachers,
    truncated_degrees,
)
from caloflow.families.l2lflows.presets import L2LPreset, get_l2l_preset
from caloflow.families.l2lflows.sampler import L2LSampler
from caloflow.families.l2lflows.training import FAMILY, L2LRun, L2LRunError, load_trained, make_preprocessing, train_all

__all__ = [
    "DATASETS",
    "TrainedL2LRun",
    "describe_l2l_preset",
    "handle_train",
    "is_l2l_run",
    "l2l_parameter_counts",
    "load_l2l_run",
    "run_l2l",
]

DATASETS = ("ild-photon",)
"""The datasets this family trains (layered Cartesian grids)."""


def l2l_parameter_counts(preset: L2LPreset, ds: Dataset) -> dict[str, int]:
    """Parameter counts of flow-I, the teachers and the students, built on the meta device (nothing allocated).

    Layer flows differ only in their context width, so one teacher and one student are built per distinct width
    (6 for a 5-layer window) and counted once per layer that has it.
    """
    geometry = grid_geometry(ds)
    cells = min(preset.crop_cells, geometry.n_x) * min(preset.crop_cells, geometry.n_z)
    widths = context_widths(geometry.n_layers, cells, preset.window, preset.context_pool)
    per_width: dict[int, tuple[int, int]] = {}
    for width in sorted(set(widths)):
        layer = widths.index(width)
        teachers = make_layer_teachers(preset, layer + 1, cells, 0, "meta")
        students = make_layer_students(preset, LayerFlows([teachers[layer]]), 0, "meta")
        per_width[width] = (count_parameters(teachers[layer]), count_parameters(students))
    counts = {
        "flow1": count_parameters(make_flow1(preset, geometry.n_layers, 0, "meta")),
        "teachers": sum(per_width[w][0] for w in widths),
        "students": sum(per_width[w][1] for w in widths),
        "largest_layer_teacher": max(t for t, _ in per_width.values()),
    }
    counts["generation"] = counts["flow1"] + counts["students"]
    counts["training"] = counts["flow1"] + counts["teachers"] + counts["students"]
    return counts


def describe_l2l_preset(preset: L2LPreset, ds: Dataset) -> str:
    geometry = grid_geometry(ds)
    counts = l2l_parameter_counts(preset, ds)
    cells = min(preset.crop_cells, geometry.n_x) * min(preset.crop_cells, geometry.n_z)
    widths = context_widths(geometry.n_layers, cells, preset.window, preset.context_pool)
    f, t, s = preset.flow1, preset.teacher, preset.student
    full = cells == geometry.n_x * geometry.n_z
    region = "the whole" if full else "a"
    pooled = f", context pooled {preset.context_pool} x {preset.context_pool}" if preset.context_pool > 1 else ""
    return "\n".join(
        [
            f"L2LFlows preset {preset.name}, {ds.name}: {geometry.n_layers} layers of {region} {preset.crop_cells} x "
            f"{preset.crop_cells} {'grid' if full else 'crop'} ({cells} cells), context window {preset.window}"
            f"{pooled} (widths {widths[0]} .. {widths[-1]}), spline bins {preset.bins}, tail bound {preset.tail_bound}",
            *_degrees_line(preset, cells),
            f"  flow-I    {counts['flow1']:>12,d} parameters  ({f.n_blocks} MAF blocks, hidden {f.hidden} x "
            f"{f.n_hidden_blocks + 1}; batch {f.schedule.batch_size}, {f.schedule.epochs} epochs)",
            f"  teachers  {counts['teachers']:>12,d} parameters  ({geometry.n_layers} x {t.n_blocks} MAF blocks, "
            f"hidden {t.hidden}; largest layer flow {counts['largest_layer_teacher']:,d}; batch "
            f"{t.schedule.batch_size}, {t.schedule.epochs} epochs)",
            f"  students  {counts['students']:>12,d} parameters  ({geometry.n_layers} x {t.n_blocks} IAF blocks, "
            f"hidden {s.hidden}; batch {s.schedule.batch_size}, {s.schedule.epochs} epochs, beta {s.beta})",
            f"  generation (flow-I + students) {counts['generation']:,d}; training (all) {counts['training']:,d}",
        ]
    )


def _degrees_line(preset: L2LPreset, cells: int) -> list[str]:
    if not truncated_degrees(preset, cells):
        return []
    hidden = min(preset.teacher.hidden, preset.student.hidden)
    return [
        f"  layer MADEs narrower than exact: degrees 1 .. {hidden} of {cells - 1} (cells after the first {hidden} "
        f"of a block's order see only those {hidden} and the context)"
    ]


def handle_train(args: argparse.Namespace, ds: Dataset) -> int:
    """The ``caloflow train`` handler for this family's datasets."""
    from caloflow.cli.train import require_data_and_out, run_options
    from caloflow.training.presets import with_epochs
    from caloflow.training.runner import resolve_device

    epochs = {"flow1": args.epochs_flow1, "teacher": args.epochs_teacher, "student": args.epochs_student}
    preset = with_epochs(get_l2l_preset(args.preset, ds), **epochs)
    if args.dry_run:
        print(describe_l2l_preset(preset, ds))
        return 0
    require_data_and_out(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    summary = run_l2l(ds=ds, preset=preset, device=resolve_device(args.device), **run_options(args))
    figures = {name: {k: s[k] for k in ("best_metric", "wall_seconds")} for name, s in summary["stages"].items()}
    print(json.dumps({"family": FAMILY, "dataset": ds.name, "preset": preset.name, **figures}, indent=2))
    return 0


def run_l2l(
    *,
    ds: Dataset,
    data_path: str,
    preset: L2LPreset,
    out: str,
    stages: tuple[str, ...],
    seed: int = 0,
    device: torch.device | None = None,
    max_showers: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    torch_device = device if device is not None else torch.device("cpu")
    existing = _existing_record(Path(out))
    crop = _crop_from_record(existing) if existing else None
    data = load_l2l_data(data_path, ds, preset.crop_cells, crop=crop, max_showers=max_showers, device=torch_device)
    prep = (
        tf.L2LPreprocessing.from_dict(existing["preprocessing"])
        if existing
        else make_preprocessing(data, ds.threshold_mev, preset.context_pool)
    )
    run = L2LRun(Path(out), ds, preset, prep, data, seed, torch_device, progress=progress, resume=resume)
    return train_all(run, stages)


def _existing_record(directory: Path) -> dict[str, Any] | None:
    path = directory / "run.json"
    return json.loads(path.read_text()) if path.exists() else None


def _crop_from_record(record: dict[str, Any]) -> LateralCrop:
    crop = record["crop"]
    layers, full_x, full_z = crop["full_shape"]
    x0, x1 = crop["x_cells"]
    z0, _ = crop["z_cells"]
    return LateralCrop(layers, full_x, full_z, x0, z0, x1 - x0)


def is_l2l_run(directory: str | Path) -> bool:
    record = _existing_record(Path(directory))
    return bool(record) and record.get("family") == FAMILY  # type: ignore[union-attr]


@dataclass(frozen=True)
class TrainedL2LRun:
    """A finished run reloaded: flow-I, the teachers and students, and the constants to rebuild samplers."""

    directory: Path
    record: dict[str, Any]
    ds: Dataset
    preset: L2LPreset
    prep: tf.L2LPreprocessing
    crop: LateralCrop
    flow1: torch.nn.Module
    teachers: LayerFlows
    students: LayerFlows

    def sampler(self, chain: str = "student") -> L2LSampler:
        """The generator with the student chain (served) or the teacher chain (the published L2LFlows)."""
        layers = self.students if chain == "student" else self.teachers
        from caloflow.flows import Flow

        assert isinstance(self.flow1, Flow)
        return L2LSampler(self.flow1, layers, self.prep, self.preset.window).eval()


def load_l2l_run(directory: str | Path) -> TrainedL2LRun:
    """Rebuild a trained run from ``run.json`` and its stages' ``best.pt`` (weights only)."""
    directory = Path(directory)
    record = _existing_record(directory)
    if not record or record.get("family") != FAMILY:
        raise L2LRunError(f"{directory}/run.json is not an L2LFlows run")
    ds = dataset(record["dataset"])
    preset = L2LPreset.from_dict(record["preset"])
    prep = tf.L2LPreprocessing.from_dict(record["preprocessing"])
    seed = int(record["seed"])
    flow1 = make_flow1(preset, prep.n_layers, seed)
    teachers = make_layer_teachers(preset, prep.n_layers, prep.cells_per_layer, seed)
    students = make_layer_students(preset, teachers, seed)
    for name, module in (("flow1", flow1), ("teacher", teachers), ("student", students)):
        load_trained(directory, name, module)
    return TrainedL2LRun(directory, record, ds, preset, prep, _crop_from_record(record), flow1, teachers, students)
