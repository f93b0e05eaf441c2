"""From a batch of noisy showers to each flow's inputs and conditions (method doc 2.2-2.4).

The flows only see tensors; these helpers turn the on-device training tensors (units of 100 GeV) into
``(x, c)`` pairs for flow-I and flow-II, with dequantisation noise drawn from the stage's generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from caloflow import preprocessing as pp
from caloflow.flows import Flow
from caloflow.training.data import ShowerTensors


@dataclass(frozen=True)
class LayerMaps:
    """Static index tensors for layer sums and per-voxel layer lookups, on the training device."""

    membership: Tensor
    voxel_layer: Tensor

    @classmethod
    def build(cls, layer_sizes: tuple[int, ...], device: torch.device) -> LayerMaps:
        return cls(pp.layer_membership(layer_sizes).to(device), pp.voxel_layer_index(layer_sizes).to(device))


def flow1_inputs(
    batch: ShowerTensors, prep: pp.Preprocessing, maps: LayerMaps, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """(x, c) for flow-I: logit of the unit-space layer energies, and log10(3 E_inc)."""
    noisy = pp.add_noise(batch.showers, prep.noise_flow1, generator)
    energies = noisy @ maps.membership
    u = pp.energies_to_unit(energies, batch.incident, prep.u0_scale)
    return pp.logit(u, prep.alpha), pp.flow1_condition(batch.incident)


def flow2_inputs(
    batch: ShowerTensors, prep: pp.Preprocessing, maps: LayerMaps, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """(x, c) for flow-II: logit of per-layer fractions of the noisy shower, and the labels."""
    noisy = pp.add_noise(batch.showers, prep.noise_flow2, generator)
    energies = noisy @ maps.membership
    x = pp.flow2_inputs(noisy, energies, maps.voxel_layer, prep.alpha)
    return x, pp.flow2_labels(batch.incident, energies, prep.label_epsilon)


def sample_layer_energies(
    flow1: Flow, incident: Tensor, prep: pp.Preprocessing, generator: torch.Generator | None
) -> Tensor:
    """Flow-I sampling: (B, 1) incident energies -> (B, L) layer energies, all on the device."""
    noise = torch.randn(
        incident.shape[0], prep.n_layers, generator=generator, device=incident.device, dtype=incident.dtype
    )
    x = flow1.sample(noise, pp.flow1_condition(incident))
    return pp.unit_to_energies(pp.inverse_logit(x, prep.alpha), incident, prep.u0_scale)


def mean_nll(flow: Flow, x: Tensor, c: Tensor) -> Tensor:
    return -flow.log_prob(x, c).mean()
