"""Build the three flows of a run from its recorded configuration (training, resume and export share this)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from caloflow.flows import Flow, SplineConfig, build_flow1, build_student, build_teacher
from caloflow.preprocessing import Preprocessing
from caloflow.training.presets import Preset

FLOW1_SEED_OFFSET, TEACHER_SEED_OFFSET, STUDENT_SEED_OFFSET = 101, 202, 303


@dataclass(frozen=True)
class RunModels:
    flow1: Flow
    teacher: Flow
    student: Flow


def spline_config(preset: Preset) -> SplineConfig:
    return SplineConfig(num_bins=preset.bins, tail_bound=preset.tail_bound)


def make_flow1(preset: Preset, prep: Preprocessing, seed: int, device: torch.device | str = "cpu") -> Flow:
    return make_flow1_for(preset, prep.n_layers, seed, device)


def make_flow1_for(preset: Preset, n_layers: int, seed: int, device: torch.device | str = "cpu") -> Flow:
    """Flow-I over ``n_layers`` layer energies given E_inc (any family's preset)."""
    cfg = preset.flow1
    return build_flow1(
        n_layers,
        hidden=cfg.hidden,
        n_hidden_blocks=cfg.n_hidden_blocks,
        n_blocks=cfg.n_blocks,
        spline=spline_config(preset),
        seed=seed + FLOW1_SEED_OFFSET,
        device=device,
    )


def make_teacher(preset: Preset, prep: Preprocessing, seed: int, device: torch.device | str = "cpu") -> Flow:
    return make_teacher_for(preset, prep.layer_sizes, prep.n_layers + 1, seed, device)


def make_teacher_for(
    preset: Preset,
    sizes: tuple[int, ...],
    context: int,
    seed: int,
    device: torch.device | str = "cpu",
    *,
    allow_incomplete_degrees: bool = False,
) -> Flow:
    """A MAF teacher over ``sum(sizes)`` features with ``context`` conditions (any family's preset)."""
    cfg = preset.teacher
    return build_teacher(
        sizes,
        context=context,
        hidden=cfg.hidden,
        n_blocks=cfg.n_blocks,
        n_hidden_blocks=cfg.n_hidden_blocks,
        dropout=cfg.dropout,
        spline=spline_config(preset),
        seed=seed + TEACHER_SEED_OFFSET,
        device=device,
        allow_incomplete_degrees=allow_incomplete_degrees,
    )


def make_student(
    preset: Preset,
    teacher: Flow,
    seed: int,
    device: torch.device | str = "cpu",
    *,
    allow_incomplete_degrees: bool = False,
) -> Flow:
    cfg = preset.student
    return build_student(
        teacher,
        hidden=cfg.hidden,
        n_hidden_blocks=preset.teacher.n_hidden_blocks,
        dropout=cfg.dropout,
        seed=seed + STUDENT_SEED_OFFSET,
        device=device,
        allow_incomplete_degrees=allow_incomplete_degrees,
    )


def count_parameters(flow: nn.Module) -> int:
    return sum(p.numel() for p in flow.parameters())
