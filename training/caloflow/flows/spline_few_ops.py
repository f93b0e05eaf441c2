"""The parameter-major RQS inverse of :mod:`caloflow.flows.spline_pm` written in as few ops as possible,
for flow-I's and the teacher's one-feature passes (:class:`~caloflow.flows.blocked.FastMAFInverse`).

At batch 1 an op costs more than its arithmetic: an ONNX Runtime node costs about a microsecond whatever
its size, and flow-I inverts 30 one-feature splines in sequence (6 blocks x 5 features). Here widths and
heights share one max, exp, cumsum and gather ((B, 2, K, D) tensors), and the two derivatives of the
selected bin come from one gather of the padded derivative row (softplus on all K - 1 of them): about 60
ops per call instead of 110. On wide tensors that trade is wrong - ONNX Runtime at (256, 368): 46 ms per
call here against 33 ms for :func:`~caloflow.flows.spline_pm.rqs_inverse_param_major` - so the student's
one-pass blocks keep that one. Same function (float64 agrees to 1e-12); float rounding differs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["rqs_inverse_few_ops"]


def _root(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """:func:`caloflow.flows.spline._stable_root` (same branches and clamps), in fewer ops: no gradient here."""
    sqrt_disc = torch.sqrt((b * b - 4.0 * a * c).clamp_min(0.0))
    c_form = b >= 0.0
    numerator = torch.where(c_form, 2.0 * c, sqrt_disc - b)
    denominator = torch.where(c_form, (-b - sqrt_disc).clamp_max(-1e-30), (2.0 * a).clamp_min(1e-30))
    return (numerator / denominator).clamp(0.0, 1.0)


def rqs_inverse_few_ops(
    y: Tensor,
    params: Tensor,
    bound: float = 14.0,
    min_bin_width: float = 1e-6,
    min_bin_height: float = 1e-6,
    min_derivative: float = 1e-6,
    minimum: Tensor | None = None,
) -> Tensor:
    """``x = RQS^-1(y)`` for ``y`` (B, D) and parameter-major ``params`` (B, 3K - 1, D); identity outside
    ``[-bound, bound]``. ``minimum``: ``[min_bin_width, min_bin_height]`` as a tensor of ``params``' dtype, for
    callers tracing this inside a scan body, where the tensor constant built from the floats cannot be lifted."""
    num_bins = (params.shape[1] + 1) // 3
    dtype, device = params.dtype, params.device
    # Knot k of widths (row 0) and heights (row 1): -B + step k + scale cumsum(exp)_k, k = 0 .. K.
    if minimum is None:
        minimum = torch.tensor([min_bin_width, min_bin_height], dtype=dtype, device=device)
    minimum = minimum.reshape(1, 2, 1, 1)
    step = 2.0 * bound * minimum
    logits = params[:, : 2 * num_bins].reshape(params.shape[0], 2, num_bins, -1)  # (B, 2, K, D)
    e = torch.exp(logits - logits.amax(dim=2, keepdim=True))
    cumulative = torch.cumsum(e, dim=2)
    scale = (2.0 * bound) * (1.0 - minimum * num_bins) / cumulative[:, :, -1:]  # (B, 2, 1, D)

    y_in = y.clamp(-bound, bound)
    k = torch.arange(1, num_bins, dtype=dtype, device=device).reshape(1, -1, 1)
    interior = cumulative[:, 1, :-1] * scale[:, 1] + (k * step[:, 1] - bound)  # height knots 1 .. K - 1
    index = (y_in.unsqueeze(1) >= interior).sum(dim=1, keepdim=True)  # (B, 1, D): the bin, 0 .. K - 1

    both = index.unsqueeze(1).expand(-1, 2, -1, -1)
    size = step + torch.gather(e, 2, both) * scale  # (B, 2, 1, D): width, height of the bin
    right = torch.gather(cumulative, 2, both) * scale + ((both + 1).to(dtype) * step - bound)
    left = right - size
    width, height = size.clamp_min(1e-30).squeeze(2).unbind(1)
    x0, y0 = left.squeeze(2).unbind(1)

    inner = min_derivative + F.softplus(params[:, 2 * num_bins :])  # (B, K - 1, D); end knots' derivative is 1
    derivatives = F.pad(inner, (0, 0, 1, 1), value=1.0)
    d0, d1 = torch.gather(derivatives, 1, torch.cat([index, index + 1], dim=1)).unbind(1)

    slope = height / width
    delta = y_in - y0
    curvature = d0 + d1 - 2.0 * slope
    a = delta * curvature + height * (slope - d0)
    b = height * d0 - delta * curvature
    x = x0 + _root(a, b, -slope * delta) * width
    return torch.where(y_in == y, x, y)
