"""The fast inference form of a sampler: same function, less work (``caloflow bench generate`` format ``fast``).

:func:`fast_sampler` turns a trained :class:`~caloflow.sampler.CaloFlowSampler` into a
:class:`FastSampler` computing the same ``(INCIDENT_ENERGY, NOISE) -> SHOWERS``, with

* the student's MADE output layers split into ``groups`` degree blocks that skip the masked-out half of
  the weights, and spline parameters laid out parameter-major (:class:`~caloflow.flows.blocked.BlockedIAF`);
* flow-I's D-pass MAF inverse computing one feature's parameters per pass
  (:class:`~caloflow.flows.blocked.FastMAFInverse`); a MAF flow-II (the teacher) is inverted the same
  way, which makes sampling the teacher about two orders of magnitude cheaper than the plain D-pass
  inverse that recomputes every feature's parameters in each pass;
* no log-determinants (the sampling path throws them away) and no dropout;
* batches above ``chunk`` showers generated ``chunk`` at a time into one output tensor, so the temporaries
  stay small enough for the CPU caches and for glibc to reuse instead of mapping fresh pages per call
  (the page-fault pitfall of the CPU performance notes).

Float32 throughout; outputs equal the plain sampler's up to float rounding (the per-shower parity
criterion of :mod:`caloflow.export.parity` holds; ``tests/test_bench_generate.py`` checks it). With
``chunk=None`` the module has no data-dependent control flow and traces/exports like the plain sampler
(formats ``fast_torchscript`` and ``fast_onnx`` of the benchmark).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import cast

from torch import Tensor, nn

from caloflow import preprocessing as pp
from caloflow.flows import Flow
from caloflow.flows.autoregressive import AutoregressiveRQS
from caloflow.flows.blocked import BlockedIAF, FastMAFInverse
from caloflow.sampler import CaloFlowSampler

__all__ = ["DEFAULT_CHUNK", "DEFAULT_GROUPS", "FastSampler", "fast_flow", "fast_sampler", "in_chunks"]

DEFAULT_GROUPS = 4
DEFAULT_CHUNK = 256


class _FastFlow(nn.Module):
    """A flow's sampling direction from fast blocks: for i = n-1 .. 0, un-permute then invert block i."""

    def __init__(self, flow: Flow, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        for i in range(flow.n_blocks):
            permutation = flow.permutation(i)
            name = f"inverse_permutation_{i}"
            self.register_buffer(name, None if permutation is None else permutation._inverse.clone())

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        for i in range(len(self.blocks) - 1, -1, -1):
            inverse = cast(Tensor | None, getattr(self, f"inverse_permutation_{i}"))
            if inverse is not None:
                z = z.index_select(1, inverse)
            z = self.blocks[i](z, c)
        return z


def _fast_block(block: AutoregressiveRQS, groups: int) -> nn.Module:
    """The student's IAF blocks sample in one pass; the teacher's MAF blocks in D passes of one feature."""
    return BlockedIAF(block, groups) if block.inverse_autoregressive else FastMAFInverse(block)


def fast_flow(flow: Flow, groups: int = DEFAULT_GROUPS) -> nn.Module:
    """The sampling direction of ``flow`` from fast blocks (IAF: :class:`BlockedIAF`, MAF: one feature per pass),
    ``forward(z, c) -> x``: what any family's fast sampler builds its flows from."""
    return _FastFlow(flow, [_fast_block(flow.block(i), groups) for i in range(flow.n_blocks)])


class FastSampler(nn.Module):
    """``forward(incident_energy_mev (B, 1), noise (B, L + V)) -> showers_mev (B, V)``, as the sampler."""

    def __init__(
        self, sampler: CaloFlowSampler, groups: int = DEFAULT_GROUPS, chunk: int | None = DEFAULT_CHUNK
    ) -> None:
        super().__init__()
        if sampler.flow1.block(0).inverse_autoregressive:
            raise ValueError("the fast form needs a MAF flow-I")
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be a positive number of showers or None, got {chunk}")
        flow1, flow2 = sampler.flow1, sampler.flow2
        self.flow1 = _FastFlow(flow1, [FastMAFInverse(flow1.block(i)) for i in range(flow1.n_blocks)])
        self.flow2 = _FastFlow(flow2, [_fast_block(flow2.block(i), groups) for i in range(flow2.n_blocks)])
        self.n_layers, self.n_voxels = sampler.n_layers, sampler.n_voxels
        self.u0_scale, self.alpha = sampler.u0_scale, sampler.alpha
        self.label_epsilon, self.threshold_mev = sampler.label_epsilon, sampler.threshold_mev
        self.register_buffer("membership", cast(Tensor, sampler.membership).clone())
        self.register_buffer("voxel_layer", cast(Tensor, sampler.voxel_layer).clone())
        self.chunk = chunk
        self.requires_grad_(False)

    @property
    def noise_dim(self) -> int:
        return self.n_layers + self.n_voxels

    def generate(self, incident_energy_mev: Tensor, noise: Tensor) -> Tensor:
        """One batch, no chunking: what ``forward`` does per chunk."""
        incident = incident_energy_mev / pp.ENERGY_UNIT_MEV
        x1 = self.flow1(noise[:, : self.n_layers], pp.flow1_condition(incident))
        energies = pp.unit_to_energies(pp.inverse_logit(x1, self.alpha), incident, self.u0_scale)
        labels = pp.flow2_labels(incident, energies, self.label_epsilon)
        x = self.flow2(noise[:, self.n_layers :], labels)
        membership = cast(Tensor, self.membership)
        voxel_layer = cast(Tensor, self.voxel_layer)
        return pp.flow2_outputs_to_showers(
            x, energies, membership, voxel_layer, alpha=self.alpha, threshold_mev=self.threshold_mev
        )

    def forward(self, incident_energy_mev: Tensor, noise: Tensor) -> Tensor:
        return in_chunks(self.generate, incident_energy_mev, noise, self.chunk, self.n_voxels)


def in_chunks(
    generate: Callable[[Tensor, Tensor], Tensor], incident: Tensor, noise: Tensor, chunk: int | None, width: int
) -> Tensor:
    """``generate(incident, noise)`` on at most ``chunk`` rows at a time, written into one (B, ``width``) output
    (``chunk=None``: one call). Every family's fast form batches this way (see the module docstring)."""
    batch = incident.shape[0]
    if chunk is None or batch <= chunk:
        return generate(incident, noise)
    out = noise.new_empty(batch, width)
    for start in range(0, batch, chunk):
        stop = min(start + chunk, batch)
        out[start:stop] = generate(incident[start:stop], noise[start:stop])
    return out


def fast_sampler(
    sampler: CaloFlowSampler, groups: int = DEFAULT_GROUPS, chunk: int | None = DEFAULT_CHUNK
) -> FastSampler:
    """The :class:`FastSampler` of ``sampler`` (an eval-mode copy; ``sampler`` is not changed)."""
    return FastSampler(copy.deepcopy(sampler).eval(), groups=groups, chunk=chunk).eval()
