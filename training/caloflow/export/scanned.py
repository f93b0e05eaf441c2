"""A flow's sampling direction with every MAF block's D-pass solve as one scanned pass, for export.

A MAF block samples by fixed-point iteration, exact after D passes (:meth:`AutoregressiveRQS.inverse`); unrolled,
each pass is a copy of the MADE and the spline in the exported graph (flow-I of L2LFlows: 30 layer energies x
its blocks, ~9 000 graph nodes for the ``tiny`` preset, minutes of export). :class:`ScannedSampling` runs the
same passes as :func:`torch._higher_order_ops.scan` over D steps (an ONNX ``Scan``), so the graph holds one
pass per block. IAF blocks keep their single pass. Same arithmetic in the same order as ``Flow.sample``.
"""

from __future__ import annotations

import copy

from torch import Tensor, nn
from torch._higher_order_ops.scan import scan

from caloflow.flows import Flow
from caloflow.flows.autoregressive import AutoregressiveRQS

__all__ = ["ScannedSampling"]


class ScannedSampling(nn.Module):
    """``forward(z, c)`` and ``sample(z, c)`` give ``flow.sample(z, c)`` (an eval-mode copy of ``flow``)."""

    def __init__(self, flow: Flow) -> None:
        super().__init__()
        self.flow = copy.deepcopy(flow).eval().requires_grad_(False)

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        for i in reversed(range(self.flow.n_blocks)):
            permutation = self.flow.permutation(i)
            z = z if permutation is None else permutation.inverse(z)
            block = self.flow.block(i)
            z = block.inverse(z, c).out if block.inverse_autoregressive else _solve(block, z, c)
        return z

    def sample(self, z: Tensor, c: Tensor) -> Tensor:
        x: Tensor = self(z, c)
        return x


def _solve(block: AutoregressiveRQS, v: Tensor, c: Tensor) -> Tensor:
    """The block's D-pass inverse, one scanned pass: ``out <- spline^-1(v; MADE(out, c))`` D times from 0."""

    def one_pass(out: Tensor, _: Tensor) -> tuple[Tensor, Tensor]:
        params: Tensor = block.autoregressive_net(out, c)
        new, _ladj = block._spline(v, params, to_latent=False)
        return new, new[:, :1].clone()

    out, _ = scan(one_pass, v.new_zeros(v.shape), v.new_zeros(block.features, 1))
    result: Tensor = out
    return result
