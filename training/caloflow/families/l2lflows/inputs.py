"""From a batch of crop cells (MeV) to every L2LFlows flow's inputs and conditions, with dequantisation noise."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from caloflow.families.l2lflows import transforms as tf
from caloflow.families.l2lflows.context import ContextPooling, context_pooling, layer_context
from caloflow.training.data import ShowerTensors

__all__ = ["BatchInputs", "batch_inputs"]


@dataclass(frozen=True)
class BatchInputs:
    flow1_x: Tensor
    """(B, L) flow-I inputs."""
    incident_condition: Tensor
    """(B, 1)."""
    images: Tensor
    """(B, L, C) the layer flows' inputs (logit of the noisy cell fractions)."""
    energy_condition: Tensor
    """(B, L) the layer-energy conditions."""
    energies_mev: Tensor
    """(B, L) the noisy layer energies."""
    incident_mev: Tensor
    pooling: ContextPooling | None = None
    """The run's compression of the previous images in a context (None: as they are)."""

    def context(self, layer: int, window: int, previous: Tensor | None = None) -> Tensor:
        """Flow ``layer``'s condition from ``previous`` (B, L, C) images (default: the true ones)."""
        images = self.images if previous is None else previous
        return layer_context(
            list(images[:, :layer].unbind(dim=1)),
            layer,
            window,
            self.energy_condition[:, layer : layer + 1],
            self.incident_condition,
            self.pooling,
        )


def batch_inputs(batch: ShowerTensors, prep: tf.L2LPreprocessing, generator: torch.Generator | None) -> BatchInputs:
    noisy = tf.add_noise(batch.showers, prep.noise_mev, generator)
    energies = noisy.sum(dim=-1)
    return BatchInputs(
        flow1_x=tf.layer_energies_to_logit(energies, batch.incident, prep),
        incident_condition=tf.incident_condition(batch.incident),
        images=tf.fractions_to_logit(noisy, energies, prep.alpha),
        energy_condition=tf.energy_condition(energies),
        energies_mev=energies,
        incident_mev=batch.incident,
        pooling=context_pooling(prep),
    )
