"""The fast inference form of the iCaloFlow generator: the same function as the eager sampler, less work.

* flow-1 (MAF, L sequential passes per block) computes one feature's spline parameters per pass, from a
  running first-layer pre-activation (:class:`~caloflow.flows.blocked.FastMAFInverse`, DS1's fast path);
* the students' output layers skip the masked-out half of their weights
  (:class:`~caloflow.flows.blocked.BlockedIAF`);
* flow-3's context GEMM is split: the constant columns (y0, E_n, E_{n-1}, the one-hot of the step) are
  multiplied once for all L - 1 steps before the loop, one batched GEMM per block; inside the loop only the
  previous-layer columns (layer size x H) are;
* no log-determinants, float32;
* on a CPU, a batch above ``chunk`` rows (:data:`~caloflow.export.fast.DEFAULT_CHUNK`, 256, as DS1's fast
  form) runs ``chunk`` rows at a time (:func:`~caloflow.export.fast.in_chunks`): each block's spline parameters
  are (rows, 3K - 1, layer size) floats, 83 MB for 1 000 DS3 rows, streamed from memory by every elementwise step
  of the spline; 256 rows keep them at 21 MB. Measured on the untrained paper DS3 student chain, one thread,
  1 000 showers: 138 / 189 ms per shower in one call, 111 / 111 in chunks of 250, 111 / 123 in chunks of 100
  (two rounds, the other core busy). Not on a GPU, which wants the whole batch, nor inside an export or a
  trace, which records one call.
"""

from __future__ import annotations

import copy
from typing import cast

import torch.nn.functional as F
from torch import Tensor, nn

from caloflow.export.fast import DEFAULT_CHUNK, DEFAULT_GROUPS, fast_flow, in_chunks
from caloflow.families.icaloflow.context import STATIC_COLUMNS
from caloflow.families.icaloflow.sampler import GenerationChain, ICaloFlowSampler
from caloflow.flows import Flow
from caloflow.flows.blocked import BlockedIAF, is_recording

__all__ = ["FastICaloFlowSampler", "fast_icaloflow_sampler"]


class _Flow3Student(nn.Module):
    """Flow-3's IAF student, sampling direction, with the constant context columns precomputed per batch."""

    def __init__(self, flow: Flow, groups: int, layer_size: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(BlockedIAF(flow.block(i), groups) for i in range(flow.n_blocks))
        previous = slice(STATIC_COLUMNS, STATIC_COLUMNS + layer_size)
        self.w_static = nn.ParameterList(self._part(b, slice(0, STATIC_COLUMNS)) for b in self._blocks())
        self.w_previous = nn.ParameterList(self._part(b, previous) for b in self._blocks())
        self.w_code = nn.ParameterList(self._part(b, slice(previous.stop, None)) for b in self._blocks())
        for i in range(flow.n_blocks):
            permutation = flow.permutation(i)
            self.register_buffer(
                f"inverse_permutation_{i}", None if permutation is None else permutation._inverse.clone()
            )

    def _blocks(self) -> list[BlockedIAF]:
        return [cast(BlockedIAF, b) for b in self.blocks]

    @staticmethod
    def _part(block: BlockedIAF, columns: slice) -> nn.Parameter:
        return nn.Parameter(block.context_weight()[:, columns].contiguous(), requires_grad=False)

    def prepare(self, static: Tensor, codes: Tensor) -> list[Tensor]:
        """Per block (L-1, B, H): static W_s^T + (one-hot W_code^T) + b, for every step at once."""
        return [
            (F.linear(static, w_s) + F.linear(codes, w_c)[None] + block.context_bias).transpose(0, 1)
            for block, w_s, w_c in zip(self._blocks(), self.w_static, self.w_code, strict=True)
        ]

    def forward(self, z: Tensor, previous_logit: Tensor, prepared: list[Tensor]) -> Tensor:
        """One step, ``prepared``: that step's (B, H) entry of each block's :meth:`prepare` tensor."""
        blocks = self._blocks()
        for i in range(len(blocks) - 1, -1, -1):
            inverse = cast(Tensor | None, getattr(self, f"inverse_permutation_{i}"))
            if inverse is not None:
                z = z.index_select(1, inverse)
            term = F.relu(prepared[i] + F.linear(previous_logit, self.w_previous[i]))
            z = blocks[i].sample_given_context_term(z, term)
        return z


class FastICaloFlowSampler(GenerationChain):
    """The fast form of an :class:`ICaloFlowSampler` (see the module docstring)."""

    def __init__(
        self, sampler: ICaloFlowSampler, groups: int = DEFAULT_GROUPS, chunk: int | None = DEFAULT_CHUNK
    ) -> None:
        super().__init__(sampler.cond, sampler.threshold_mev, sampler.renormalise)
        self.flow1 = fast_flow(sampler.flow1, groups)
        self.flow2 = fast_flow(sampler.flow2, groups)
        student = sampler.flow3.block(0).inverse_autoregressive
        self.flow3 = _Flow3Student(sampler.flow3, groups, sampler.layer_size) if student else None
        self.flow3_teacher = None if student else fast_flow(sampler.flow3, groups)
        self.chunk = chunk
        self.requires_grad_(False)

    def forward(self, incident_energy_mev: Tensor, noise: Tensor) -> Tensor:
        chunk = None if is_recording() or noise.device.type != "cpu" else self.chunk
        return in_chunks(self._generate, incident_energy_mev, noise, chunk, self.n_voxels)

    def _generate(self, incident_energy_mev: Tensor, noise: Tensor) -> Tensor:
        return GenerationChain.forward(self, incident_energy_mev, noise)

    def sample_flow1(self, z: Tensor, c: Tensor) -> Tensor:
        out: Tensor = self.flow1(z, c)
        return out

    def sample_flow2(self, z: Tensor, c: Tensor) -> Tensor:
        out: Tensor = self.flow2(z, c)
        return out

    def prepare_flow3(self, static: Tensor, codes: Tensor) -> list[Tensor]:
        return self.flow3.prepare(static, codes) if self.flow3 is not None else [static.transpose(0, 1), codes]

    def sample_flow3(self, z: Tensor, previous_logit: Tensor, prepared: list[Tensor]) -> Tensor:
        if self.flow3 is not None:
            out: Tensor = self.flow3(z, previous_logit, prepared)
            return out
        static, code = prepared
        teacher = cast(nn.Module, self.flow3_teacher)
        context = self.cond.flow3_context(static, previous_logit, code.expand(previous_logit.shape[0], -1))
        result: Tensor = teacher(z, context)
        return result


def fast_icaloflow_sampler(
    sampler: ICaloFlowSampler, groups: int = DEFAULT_GROUPS, chunk: int | None = DEFAULT_CHUNK
) -> FastICaloFlowSampler:
    """The fast form of ``sampler`` (from an eval-mode copy; ``sampler`` is not changed)."""
    return FastICaloFlowSampler(copy.deepcopy(sampler).eval(), groups, chunk).eval()
