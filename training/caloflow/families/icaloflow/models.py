"""The five flows of an iCaloFlow run, built from the shared blocks (no family-specific flow code).

Every flow is :func:`caloflow.flows.build_teacher` over a single "layer" of D features: its permutations
(full reversal after even blocks, a seeded random permutation after odd ones, none after the last) are
exactly nflows' ``ReversePermutation`` / ``RandomPermutation`` layout of the reference (note 2.2). The
students are :func:`caloflow.flows.build_student` of their teachers (IAF blocks, the teachers' permutations,
hidden layers and context). Flow-1 is never distilled (as in the reference).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from caloflow.families.icaloflow.context import Conditioning
from caloflow.families.icaloflow.presets import FlowSpec, ICaloFlowPreset, StudentSpec
from caloflow.flows import Flow, IncompleteDegreesWarning, SplineConfig, build_student, build_teacher

__all__ = ["FLOW_NAMES", "ICaloFlowModels", "build_models", "count_parameters", "parameter_counts"]

FLOW_NAMES = ("flow1", "flow2", "flow3", "student2", "student3")
SEED_OFFSETS = {"flow1": 101, "flow2": 202, "flow3": 303, "student2": 404, "student3": 505}
DeviceLike = torch.device | str


@dataclass(frozen=True)
class ICaloFlowModels:
    flow1: Flow
    flow2: Flow
    flow3: Flow
    student2: Flow
    student3: Flow

    def get(self, name: str) -> Flow:
        flow: Flow = getattr(self, name)
        return flow


def _teacher(
    preset: ICaloFlowPreset, spec: FlowSpec, features: int, context: int, seed: int, device: DeviceLike
) -> Flow:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteDegreesWarning)  # reported once by describe_preset
        return build_teacher(
            [features],
            context=context,
            hidden=preset.hidden(spec, features),
            n_blocks=spec.n_blocks,
            n_hidden_blocks=spec.n_hidden_blocks,
            dropout=0.0,
            spline=SplineConfig(num_bins=preset.bins, tail_bound=preset.tail_bound),
            seed=seed,
            device=device,
            allow_incomplete_degrees=not preset.full_degrees,
        )


def _student(
    preset: ICaloFlowPreset, spec: StudentSpec, teacher_spec: FlowSpec, teacher: Flow, seed: int, device: DeviceLike
) -> Flow:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteDegreesWarning)
        return build_student(
            teacher,
            hidden=preset.hidden(spec, teacher.features),
            n_hidden_blocks=teacher_spec.n_hidden_blocks,
            dropout=0.0,
            seed=seed,
            device=device,
            allow_incomplete_degrees=not preset.full_degrees,
        )


def build_models(preset: ICaloFlowPreset, cond: Conditioning, seed: int, device: DeviceLike = "cpu") -> ICaloFlowModels:
    """Fresh (seeded) flows of ``preset``; pass ``device="meta"`` to count paper-size models without memory."""
    s = SEED_OFFSETS
    flow1 = _teacher(preset, preset.flow1, cond.n_layers, 1, seed + s["flow1"], device)
    flow2 = _teacher(preset, preset.flow2, cond.layer_size, 2, seed + s["flow2"], device)
    flow3 = _teacher(preset, preset.flow3, cond.layer_size, cond.flow3_context_size, seed + s["flow3"], device)
    student2 = _student(preset, preset.student2, preset.flow2, flow2, seed + s["student2"], device)
    student3 = _student(preset, preset.student3, preset.flow3, flow3, seed + s["student3"], device)
    return ICaloFlowModels(flow1, flow2, flow3, student2, student3)


def count_parameters(flow: Flow) -> int:
    return sum(p.numel() for p in flow.parameters())


def parameter_counts(preset: ICaloFlowPreset, cond: Conditioning) -> dict[str, int]:
    """Per flow, and the chains: teacher (flow-1, 2, 3), generation (flow-1 + students), training (all five)."""
    models = build_models(preset, cond, 0, "meta")
    counts = {name: count_parameters(models.get(name)) for name in FLOW_NAMES}
    counts["teacher_chain"] = counts["flow1"] + counts["flow2"] + counts["flow3"]
    counts["student_chain"] = counts["flow1"] + counts["student2"] + counts["student3"]
    counts["training"] = counts["teacher_chain"] + counts["student2"] + counts["student3"]
    return counts
