"""The per-layer conditions of L2LFlows (method note 3.1, the slides' context table).

Flow i sees the images of layers ``i - 1, ..., i - window`` that exist (most recent first, each the layer flow's
own space: logit of the cell fractions, flattened as the slides concatenate them), then the condition of its
own layer energy E_i and of E_inc: ``[N, 2 + cells * min(i, window)]``. It never sees layer i itself or a later
layer; ``tests/test_l2lflows.py`` checks that by gradients.

The full-grid presets (``full``, ``tiny-full``) compress each previous image before it enters the context
(:class:`ContextPooling`): the cell fractions summed over ``pool`` x ``pool`` blocks (the 30 x 30 layer -> a
10 x 10 image of the energy shares of 3 x 3 blocks, normalised to the layer), back in the same logit space. It
is a fixed map of one image at a time (no parameter, no mixing of layers), so the context stays as wide as
the crop model's and a layer still sees nothing of itself or of later layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from caloflow.families.l2lflows import transforms as tf

__all__ = ["ContextPooling", "context_cells", "context_pooling", "context_width", "context_widths", "layer_context"]


def context_cells(cells_per_layer: int, pool: int = 1) -> int:
    """Cells of one previous image in the context: ``cells_per_layer / pool**2`` (``pool`` 1: all)."""
    return cells_per_layer // (pool * pool)


def context_width(layer: int, cells_per_layer: int, window: int, pool: int = 1) -> int:
    """``2 + context_cells * min(layer, window)``."""
    return 2 + context_cells(cells_per_layer, pool) * min(layer, window)


def context_widths(n_layers: int, cells_per_layer: int, window: int, pool: int = 1) -> list[int]:
    return [context_width(i, cells_per_layer, window, pool) for i in range(n_layers)]


@dataclass(frozen=True)
class ContextPooling:
    """``(B, side * side)`` layer image -> ``(B, (side / pool)**2)``: the fractions summed over ``pool`` x
    ``pool`` blocks as shares of their total (what the renormalisation will serve), logit again (the identity
    when ``pool`` is 1)."""

    side: int
    pool: int
    alpha: float

    def __post_init__(self) -> None:
        if self.pool < 1 or self.side % self.pool:
            raise ValueError(f"context_pool {self.pool} must divide the layer side {self.side}")

    @classmethod
    def for_layer(cls, cells_per_layer: int, pool: int, alpha: float) -> ContextPooling:
        side = math.isqrt(cells_per_layer)
        if side * side != cells_per_layer:
            raise ValueError(f"context pooling needs square layers; {cells_per_layer} cells per layer is not")
        return cls(side, pool, alpha)

    @property
    def cells(self) -> int:
        return (self.side // self.pool) ** 2

    def __call__(self, image: Tensor) -> Tensor:
        if self.pool == 1:
            return image
        coarse = self.side // self.pool
        fractions = tf.logit_to_fractions(image, self.alpha).reshape(-1, coarse, self.pool, coarse, self.pool)
        blocks = fractions.sum(dim=(2, 4)).reshape(-1, self.cells)
        return tf.fractions_to_logit(blocks, blocks.sum(dim=1), self.alpha)


def context_pooling(prep: tf.L2LPreprocessing) -> ContextPooling | None:
    """The run's context compression; None when previous images enter as they are (the crop presets)."""
    if prep.context_pool == 1:
        return None
    return ContextPooling.for_layer(prep.cells_per_layer, prep.context_pool, prep.alpha)


def layer_context(
    previous: list[Tensor],
    layer: int,
    window: int,
    energy_condition: Tensor,
    incident_condition: Tensor,
    pooling: ContextPooling | None = None,
) -> Tensor:
    """The condition of flow ``layer``.

    ``previous`` holds at least the images (B, C) of layers ``0 .. layer - 1`` (more are ignored: the context
    is built from the first ``layer`` entries only); ``energy_condition`` (B, 1) is layer ``layer``'s,
    ``incident_condition`` (B, 1) E_inc's; ``pooling`` compresses each previous image (default: as it is).
    """
    recent = [previous[j] for j in range(layer - 1, max(layer - window, 0) - 1, -1)]
    if pooling is not None:
        recent = [pooling(image) for image in recent]
    return torch.cat([*recent, energy_condition, incident_condition], dim=1)
