"""Fixed feature permutations between flow blocks (method note 3.1-3.3).

A :class:`Permutation` holds its index vector as the buffer ``_permutation`` (nflows' name), so it is
saved in and restored from the state_dict. The calorimeter-layer variants permute inside each layer's
contiguous slice only: the layer blocks never move, the voxels of layer 0 always come first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "Permutation",
    "layerwise_inversion",
    "layerwise_random_permutation",
    "random_permutation",
]


class Permutation(nn.Module):
    """``forward(x) = x[..., p]``, ``inverse(y) = y[..., argsort(p)]``; the log-det is 0."""

    _permutation: Tensor
    _inverse: Tensor

    def __init__(self, permutation: Tensor) -> None:
        super().__init__()
        permutation = torch.as_tensor(permutation, dtype=torch.int64)
        if permutation.device.type != "meta" and not _is_permutation(permutation):
            raise ValueError("a permutation must be a 1-d rearrangement of 0..n-1")
        self.register_buffer("_permutation", permutation)
        self.register_buffer("_inverse", torch.argsort(permutation), persistent=False)

    @property
    def indices(self) -> Tensor:
        """The index vector p (the buffer itself, not a copy)."""
        return self._permutation

    def forward(self, x: Tensor) -> Tensor:
        return x.index_select(-1, self._permutation)

    def inverse(self, y: Tensor) -> Tensor:
        return y.index_select(-1, self._inverse)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._inverse = torch.argsort(self._permutation)


def _is_permutation(indices: Tensor) -> bool:
    expected = torch.arange(indices.numel(), device=indices.device)
    return indices.dim() == 1 and torch.equal(indices.sort().values, expected)


def _check_sizes(layer_sizes: Sequence[int]) -> None:
    if not layer_sizes or min(layer_sizes) < 1:
        raise ValueError(f"layer sizes must be positive, got {list(layer_sizes)}")


def _per_layer(layer_sizes: Sequence[int], pieces: Sequence[Tensor]) -> Permutation:
    offsets = [sum(layer_sizes[:i]) for i in range(len(layer_sizes))]
    return Permutation(torch.cat([piece + offset for piece, offset in zip(pieces, offsets, strict=True)]))


def layerwise_inversion(layer_sizes: Sequence[int]) -> Permutation:
    """Reverse the feature order inside each calorimeter layer (CaloFlow's ``InversionLayer``)."""
    _check_sizes(layer_sizes)
    return _per_layer(layer_sizes, [torch.arange(n - 1, -1, -1, device="cpu") for n in layer_sizes])


def layerwise_random_permutation(layer_sizes: Sequence[int], generator: torch.Generator) -> Permutation:
    """An independent random permutation inside each calorimeter layer, drawn from ``generator``."""
    _check_sizes(layer_sizes)
    return _per_layer(layer_sizes, [torch.randperm(n, generator=generator, device="cpu") for n in layer_sizes])


def random_permutation(features: int, generator: torch.Generator) -> Permutation:
    """A random permutation of the whole feature vector (flow-I), drawn from ``generator``."""
    return layerwise_random_permutation([features], generator)
