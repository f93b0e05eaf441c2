"""Build L2LFlows' flows from a preset: flow-I over the layer energies, one MAF teacher per layer, and the
IAF students distilled from them - all from the project's builders (:mod:`caloflow.training.models`), only
the sizes, the per-layer context widths and the per-layer seeds are L2LFlows'.

A preset may ask for MADEs narrower than the exact ``D - 1`` (the full-grid presets: 900 cells per layer): the
MADE then covers degrees ``1 .. hidden`` only (:func:`caloflow.flows.made.check_degree_coverage`), which the
preset's docstring explains; :func:`truncated_degrees` says when, and ``describe_l2l_preset`` prints it once.
"""

from __future__ import annotations

import warnings
from typing import cast

import torch
from torch import nn

from caloflow.families.l2lflows.context import context_widths
from caloflow.families.l2lflows.presets import L2LPreset
from caloflow.flows import Flow
from caloflow.flows.made import IncompleteDegreesWarning
from caloflow.training.models import count_parameters, make_flow1_for, make_student, make_teacher_for

__all__ = [
    "LayerFlows",
    "count_parameters",
    "make_flow1",
    "make_layer_students",
    "make_layer_teachers",
    "truncated_degrees",
]

LAYER_SEED_STRIDE = 1000
"""Layer i's teacher and student are seeded ``seed + LAYER_SEED_STRIDE * i`` (plus the builders' offsets)."""

DeviceLike = torch.device | str


class LayerFlows(nn.ModuleList):
    """One conditional flow per calorimeter layer; flow i's context is ``context_width(i, ...)`` wide."""

    def flow(self, layer: int) -> Flow:
        return cast(Flow, self[layer])


def truncated_degrees(preset: L2LPreset, cells_per_layer: int) -> bool:
    """Whether the layer flows' MADEs are narrower than ``cells_per_layer - 1`` (degrees 1 .. hidden only)."""
    return min(preset.teacher.hidden, preset.student.hidden) < cells_per_layer - 1


def make_flow1(preset: L2LPreset, n_layers: int, seed: int, device: DeviceLike = "cpu") -> Flow:
    return make_flow1_for(preset, n_layers, seed, device)


def make_layer_teachers(
    preset: L2LPreset, n_layers: int, cells_per_layer: int, seed: int, device: DeviceLike = "cpu"
) -> LayerFlows:
    widths = context_widths(n_layers, cells_per_layer, preset.window, preset.context_pool)
    truncated = truncated_degrees(preset, cells_per_layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteDegreesWarning)  # the preset asks for it; dry-run says so
        return LayerFlows(
            make_teacher_for(
                preset,
                (cells_per_layer,),
                width,
                seed + LAYER_SEED_STRIDE * layer,
                device,
                allow_incomplete_degrees=truncated,
            )
            for layer, width in enumerate(widths)
        )


def make_layer_students(preset: L2LPreset, teachers: LayerFlows, seed: int, device: DeviceLike = "cpu") -> LayerFlows:
    truncated = truncated_degrees(preset, teachers.flow(0).features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteDegreesWarning)
        return LayerFlows(
            make_student(
                preset,
                teachers.flow(layer),
                seed + LAYER_SEED_STRIDE * layer,
                device,
                allow_incomplete_degrees=truncated,
            )
            for layer in range(len(teachers))
        )
