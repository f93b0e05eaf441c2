"""The per-layer conditions of L2LFlows (method note 3.1, the slides' context table).

Flow i sees the images of layers ``i - 1, ..., i - window`` that exist (most recent first, each the layer flow's
own space: logit of the cell fractions, flattened as the slides concatenate them), then the condition of its
own layer energy E_i and of E_inc: ``[N, 2 + cells * min(i, window)]``. It never sees layer i itself or a later
layer; ``tests/test_l2lflows.py`` checks that by gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["context_width", "context_widths", "layer_context"]


def context_width(layer: int, cells_per_layer: int, window: int) -> int:
    """``2 + cells_per_layer * min(layer, window)``."""
    return 2 + cells_per_layer * min(layer, window)


def context_widths(n_layers: int, cells_per_layer: int, window: int) -> list[int]:
    return [context_width(i, cells_per_layer, window) for i in range(n_layers)]


def layer_context(
    previous: list[Tensor], layer: int, window: int, energy_condition: Tensor, incident_condition: Tensor
) -> Tensor:
    """The condition of flow ``layer``.

    ``previous`` holds at least the images (B, C) of layers ``0 .. layer - 1`` (more are ignored: the context
    is built from the first ``layer`` entries only); ``energy_condition`` (B, 1) is layer ``layer``'s,
    ``incident_condition`` (B, 1) E_inc's.
    """
    recent = [previous[j] for j in range(layer - 1, max(layer - window, 0) - 1, -1)]
    return torch.cat([*recent, energy_condition, incident_condition], dim=1)
