"""MADE: the masked autoencoder that yields the autoregressive spline parameters (method note 3.1).

It computes what nflows' ``MADE`` (sequential degrees, no residual blocks, no batch norm) computes:

    h = relu(W_in (.) M_in x + b_in + relu(W_c c + b_c))
    h = dropout(relu(W_h (.) M_h h + b_h))            (n_hidden_blocks times)
    out = W_o (.) M_o h + b_o                         viewed (B, D, P)

Inputs have degrees 1..D, hidden unit j has degree ``j mod max(1, D-1) + min(1, D-1)``, hidden masks keep
``out_deg >= in_deg`` and the output mask keeps ``out_deg > in_deg``; the P outputs of a feature are
contiguous. Masked weights are dense parameters, so parameter counts equal the published ones.
Submodule and buffer names (``initial_layer``, ``context_layer``, ``blocks.{i}.linear``, ``final_layer``,
``mask``, ``degrees``) follow nflows, so reference checkpoints map onto this module key by key.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MADE", "IncompleteDegreesWarning", "MaskedLinear", "fold_masks", "hidden_degrees"]


class IncompleteDegreesWarning(UserWarning):
    """A MADE with fewer hidden units than D - 1 cannot model every autoregressive dependency."""


def input_degrees(features: int) -> Tensor:
    """Degrees 1..D of the inputs (and, repeated per parameter, of the outputs)."""
    return torch.arange(1, features + 1, device="cpu")


def hidden_degrees(hidden: int, features: int) -> Tensor:
    """nflows' sequential degrees: ``j mod max(1, D-1) + min(1, D-1)`` for hidden unit j."""
    return torch.arange(hidden, device="cpu") % max(1, features - 1) + min(1, features - 1)


def check_degree_coverage(features: int, hidden: int, allow_incomplete: bool) -> None:
    """Refuse (or warn about) ``hidden < D - 1``: outputs would lose dependencies on earlier inputs."""
    if features < 2 or hidden >= features - 1:
        return
    message = (
        f"MADE with {hidden} hidden units over {features} features covers degrees 1..{hidden} only: "
        f"the last {features - 1 - hidden} outputs cannot depend on all earlier inputs; "
        f"use hidden >= {features - 1}"
    )
    if not allow_incomplete:
        raise ValueError(message)
    warnings.warn(message, IncompleteDegreesWarning, stacklevel=3)


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 mask (a buffer) in every forward.

    :meth:`fold_mask` zeroes the masked weights once; afterwards the multiplication is skipped whenever
    no gradient can reach the weight (inference, frozen teacher). With gradients it is always applied, so
    masked entries get exactly zero gradient and stay zero under training.
    """

    mask: Tensor
    degrees: Tensor

    def __init__(self, in_degrees: Tensor, out_degrees: Tensor, strict: bool) -> None:
        super().__init__(len(in_degrees), len(out_degrees))
        keep = out_degrees[:, None] > in_degrees if strict else out_degrees[:, None] >= in_degrees
        self.register_buffer("mask", keep.to(self.weight.dtype).to(self.weight.device))
        self.register_buffer("degrees", out_degrees.to(self.weight.device))
        self.mask_folded = False

    def fold_mask(self) -> None:
        """Zero the masked weights in place so inference can skip ``W * mask``."""
        with torch.no_grad():
            self.weight.mul_(self.mask)
        self.mask_folded = True

    def masked_weight(self) -> Tensor:
        """The effective weight ``W * mask``."""
        return self.weight * self.mask

    def forward(self, x: Tensor) -> Tensor:
        needs_grad = torch.is_grad_enabled() and self.weight.requires_grad
        weight = self.weight if self.mask_folded and not needs_grad else self.masked_weight()
        return F.linear(x, weight, self.bias)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.mask_folded = False  # loaded weights may hold non-zero masked entries


class _HiddenBlock(nn.Module):
    """``dropout(relu(masked H -> H))``; named like nflows' ``MaskedFeedforwardBlock``."""

    def __init__(self, degrees: Tensor, dropout: float) -> None:
        super().__init__()
        self.linear = MaskedLinear(degrees, degrees, strict=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor) -> Tensor:
        out: Tensor = self.dropout(F.relu(self.linear(h)))
        return out


class MADE(nn.Module):
    """Masked autoencoder mapping (x: (B, D), c: (B, C)) to autoregressive parameters (B, D, P).

    Raises ``ValueError`` if ``hidden < D - 1`` (some outputs could not see all earlier inputs) unless
    ``allow_incomplete_degrees`` is set, in which case an :class:`IncompleteDegreesWarning` is emitted.
    """

    def __init__(
        self,
        features: int,
        hidden: int,
        context: int,
        params_per_feature: int,
        n_hidden_blocks: int = 1,
        dropout: float = 0.0,
        allow_incomplete_degrees: bool = False,
    ) -> None:
        super().__init__()
        if min(features, hidden, context, params_per_feature) < 1 or n_hidden_blocks < 0:
            raise ValueError("MADE sizes must be positive and n_hidden_blocks non-negative")
        check_degree_coverage(features, hidden, allow_incomplete_degrees)
        self.features = features
        self.params_per_feature = params_per_feature
        degrees = hidden_degrees(hidden, features)
        self.initial_layer = MaskedLinear(input_degrees(features), degrees, strict=False)
        self.context_layer = nn.Linear(context, hidden)
        self.blocks = nn.ModuleList(_HiddenBlock(degrees, dropout) for _ in range(n_hidden_blocks))
        outputs = input_degrees(features).repeat_interleave(params_per_feature)
        self.final_layer = MaskedLinear(degrees, outputs, strict=True)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        h = F.relu(self.initial_layer(x) + F.relu(self.context_layer(c)))
        for block in self.blocks:
            h = block(h)
        out: Tensor = self.final_layer(h)
        return out.reshape(*out.shape[:-1], self.features, self.params_per_feature)


def fold_masks(module: nn.Module) -> None:
    """Fold the mask of every :class:`MaskedLinear` inside ``module`` into its weight (see there)."""
    for layer in module.modules():
        if isinstance(layer, MaskedLinear):
            layer.fold_mask()
