"""Reading a finished training run back: its record and its trained flows (for sampling and export)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from caloflow import preprocessing as pp
from caloflow.errors import CaloflowError
from caloflow.flows import Flow
from caloflow.sampler import CaloFlowSampler
from caloflow.training.models import make_flow1, make_student, make_teacher
from caloflow.training.presets import Flow1Config, Preset, Schedule, StudentConfig, TeacherConfig
from caloflow.training.stage import load_weights


class RunDirectoryError(CaloflowError):
    """A run directory is missing files or was not trained to the end."""


@dataclass(frozen=True)
class TrainedRun:
    directory: Path
    record: dict[str, Any]
    preset: Preset
    prep: pp.Preprocessing
    flow1: Flow
    teacher: Flow
    student: Flow

    @property
    def particle(self) -> str:
        return str(self.record["particle"])

    def sampler(self, model: str = "student") -> CaloFlowSampler:
        """The generator with the student (the serving path) or, slowly, the teacher."""
        return CaloFlowSampler(self.flow1, self.student if model == "student" else self.teacher, self.prep).eval()


def preset_from_dict(data: dict[str, Any]) -> Preset:
    def schedule(d: dict[str, Any]) -> Schedule:
        return Schedule(**d)

    flow1 = Flow1Config(**{**data["flow1"], "schedule": schedule(data["flow1"]["schedule"])})
    teacher = TeacherConfig(**{**data["teacher"], "schedule": schedule(data["teacher"]["schedule"])})
    student = StudentConfig(**{**data["student"], "schedule": schedule(data["student"]["schedule"])})
    return Preset(data["name"], data["particle"], flow1, teacher, student, data["bins"], data["tail_bound"])


def run_family(directory: str | Path) -> str:
    """The model family a run directory's ``run.json`` names; "caloflow" without one or without the field (CaloFlow
    runs predate it)."""
    path = Path(directory) / "run.json"
    return str(json.loads(path.read_text()).get("family", "caloflow")) if path.is_file() else "caloflow"


def load_run(directory: str | Path, device: torch.device | str = "cpu") -> TrainedRun:
    """Rebuild flow-I, teacher and student of a finished run from ``run.json`` and the ``best.pt`` files."""
    root = Path(directory)
    record_path = root / "run.json"
    if not record_path.exists():
        raise RunDirectoryError(f"{root}: no run.json - not a caloflow training run directory")
    record = json.loads(record_path.read_text())
    preset = preset_from_dict(record["preset"])
    prep = pp.Preprocessing.from_dict(record["preprocessing"])
    seed = int(record["seed"])
    flow1 = _load(root, "flow1", make_flow1(preset, prep, seed, device))
    teacher = _load(root, "teacher", make_teacher(preset, prep, seed, device))
    student = _load(root, "student", make_student(preset, teacher, seed, device))
    return TrainedRun(root, record, preset, prep, flow1, teacher, student)


def _load(root: Path, stage: str, flow: Flow) -> Flow:
    path = root / stage / "best.pt"
    if not path.exists():
        raise RunDirectoryError(f"{path} not found: the run has no trained {stage}")
    load_weights(flow, path)
    return flow.eval()
