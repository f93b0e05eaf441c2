"""Monotone rational-quadratic spline (RQS) with linear tails, as nflows'
``unconstrained_rational_quadratic_spline(tails='linear')`` computes it (method note, section 3.1).

Per feature the spline takes ``P = 3K - 1`` unconstrained parameters laid out contiguously as
``[K width logits, K height logits, K - 1 interior derivative logits]``:

* widths ``w = m + (1 - m K) softmax(theta_w)`` (heights likewise), knots spanning ``[-B, B]`` in x and y;
* interior derivatives ``d = min_derivative + softplus(theta_d)``, boundary derivatives exactly 1;
* outside ``[-B, B]`` the map is the identity with log-det 0.

Everything is computed on static shapes: the bin is found by summing comparisons against the interior
knots, inputs are clamped into ``[-B, B]`` and the tails are selected with ``torch.where``. There are no
boolean-mask gathers, no data-dependent shapes and no host synchronisations, so the functions can be
scripted, traced, exported and captured in CUDA graphs. The functions are ``torch.jit.script``-able.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["SplineConfig", "rqs_forward", "rqs_inverse", "rqs_knots"]


@dataclass(frozen=True)
class SplineConfig:
    """Settings of every RQS in a flow; the defaults are CaloFlow's (K = 8, B = 14, minima 1e-6)."""

    num_bins: int = 8
    tail_bound: float = 14.0
    min_bin_width: float = 1e-6
    min_bin_height: float = 1e-6
    min_derivative: float = 1e-6

    def __post_init__(self) -> None:
        if self.num_bins < 1 or self.tail_bound <= 0:
            raise ValueError(f"need num_bins >= 1 and tail_bound > 0, got {self}")
        if self.min_bin_width * self.num_bins >= 1 or self.min_bin_height * self.num_bins >= 1:
            raise ValueError(f"minimal bin width/height times num_bins must be below 1, got {self}")

    @property
    def params_per_feature(self) -> int:
        """``P = 3K - 1``: K width, K height and K - 1 interior derivative logits."""
        return 3 * self.num_bins - 1


def _cumulative_knots(logits: Tensor, bound: float, minimum: float) -> Tensor:
    """Knot positions (..., K + 1) from (..., K) logits; the end knots are exactly -B and B."""
    num_bins = logits.shape[-1]
    sizes = minimum + (1.0 - minimum * num_bins) * torch.softmax(logits, dim=-1)
    inner = 2.0 * bound * torch.cumsum(sizes, dim=-1)[..., :-1] - bound
    edge = torch.ones_like(inner[..., :1]) * bound
    return torch.cat([-edge, inner, edge], dim=-1)


def rqs_knots(
    params: Tensor,
    bound: float = 14.0,
    min_bin_width: float = 1e-6,
    min_bin_height: float = 1e-6,
    min_derivative: float = 1e-6,
) -> tuple[Tensor, Tensor, Tensor]:
    """Knot x positions, y positions and derivatives, each (..., K + 1), from (..., 3K - 1) parameters."""
    num_bins = (params.shape[-1] + 1) // 3
    x_knots = _cumulative_knots(params[..., :num_bins], bound, min_bin_width)
    y_knots = _cumulative_knots(params[..., num_bins : 2 * num_bins], bound, min_bin_height)
    inner = min_derivative + F.softplus(params[..., 2 * num_bins :])
    one = torch.ones_like(inner[..., :1])
    return x_knots, y_knots, torch.cat([one, inner, one], dim=-1)


def _bin_index(knots: Tensor, value: Tensor) -> Tensor:
    """Index in [0, K - 1] of the bin holding ``value``: the number of interior knots <= value."""
    interior = knots[..., 1:-1]
    return (value.unsqueeze(-1) >= interior).to(torch.int64).sum(dim=-1, keepdim=True)


def _take(table: Tensor, index: Tensor) -> Tensor:
    return torch.gather(table, -1, index).squeeze(-1)


def _bin_parameters(
    x_knots: Tensor, y_knots: Tensor, derivatives: Tensor, index: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Left x, width, left y, height, left and right derivative of the selected bin."""
    right = index + 1
    x0 = _take(x_knots, index)
    y0 = _take(y_knots, index)
    width = (_take(x_knots, right) - x0).clamp_min(1e-30)
    height = _take(y_knots, right) - y0
    return x0, width, y0, height, _take(derivatives, index), _take(derivatives, right)


def _log_derivative(xi: Tensor, slope: Tensor, d0: Tensor, d1: Tensor) -> Tensor:
    """log dy/dx of the rational-quadratic segment at relative position ``xi``."""
    xi_1m = xi * (1.0 - xi)
    denominator = slope + (d0 + d1 - 2.0 * slope) * xi_1m
    numerator = slope.square() * (d1 * xi.square() + 2.0 * slope * xi_1m + d0 * (1.0 - xi).square())
    return torch.log(numerator) - 2.0 * torch.log(denominator)


def _stable_root(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """The spline's root of ``a xi^2 + b xi + c = 0``, clamped to [0, 1], free of cancellation.

    nflows' ``2c / (-b - sqrt(disc))`` cancels catastrophically when b < 0 (flat bin, xi near 1: float32
    errors of 1e-3 were seen); there the same root is taken as ``(-b + sqrt(disc)) / 2a``. The unused
    branch gets a safe denominator, so neither value nor gradient can become NaN.
    """
    sqrt_disc = torch.sqrt((b.square() - 4.0 * a * c).clamp_min(0.0))
    c_form = b >= 0.0
    den_c = torch.where(c_form, -b - sqrt_disc, -torch.ones_like(b)).clamp_max(-1e-30)
    den_a = torch.where(c_form, torch.ones_like(a), 2.0 * a).clamp_min(1e-30)
    return torch.where(c_form, 2.0 * c / den_c, (sqrt_disc - b) / den_a).clamp(0.0, 1.0)


def rqs_forward(
    x: Tensor,
    params: Tensor,
    bound: float = 14.0,
    min_bin_width: float = 1e-6,
    min_bin_height: float = 1e-6,
    min_derivative: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """``y = RQS(x)`` and the per-element ``log|dy/dx|``; ``x`` is (...), ``params`` (..., 3K - 1)."""
    x_knots, y_knots, derivatives = rqs_knots(params, bound, min_bin_width, min_bin_height, min_derivative)
    inside = (x >= -bound) & (x <= bound)
    x_in = x.clamp(-bound, bound)
    x0, width, y0, height, d0, d1 = _bin_parameters(x_knots, y_knots, derivatives, _bin_index(x_knots, x_in))
    slope = height / width
    xi = ((x_in - x0) / width).clamp(0.0, 1.0)
    xi_1m = xi * (1.0 - xi)
    numerator = height * (slope * xi.square() + d0 * xi_1m)
    y = y0 + numerator / (slope + (d0 + d1 - 2.0 * slope) * xi_1m)
    ladj = _log_derivative(xi, slope, d0, d1)
    return torch.where(inside, y, x), torch.where(inside, ladj, torch.zeros_like(ladj))


def rqs_inverse(
    y: Tensor,
    params: Tensor,
    bound: float = 14.0,
    min_bin_width: float = 1e-6,
    min_bin_height: float = 1e-6,
    min_derivative: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    """``x = RQS^-1(y)`` and the per-element ``log|dx/dy|``; shapes as in :func:`rqs_forward`.

    The relative position solves ``a xi^2 + b xi + c = 0`` as nflows does, but with the discriminant
    clamped at 0, a cancellation-free choice of root formula and ``xi`` clamped to [0, 1].
    """
    x_knots, y_knots, derivatives = rqs_knots(params, bound, min_bin_width, min_bin_height, min_derivative)
    inside = (y >= -bound) & (y <= bound)
    y_in = y.clamp(-bound, bound)
    x0, width, y0, height, d0, d1 = _bin_parameters(x_knots, y_knots, derivatives, _bin_index(y_knots, y_in))
    slope = height / width
    delta = y_in - y0
    curvature = d0 + d1 - 2.0 * slope
    a = delta * curvature + height * (slope - d0)
    b = height * d0 - delta * curvature
    c = -slope * delta
    xi = _stable_root(a, b, c)
    x = x0 + xi * width
    ladj = -_log_derivative(xi, slope, d0, d1)
    return torch.where(inside, x, y), torch.where(inside, ladj, torch.zeros_like(ladj))
