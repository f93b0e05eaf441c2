"""A conditional flow ``[T_0, P_0, T_1, P_1, ..., T_{n-1} (, P_{n-1})]`` over a standard normal base.

The density direction x -> z applies the list left to right (block ``T_i`` then permutation ``P_i``);
sampling z -> x applies it right to left with inverses. The condition ``c`` goes only into each block's
MADE; the base N(0, I) is unconditional. Generation is a pure function of ``(noise, c)``.

Trace convention (for distillation): both :meth:`Flow.forward_trace` and :meth:`Flow.inverse_trace`
index everything by *block*, never by execution order, so the traces of a teacher and a student with the
same permutations are compared index by index:

* ``intermediates`` has n + 1 entries: ``intermediates[0]`` is x (the x-side input of block 0) and
  ``intermediates[i + 1]`` is the z side of block i, before the permutation ``P_i`` that follows it.
  Without a final permutation ``intermediates[n]`` is the latent z.
* ``params[i]`` is the raw MADE output (B, D, 3K - 1) of block i.

In ``inverse_trace`` the blocks run n-1 ... 0 (the k-th executed block is block n-1-k) and the lists are
still returned in block order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple, cast

import torch
from torch import Tensor, nn

from caloflow.flows.autoregressive import AutoregressiveRQS, BlockOutput
from caloflow.flows.permutations import Permutation

__all__ = ["Flow", "TraceOutput", "standard_normal_log_prob"]


class TraceOutput(NamedTuple):
    """``out``: z (forward) or x (inverse); ``ladj`` (B,): log|det d out / d input| of that map."""

    out: Tensor
    ladj: Tensor
    intermediates: list[Tensor]
    params: list[Tensor]


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` summed over the last dimension."""
    return -0.5 * z.square().sum(dim=-1) - 0.5 * z.shape[-1] * math.log(2.0 * math.pi)


def _check_layout(blocks: Sequence[AutoregressiveRQS], permutations: Sequence[Permutation]) -> None:
    if not blocks or len(permutations) not in (len(blocks) - 1, len(blocks)):
        raise ValueError(f"{len(blocks)} blocks need {len(blocks) - 1} or {len(blocks)} permutations")
    features = {block.features for block in blocks} | {p.indices.numel() for p in permutations}
    if len(features) != 1:
        raise ValueError(f"blocks and permutations disagree on the number of features: {features}")


class Flow(nn.Module):
    """Blocks ``T_i`` with the permutation ``P_i`` after block i (the last one optional)."""

    def __init__(self, blocks: Sequence[AutoregressiveRQS], permutations: Sequence[Permutation]) -> None:
        super().__init__()
        _check_layout(blocks, permutations)
        self.features = blocks[0].features
        self.blocks = nn.ModuleList(blocks)
        self.permutations = nn.ModuleList(permutations)

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    def block(self, i: int) -> AutoregressiveRQS:
        """Block ``T_i``."""
        return cast(AutoregressiveRQS, self.blocks[i])

    def permutation(self, i: int) -> Permutation | None:
        """The permutation ``P_i`` after block i, or None after a last block without one."""
        return cast(Permutation, self.permutations[i]) if i < len(self.permutations) else None

    def forward_trace(self, x: Tensor, c: Tensor) -> TraceOutput:
        """x -> z with every block's output and MADE parameters (see the module docstring)."""
        intermediates, params = [x], []
        ladj = torch.zeros_like(x[..., 0])
        for i in range(self.n_blocks):
            result: BlockOutput = self.block(i)(x, c)
            ladj = ladj + result.ladj
            intermediates.append(result.out)
            params.append(result.params)
            permutation = self.permutation(i)
            x = result.out if permutation is None else permutation(result.out)
        return TraceOutput(x, ladj, intermediates, params)

    def inverse_trace(self, z: Tensor, c: Tensor) -> TraceOutput:
        """z -> x, blocks executed n-1 ... 0, lists returned in block order (see the module docstring)."""
        intermediates, params = [z] * (self.n_blocks + 1), [z] * self.n_blocks
        ladj = torch.zeros_like(z[..., 0])
        for i in reversed(range(self.n_blocks)):
            permutation = self.permutation(i)
            z = z if permutation is None else permutation.inverse(z)
            intermediates[i + 1] = z
            result = self.block(i).inverse(z, c)
            ladj = ladj + result.ladj
            params[i] = result.params
            z = result.out
        intermediates[0] = z
        return TraceOutput(z, ladj, intermediates, params)

    def log_prob(self, x: Tensor, c: Tensor) -> Tensor:
        """``log p(x | c)`` (B,): one MADE pass per block for MAF, D passes per block for IAF."""
        z, ladj, _, _ = self.forward_trace(x, c)
        return standard_normal_log_prob(z) + ladj

    def sample(self, noise: Tensor, c: Tensor) -> Tensor:
        """x for the given base noise (B, D): one MADE pass per block for IAF, D passes for MAF."""
        return self.inverse_trace(noise, c).out

    def sample_and_log_prob(self, noise: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """x and ``log p(x | c) = log N(noise) - log|det dx/dnoise|`` from the sampling pass alone."""
        x, ladj, _, _ = self.inverse_trace(noise, c)
        return x, standard_normal_log_prob(noise) - ladj

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x, c)
