"""Running a chain of layer flows on a batch's own conditions: what the students train on and what the per-layer
KL and drift figures measure (teacher forcing with the true images vs the chain's own earlier images)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from caloflow.families.l2lflows.inputs import BatchInputs
from caloflow.families.l2lflows.models import LayerFlows
from caloflow.families.l2lflows.renormalize import renormalize
from caloflow.families.l2lflows.transforms import logit_to_fractions

__all__ = ["generate_images", "layer_observables", "w1"]


def generate_images(flows: LayerFlows, inputs: BatchInputs, noise: Tensor, window: int, forced: bool) -> Tensor:
    """(B, L, C) images: flow i samples from ``noise[:, i]`` with the true previous images as context
    (``forced``) or the chain's own."""
    generated: list[Tensor] = []
    for i in range(len(flows)):
        previous = inputs.images if forced else _stacked(generated, inputs.images)
        generated.append(flows.flow(i).sample(noise[:, i], inputs.context(i, window, previous)))
    return torch.stack(generated, dim=1)


def _stacked(generated: list[Tensor], like: Tensor) -> Tensor:
    if not generated:
        return like[:, :0]
    return torch.stack(generated, dim=1)


def layer_observables(images: Tensor, energies_mev: Tensor, alpha: float, threshold_mev: float) -> dict[str, Tensor]:
    """Per shower and layer (B, L): hits above threshold after renormalisation and the brightest cell's share."""
    cells = renormalize(logit_to_fractions(images, alpha), energies_mev, threshold_mev)
    total = cells.sum(dim=-1).clamp_min(1e-12)
    return {"hits": (cells > 0).sum(dim=-1).float(), "brightest_share": cells.amax(dim=-1) / total}


def w1(a: Tensor, b: Tensor) -> float:
    """1-d Wasserstein-1 distance of two equal-size samples (mean gap of the sorted values)."""
    sa, sb = np.sort(a.detach().cpu().numpy()), np.sort(b.detach().cpu().numpy())
    return float(np.abs(sa - sb).mean())
