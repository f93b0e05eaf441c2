"""Sampling-only forms of trained MADE-RQS blocks that skip the work the MADE masks make zero.

:class:`BlockedIAF` is an IAF block's sampling direction (one MADE pass, then the spline inverse). With
the hidden units sorted by degree, the output layer is block lower-triangular: feature f (degree f + 1)
reads only hidden units of degree <= f, a prefix of the sorted units. The D features are split into
``groups`` contiguous ranges and each range multiplies only its prefix, with plain dense matmuls that
eager torch, TorchScript and ONNX all run: (G + 1) / 2G of the dense output-layer work (G = 4: 62 %,
G = 8: 56 %); the output layer is 88 % of the paper student's FLOPs. Each range's parameters come out
parameter-major, (B, 3K - 1, D_g), the layout :func:`~caloflow.flows.spline_pm.rqs_inverse_param_major`
is fast on; the ranges are concatenated along the feature axis and the spline runs once.

:class:`FastMAFInverse` is a MAF block's sampling direction (flow-I): D sequential passes as in
:meth:`~caloflow.flows.AutoregressiveRQS.inverse`, but pass k computes only feature k's spline
parameters, from the k features already final, and inverts only feature k's spline.

Both copy the weights with the masks applied (masked entries exactly 0), have no dropout and compute no
log-determinant. They give the same values as the blocks they are built from up to float rounding.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from caloflow.flows.autoregressive import AutoregressiveRQS
from caloflow.flows.made import MADE, MaskedLinear
from caloflow.flows.spline import SplineConfig
from caloflow.flows.spline_few_ops import rqs_inverse_few_ops
from caloflow.flows.spline_pm import rqs_inverse_param_major

__all__ = ["BlockedIAF", "FastMAFInverse", "group_bounds", "is_recording"]


def is_recording() -> bool:
    """Inside a TorchScript trace, an ONNX export or torch.compile / torch.export: a module's eager-only shortcuts
    (in-place ``out=`` writes, data-dependent branches) must not be recorded."""
    tracing = torch._C._get_tracing_state() is not None
    return tracing or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def _masked(layer: MaskedLinear) -> Tensor:
    return torch.where(layer.mask.bool(), layer.weight.detach(), torch.zeros_like(layer.weight)).float()


def group_bounds(features: int, groups: int) -> list[int]:
    """``groups + 1`` increasing feature offsets from 0 to ``features`` (equal ranges, at most ``features``)."""
    groups = max(1, min(groups, features))
    return [round(features * g / groups) for g in range(groups + 1)]


class _HiddenStack(nn.Module):
    """The MADE up to the last hidden activation, masks folded, hidden units in ``order``."""

    def __init__(self, made: MADE, order: Tensor) -> None:
        super().__init__()
        self.w_in = nn.Parameter(_masked(made.initial_layer)[order], requires_grad=False)
        self.b_in = nn.Parameter(made.initial_layer.bias.detach().float()[order], requires_grad=False)
        self.w_c = nn.Parameter(made.context_layer.weight.detach().float()[order], requires_grad=False)
        self.b_c = nn.Parameter(made.context_layer.bias.detach().float()[order], requires_grad=False)
        hidden = [cast(MaskedLinear, block.linear) for block in made.blocks]
        self.w_h = nn.ParameterList(nn.Parameter(_masked(h)[order][:, order], requires_grad=False) for h in hidden)
        self.b_h = nn.ParameterList(nn.Parameter(h.bias.detach().float()[order], requires_grad=False) for h in hidden)

    def context_term(self, c: Tensor) -> Tensor:
        return F.relu(F.linear(c, self.w_c, self.b_c))

    def hidden(self, pre: Tensor) -> Tensor:
        """Last hidden activation from the first layer's pre-activation without the context term added."""
        h = F.relu(pre)
        for w, b in zip(self.w_h, self.b_h, strict=True):
            h = F.relu(F.linear(h, w, b))
        return h


def _param_major_rows(features: range, params_per_feature: int) -> Tensor:
    """Output-layer rows of ``features`` ordered parameter-major: (p, f) -> row f P + p."""
    f = torch.tensor(list(features), dtype=torch.int64)
    return (f[None, :] * params_per_feature + torch.arange(params_per_feature)[:, None]).reshape(-1)


class BlockedIAF(nn.Module):
    """``x = RQS^-1(z; theta(z, c))`` of a trained IAF :class:`AutoregressiveRQS` (see the module doc)."""

    def __init__(self, block: AutoregressiveRQS, groups: int = 4) -> None:
        super().__init__()
        made = block.autoregressive_net
        degrees = made.initial_layer.degrees.cpu()
        order = torch.argsort(degrees, stable=True)
        self.stack = _HiddenStack(made, order)
        self.spline = block.spline
        self.params_per_feature = made.params_per_feature
        final = _masked(made.final_layer)[:, order]
        bias = made.final_layer.bias.detach().float()
        sorted_degrees = degrees[order]
        self.bounds = group_bounds(made.features, groups)
        self.prefix: list[int] = []
        weights, biases = [], []
        for start, stop in zip(self.bounds[:-1], self.bounds[1:], strict=True):
            prefix = int((sorted_degrees <= stop - 1).sum())  # feature f (degree f + 1) reads degrees <= f
            rows = _param_major_rows(range(start, stop), self.params_per_feature)
            if final[rows][:, prefix:].abs().sum() != 0:
                raise ValueError("MADE output mask is not block lower-triangular in degree order")
            self.prefix.append(prefix)
            weights.append(nn.Parameter(final[rows][:, :prefix].contiguous(), requires_grad=False))
            biases.append(nn.Parameter(bias[rows].contiguous(), requires_grad=False))
        self.w_out = nn.ParameterList(weights)
        self.b_out = nn.ParameterList(biases)

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        return self.sample_given_context_term(z, self.stack.context_term(c))

    def context_weight(self) -> Tensor:
        """The context layer's weight (H, C), hidden units in this block's order: with :attr:`context_bias`,
        ``relu(c W^T + b)`` is the context term (callers may precompute parts of ``c W^T`` once)."""
        return self.stack.w_c

    @property
    def context_bias(self) -> Tensor:
        return self.stack.b_c

    def sample_given_context_term(self, z: Tensor, context_term: Tensor) -> Tensor:
        """``forward`` with the context term ``relu(W_c c + b_c)`` (B, H) already computed."""
        h = self.stack.hidden(F.linear(z, self.stack.w_in, self.stack.b_in) + context_term)
        if self._equal_groups and not is_recording():
            return self._sample_in_group_slabs(z, h)
        pieces = [
            F.linear(h[:, :prefix], w, b).reshape(-1, self.params_per_feature, stop - start)
            for prefix, w, b, start, stop in zip(
                self.prefix, self.w_out, self.b_out, self.bounds[:-1], self.bounds[1:], strict=True
            )
        ]
        return self._spline_inverse(z, torch.cat(pieces, dim=2) if len(pieces) > 1 else pieces[0])

    def _spline_inverse(self, z: Tensor, params: Tensor) -> Tensor:
        s = self.spline
        return rqs_inverse_param_major(z, params, s.tail_bound, s.min_bin_width, s.min_bin_height, s.min_derivative)

    @property
    def _equal_groups(self) -> bool:
        widths = {stop - start for start, stop in zip(self.bounds[:-1], self.bounds[1:], strict=True)}
        return len(self.prefix) > 1 and len(widths) == 1

    def _sample_in_group_slabs(self, z: Tensor, h: Tensor) -> Tensor:
        """Eager only, G equal groups of width W: each group's parameters go straight into its slab of one
        (G, B, P W) buffer, and the spline runs once on the (G B, P, W) view, so nothing joins the groups'
        parameters (on the paper DS3 student the join was 13 % of the time)."""
        groups, rows, width = len(self.prefix), h.shape[0], self.bounds[1]
        buffer = h.new_empty(groups, rows, self.params_per_feature * width)
        for g, (prefix, w, b) in enumerate(zip(self.prefix, self.w_out, self.b_out, strict=True)):
            torch.addmm(b, h[:, :prefix], w.t(), out=buffer[g])
        params = buffer.view(groups * rows, self.params_per_feature, width)
        z_slabs = z.reshape(rows, groups, width).transpose(0, 1).reshape(groups * rows, width)
        x = self._spline_inverse(z_slabs, params)
        return x.reshape(groups, rows, width).transpose(0, 1).reshape(rows, groups * width)


class FastMAFInverse(nn.Module):
    """``x = RQS^-1`` direction (sampling) of a trained MAF :class:`AutoregressiveRQS` (see the module doc).

    Pass k adds feature k - 1's column of the first layer to the running pre-activation (a rank-1 update)
    instead of multiplying all k final features again: a few ops per pass, which is what batch 1 pays for.
    """

    def __init__(self, block: AutoregressiveRQS) -> None:
        super().__init__()
        made = block.autoregressive_net
        self.features = made.features
        self.params_per_feature = made.params_per_feature
        self.spline: SplineConfig = block.spline
        self.stack = _HiddenStack(made, torch.arange(made.initial_layer.out_features))
        final = _masked(made.final_layer)
        bias = made.final_layer.bias.detach().float()
        rows = [_param_major_rows(range(f, f + 1), self.params_per_feature) for f in range(self.features)]
        self.w_out = nn.ParameterList(nn.Parameter(final[r].contiguous(), requires_grad=False) for r in rows)
        self.b_out = nn.ParameterList(nn.Parameter(bias[r].contiguous(), requires_grad=False) for r in rows)
        columns = self.stack.w_in.detach().t()
        self.w_in_columns = nn.ParameterList(
            nn.Parameter(columns[f].contiguous(), requires_grad=False) for f in range(self.features)
        )

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        s = self.spline
        pre = self.stack.context_term(c) + self.stack.b_in
        done: list[Tensor] = []
        for k, (w, b, z_k) in enumerate(zip(self.w_out, self.b_out, torch.split(z, 1, dim=1), strict=True)):
            if k > 0:
                pre = pre + done[-1] * self.w_in_columns[k - 1]
            params = F.linear(self.stack.hidden(pre), w, b).unsqueeze(2)  # (B, 3K - 1, 1)
            done.append(
                rqs_inverse_few_ops(z_k, params, s.tail_bound, s.min_bin_width, s.min_bin_height, s.min_derivative)
            )
        return torch.cat(done, dim=1)
