"""The fast MAF inverse (:class:`~caloflow.flows.blocked.FastMAFInverse`, one feature's spline per pass) as one
scanned pass, for export.

Unrolled, a :class:`FastMAFInverse` puts D copies of its pass in the graph (iCaloFlow's flow-1: 45 features x 8
blocks = 360 passes, minutes of ONNX export). :class:`ScannedMAFInverse` runs the same passes as
:func:`torch._higher_order_ops.scan` over the D features (an ONNX ``Scan``), the per-feature weights stacked as
the scanned inputs: pass k adds column k - 1 of the first layer times feature k - 1 to the running
pre-activation (column "-1" is zero), computes feature k's spline parameters and inverts its spline. Same
arithmetic in the same order as the unrolled form. :class:`caloflow.export.scanned.ScannedSampling` scans the
plain D-pass solve instead (every feature's parameters recomputed in each pass: ~D/2 times the work).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._higher_order_ops.scan import scan

from caloflow.flows.blocked import FastMAFInverse
from caloflow.flows.spline_few_ops import rqs_inverse_few_ops

__all__ = ["ScannedMAFInverse", "scan_maf_inverses"]


class ScannedMAFInverse(nn.Module):
    """``forward(z (B, D), c) -> x (B, D)``, the same function as the :class:`FastMAFInverse` it is built from."""

    w_out: Tensor
    b_out: Tensor
    w_in_previous: Tensor
    minimum: Tensor

    def __init__(self, block: FastMAFInverse) -> None:
        super().__init__()
        self.stack = copy.deepcopy(block.stack)
        self.spline = block.spline
        self.register_buffer("w_out", torch.stack([w.detach() for w in block.w_out]))  # (D, P, H)
        self.register_buffer("b_out", torch.stack([b.detach() for b in block.b_out]))  # (D, P)
        columns = [torch.zeros_like(block.w_in_columns[0]), *block.w_in_columns[:-1]]
        self.register_buffer("w_in_previous", torch.stack([c.detach() for c in columns]))  # (D, H)
        minimum = [block.spline.min_bin_width, block.spline.min_bin_height]
        self.register_buffer("minimum", torch.tensor(minimum, dtype=self.w_out.dtype))

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        s = self.spline

        def one_pass(carry: tuple[Tensor, Tensor], x: dict[str, Tensor]) -> tuple[tuple[Tensor, Tensor], Tensor]:
            pre, last = carry
            pre = pre + last * x["column"]
            params = F.linear(self.stack.hidden(pre), x["w"], x["b"]).unsqueeze(2)  # (B, 3K - 1, 1)
            bins = (s.min_bin_width, s.min_bin_height)
            out = rqs_inverse_few_ops(x["z"], params, s.tail_bound, *bins, s.min_derivative, minimum=self.minimum)
            return (pre, out), out.clone()

        start = (self.stack.context_term(c) + self.stack.b_in, z.new_zeros(z.shape[0], 1))
        xs = {"z": z.t().unsqueeze(-1), "w": self.w_out, "b": self.b_out, "column": self.w_in_previous}
        _, features = scan(one_pass, start, xs)  # (D, B, 1)
        out: Tensor = features.squeeze(-1).t()
        return out


def scan_maf_inverses(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every :class:`FastMAFInverse` inside replaced by its :class:`ScannedMAFInverse`."""
    scanned = copy.deepcopy(module)
    for parent in list(scanned.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, FastMAFInverse):
                parent.add_module(name, ScannedMAFInverse(child))
    return scanned
