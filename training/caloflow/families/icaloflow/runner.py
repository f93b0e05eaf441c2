"""``caloflow train ... --dataset ds2-electron|ds3-electron``: dry runs with parameter counts, and training."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from caloflow.data.datasets import Dataset
from caloflow.families.icaloflow.context import Conditioning
from caloflow.families.icaloflow.data import load_layer_data
from caloflow.families.icaloflow.models import parameter_counts
from caloflow.families.icaloflow.presets import ICaloFlowPreset, get_preset, with_epochs
from caloflow.families.icaloflow.training import TrainContext, make_conditioning, train_run

logger = logging.getLogger(__name__)

__all__ = ["DATASETS", "STAGE_GROUPS", "describe_preset", "handle_train"]

DATASETS = ("ds2-electron", "ds3-electron")
"""The datasets this family trains."""
STAGE_GROUPS = {
    "flow1": ("flow1",),
    "teacher": ("flow2", "flow3"),
    "student": ("student2", "student3"),
}
"""``caloflow train flow1|teacher|student``; ``all`` trains the five stages in order."""
PUBLISHED = {
    "ds2-electron": {"teacher_chain": 19_470_168, "student_chain": 24_519_512},
    "ds3-electron": {"teacher_chain": 95_088_152, "student_chain": 95_088_152},
}
"""CaloChallenge "parameters" entries of the published iCaloFlow (method note 2.4)."""


def _conditioning(ds: Dataset) -> Conditioning:
    return Conditioning(n_layers=ds.n_layers, layer_size=ds.n_voxels // ds.n_layers)


def describe_preset(preset: ICaloFlowPreset, ds: Dataset) -> str:
    cond = _conditioning(ds)
    counts = parameter_counts(preset, cond)
    lines = [
        f"iCaloFlow preset {preset.name}, {ds.name} ({ds.n_layers} layers x {cond.layer_size} voxels), spline bins "
        f"{preset.bins}, tail bound {preset.tail_bound}, degrees {'full' if preset.full_degrees else 'as published'}"
    ]
    for name, features, context in (
        ("flow1", ds.n_layers, 1),
        ("flow2", cond.layer_size, 2),
        ("flow3", cond.layer_size, cond.flow3_context_size),
        ("student2", cond.layer_size, 2),
        ("student3", cond.layer_size, cond.flow3_context_size),
    ):
        spec = getattr(preset, name)
        teacher = getattr(preset, name.replace("student", "flow"))
        hidden = preset.hidden(spec, features)
        kind = "IAF" if name.startswith("student") else "MAF"
        note = f"; MADE degrees truncated: H {hidden} < D - 1 = {features - 1}" if hidden < features - 1 else ""
        lines.append(
            f"  {name:<9}{counts[name]:>13,d} parameters  ({teacher.n_blocks} {kind} blocks, D {features}, context "
            f"{context}, hidden {hidden} x {teacher.n_hidden_blocks + 1}; batch {spec.schedule.batch_size}, "
            f"{spec.schedule.epochs} epochs{note})"
        )
    published = PUBLISHED[ds.name]
    for chain, label in (("teacher_chain", "teacher chain (flow-1, 2, 3)"), ("student_chain", "student chain")):
        lines.append(f"  {label}: {counts[chain]:,d} (published {published[chain]:,d})")
    lines.append(f"  training (all five): {counts['training']:,d}")
    return "\n".join(lines)


def handle_train(args: argparse.Namespace, ds: Dataset) -> int:
    """The ``caloflow train`` handler for this family's datasets."""
    from caloflow.cli import CLIError
    from caloflow.training.runner import resolve_device

    preset = with_epochs(
        get_preset(args.preset, ds, full_degrees=args.full_degrees, renormalise=args.renormalise),
        flow1=args.epochs_flow1,
        teacher=args.epochs_teacher,
        student=args.epochs_student,
    )
    if args.dry_run:
        print(describe_preset(preset, ds))
        return 0
    if not args.data or not args.out:
        raise CLIError("--data and --out are required (unless --dry-run)")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_layer_data(args.data, ds, max_showers=args.max_showers, device=device)
    out = Path(args.out)
    cond = _existing_conditioning(out) or make_conditioning(ds, preset, data)
    ctx = TrainContext(out, ds, preset, cond, data, args.seed, device, not args.no_progress, args.resume)
    summary = train_run(ctx, _stages(args.stages))
    print(json.dumps(headline(summary), indent=2))
    return 0


def _stages(requested: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(stage for group in requested for stage in STAGE_GROUPS[group])


def _existing_conditioning(out: Path) -> Conditioning | None:
    record = out / "run.json"
    return Conditioning(**json.loads(record.read_text())["conditioning"]) if record.exists() else None


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"dataset": summary["dataset"], "preset": summary["preset"]}
    for name, stage in summary["stages"].items():
        out[name] = {k: stage[k] for k in ("best_epoch", "select_key", "best_metric", "wall_seconds", "parameters")}
    return out
