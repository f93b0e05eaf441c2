"""The whole CaloFlow generator as one module: (incident energies, noise) -> voxel energies.

flow-I samples the layer energies, the layer-energy recursion and labels run on the device, the student
IAF samples the voxel pattern in one pass per block, and the post-processing (clamp, per-layer
renormalisation, cap, threshold) gives MeV. Noise is an input, so generation is a pure function of
``(energies, noise)``: whoever calls it controls the randomness. Static shapes except the batch dimension.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from caloflow import preprocessing as pp
from caloflow.flows import Flow


class CaloFlowSampler(nn.Module):
    """``forward(incident_energy_mev (B, 1), noise (B, L + V)) -> showers_mev (B, V)``.

    The first L noise columns drive flow-I (L layers), the remaining V columns flow-II (V voxels); both
    are standard normal.
    """

    def __init__(self, flow1: Flow, flow2: Flow, prep: pp.Preprocessing) -> None:
        super().__init__()
        self.flow1 = flow1
        self.flow2 = flow2
        self.n_layers = prep.n_layers
        self.n_voxels = prep.n_voxels
        self.u0_scale = prep.u0_scale
        self.alpha = prep.alpha
        self.label_epsilon = prep.label_epsilon
        self.threshold_mev = prep.threshold_mev
        self.register_buffer("membership", pp.layer_membership(prep.layer_sizes))
        self.register_buffer("voxel_layer", pp.voxel_layer_index(prep.layer_sizes))

    @property
    def noise_dim(self) -> int:
        return self.n_layers + self.n_voxels

    def layer_energies(self, incident: Tensor, noise: Tensor) -> Tensor:
        """Flow-I: (B, 1) incident energies (100 GeV) and (B, L) noise -> (B, L) layer energies (100 GeV)."""
        x = self.flow1.sample(noise, pp.flow1_condition(incident))
        return pp.unit_to_energies(pp.inverse_logit(x, self.alpha), incident, self.u0_scale)

    def forward(self, incident_energy_mev: Tensor, noise: Tensor) -> Tensor:
        incident = incident_energy_mev / pp.ENERGY_UNIT_MEV
        energies = self.layer_energies(incident, noise[:, : self.n_layers])
        labels = pp.flow2_labels(incident, energies, self.label_epsilon)
        x = self.flow2.sample(noise[:, self.n_layers :], labels)
        membership = cast(Tensor, self.membership)
        voxel_layer = cast(Tensor, self.voxel_layer)
        return pp.flow2_outputs_to_showers(
            x, energies, membership, voxel_layer, alpha=self.alpha, threshold_mev=self.threshold_mev
        )


def draw_noise(n: int, dim: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
    """Standard normal noise for ``n`` showers."""
    return torch.randn(n, dim, generator=generator, device=device)
