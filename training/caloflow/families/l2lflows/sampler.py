"""The whole L2LFlows generator as one module: ``(incident energies MeV, noise) -> cells MeV`` (method note 3.6).

1. flow-I samples the layer energies E_0 .. E_{L-1} from the first L noise columns;
2. layer by layer, flow i samples the image of layer i (logit of its cell fractions) from its C noise columns,
   conditioned on the already generated images of the previous ``window`` layers, E_i and E_inc;
3. every layer is renormalised to E_i with the threshold-aware algorithm (cells below the threshold zeroed).

The layer flows are the IAF students (one pass per block: the served chain) or the MAF teachers (C passes per
block: the published L2LFlows). Noise is an input, so generation is a pure function of ``(energies, noise)``;
static shapes except the batch. Exported, flow-I's passes and the layer loop are scanned, not unrolled
(:mod:`caloflow.families.l2lflows.scan`).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from caloflow.families.l2lflows import transforms as tf
from caloflow.families.l2lflows.context import context_pooling, layer_context
from caloflow.families.l2lflows.models import LayerFlows
from caloflow.families.l2lflows.renormalize import renormalize
from caloflow.flows import Flow

__all__ = ["L2LSampler"]


class L2LSampler(nn.Module):
    """``forward(incident_energy_mev (B, 1), noise (B, L + L C)) -> showers_mev (B, L C)``, flat (layer, x, z)."""

    def __init__(self, flow1: Flow, layers: LayerFlows, prep: tf.L2LPreprocessing, window: int) -> None:
        super().__init__()
        if len(layers) != prep.n_layers:
            raise ValueError(f"{len(layers)} layer flows for {prep.n_layers} layers")
        self.flow1: nn.Module = flow1
        self.chain: nn.Module | None = None
        """The export form's scanned chain (:func:`~caloflow.families.l2lflows.scan.scanned_sampler`); None: loop."""
        self.layers = layers
        self.n_layers = prep.n_layers
        self.cells_per_layer = prep.cells_per_layer
        self.n_voxels = prep.n_voxels
        self.window = window
        self.alpha = prep.alpha
        self.ratio_scale = prep.ratio_scale
        self.threshold_mev = prep.threshold_mev
        self.prep = prep
        self.pooling = context_pooling(prep)

    @property
    def noise_dim(self) -> int:
        return self.n_layers + self.n_voxels

    def layer_energies(self, incident_mev: Tensor, noise: Tensor) -> Tensor:
        """flow-I: (B, 1) MeV and (B, L) noise -> (B, L) layer energies in MeV."""
        x = cast(Flow, self.flow1).sample(noise, tf.incident_condition(incident_mev))
        return tf.layer_energies_from_logit(x, incident_mev, self.prep)

    def images(self, incident_mev: Tensor, energies_mev: Tensor, noise: Tensor, given: Tensor | None = None) -> Tensor:
        """The layer flows' chain: (B, L, C) images in the flows' space from (B, L, C) noise.

        With ``given`` (B, L, C) images, flow i's context is built from ``given`` (teacher forcing: the drift
        measurement); without, from the chain's own earlier outputs.
        """
        incident_condition = tf.incident_condition(incident_mev)
        energy_condition = tf.energy_condition(energies_mev)
        if given is None and self.chain is not None:
            images: Tensor = self.chain(noise, energy_condition, incident_condition)
            return images
        generated: list[Tensor] = []
        previous = generated if given is None else list(given.unbind(dim=1))
        for i in range(self.n_layers):
            c = layer_context(
                previous, i, self.window, energy_condition[:, i : i + 1], incident_condition, self.pooling
            )
            generated.append(self.layers.flow(i).sample(noise[:, i], c))
        return torch.stack(generated, dim=1)

    def showers(self, images: Tensor, energies_mev: Tensor) -> Tensor:
        """(B, L, C) images and (B, L) target energies -> (B, L C) cells in MeV, renormalised and thresholded."""
        fractions = tf.logit_to_fractions(images, self.alpha)
        return renormalize(fractions, energies_mev, self.threshold_mev).flatten(1)

    def forward(self, incident_energy_mev: Tensor, noise: Tensor) -> Tensor:
        energies = self.layer_energies(incident_energy_mev, noise[:, : self.n_layers])
        layer_noise = noise[:, self.n_layers :].reshape(-1, self.n_layers, self.cells_per_layer)
        return self.showers(self.images(incident_energy_mev, energies, layer_noise), energies)
