"""Entry points behind ``caloflow train``: device selection, data loading, dry runs, headline figures."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from caloflow import preprocessing as pp
from caloflow.data.datasets import dataset, geometry_for
from caloflow.errors import CaloflowError
from caloflow.training.data import load_training_data
from caloflow.training.models import count_parameters, make_flow1, make_student, make_teacher
from caloflow.training.pipeline import RunContext, make_preprocessing, train_all
from caloflow.training.presets import Preset, get_preset, with_epochs

logger = logging.getLogger(__name__)


def resolve_preset(
    name: str, particle: str, epochs_flow1: int | None, epochs_teacher: int | None, epochs_student: int | None
) -> Preset:
    preset = get_preset(name, particle, geometry_for(particle).n_voxels)
    return with_epochs(preset, flow1=epochs_flow1, teacher=epochs_teacher, student=epochs_student)


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CaloflowError(f"--device {spec}: CUDA is not available on this machine")
    return device


def parameter_counts(preset: Preset) -> dict[str, int]:
    """Parameter counts of the preset's three flows (built on the meta device: nothing is allocated)."""
    geometry = geometry_for(preset.particle)
    prep = pp.Preprocessing(layer_sizes=geometry.layer_sizes, u0_scale=1.0)
    flow1 = make_flow1(preset, prep, 0, "meta")
    teacher = make_teacher(preset, prep, 0, "meta")
    student = make_student(preset, teacher, 0, "meta")
    counts = {
        name: count_parameters(flow) for name, flow in (("flow1", flow1), ("teacher", teacher), ("student", student))
    }
    counts["generation"] = counts["flow1"] + counts["student"]
    counts["training"] = counts["flow1"] + counts["teacher"] + counts["student"]
    return counts


def describe_preset(preset: Preset) -> str:
    counts = parameter_counts(preset)
    t, s, f = preset.teacher, preset.student, preset.flow1
    lines = [
        f"preset {preset.name}, {preset.particle} ({geometry_for(preset.particle).n_voxels} voxels), "
        f"spline bins {preset.bins}, tail bound {preset.tail_bound}",
        f"  flow-I   {counts['flow1']:>12,d} parameters  ({f.n_blocks} blocks, hidden {f.hidden} x "
        f"{f.n_hidden_blocks + 1}; batch {f.schedule.batch_size}, {f.schedule.epochs} epochs, {f.schedule.kind})",
        f"  teacher  {counts['teacher']:>12,d} parameters  ({t.n_blocks} MAF blocks, hidden {t.hidden}, dropout "
        f"{t.dropout}; batch {t.schedule.batch_size}, {t.schedule.epochs} epochs, {t.schedule.kind})",
        f"  student  {counts['student']:>12,d} parameters  ({t.n_blocks} IAF blocks, hidden {s.hidden}, dropout "
        f"{s.dropout}; batch {s.schedule.batch_size}, {s.schedule.epochs} epochs, beta {s.beta})",
        f"  generation (flow-I + student) {counts['generation']:,d}; training (all three) {counts['training']:,d}",
    ]
    return "\n".join(lines)


def run_training(
    *,
    particle: str,
    data_path: str,
    preset: Preset,
    out: str,
    stages: tuple[str, ...],
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
    max_showers: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    if threads is not None:
        torch.set_num_threads(threads)
    torch_device = resolve_device(device)
    geometry = dataset(particle).cylindrical_geometry
    data = load_training_data(data_path, geometry, max_showers=max_showers, device=torch_device)
    if not data.is_standin:
        logger.info("training on %s (not a stand-in file)", data_path)
    ctx = RunContext(
        directory=Path(out),
        particle=particle,
        preset=preset,
        prep=_run_preprocessing(Path(out), particle, data),
        data=data,
        seed=seed,
        device=torch_device,
        progress=progress,
        resume=resume,
    )
    return train_all(ctx, stages)


def _run_preprocessing(out: Path, particle: str, data: Any) -> pp.Preprocessing:
    """Reuse the run's constants when the run exists (later stages must match earlier ones)."""
    record = out / "run.json"
    if record.exists():
        import json

        return pp.Preprocessing.from_dict(json.loads(record.read_text())["preprocessing"])
    return make_preprocessing(particle, data)


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The figures worth printing after a run."""
    stages = summary["stages"]
    out: dict[str, Any] = {"particle": summary["particle"], "preset": summary["preset"]}
    for name, stage in stages.items():
        out[name] = {
            k: stage[k] for k in ("best_epoch", "select_key", "best_metric", "wall_seconds", "parameters") if k in stage
        }
        if "quality_gate" in stage:
            out[name]["quality_gate"] = stage["quality_gate"]
    return out
