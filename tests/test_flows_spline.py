"""The rational-quadratic spline: round trips, tails, knots, log-dets, extremes, zuko cross-check, export."""

import math

import pytest
import torch
import zuko.transforms

from caloflow.flows import SplineConfig, rqs_forward, rqs_inverse, rqs_knots

B = 14.0
K = 8
P = 3 * K - 1


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(11)


def _params(generator: torch.Generator, n: int, scale: float, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(n, P, generator=generator, dtype=dtype) * scale


def _probe_points(params: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per row: random points in and beyond [-B, B], every x knot, and the bounds."""
    x_knots, _, _ = rqs_knots(params)
    rows = params.shape[0]
    random = torch.randn(rows, 16, generator=generator, dtype=params.dtype) * 9
    bounds = torch.tensor([-B, B, -B - 1e-3, B + 1e-3, -30.0, 30.0], dtype=params.dtype).expand(rows, 6)
    return torch.cat([random, x_knots, bounds], dim=1)


def test_knots_span_bounds_with_unit_boundary_slopes(generator: torch.Generator) -> None:
    params = _params(generator, 64, 3.0, torch.float32)
    x_knots, y_knots, derivatives = rqs_knots(params)
    for knots in (x_knots, y_knots):
        assert (knots[:, 0] == -B).all() and (knots[:, -1] == B).all()
        assert (knots.diff(dim=1) >= 2 * B * 1e-6 * 0.5).all()
    assert (derivatives[:, [0, -1]] == 1.0).all()
    assert (derivatives[:, 1:-1] > 0).all()


def test_zero_logits_give_uniform_bins_and_softplus_derivatives() -> None:
    x_knots, y_knots, derivatives = rqs_knots(torch.zeros(1, P, dtype=torch.float64))
    uniform = torch.linspace(-B, B, K + 1, dtype=torch.float64)
    torch.testing.assert_close(x_knots[0], uniform)
    torch.testing.assert_close(y_knots[0], uniform)
    torch.testing.assert_close(derivatives[0, 1:-1], torch.full((K - 1,), 1e-6 + math.log(2.0), dtype=torch.float64))


def test_width_and_height_logits_are_shift_invariant(generator: torch.Generator) -> None:
    params = _params(generator, 8, 1.0, torch.float64)
    shifted = params.clone()
    shifted[:, : 2 * K] += 5.0
    for a, b in zip(rqs_knots(params), rqs_knots(shifted), strict=True):
        torch.testing.assert_close(a, b)


def test_round_trip_float64_including_knots_bounds_and_tails(generator: torch.Generator) -> None:
    params = _params(generator, 256, 1.0, torch.float64)
    x = _probe_points(params, generator)
    y, ladj = rqs_forward(x, params[:, None, :].expand(-1, x.shape[1], -1))
    back, ladj_inverse = rqs_inverse(y, params[:, None, :].expand(-1, x.shape[1], -1))
    torch.testing.assert_close(back, x, rtol=0, atol=1e-9)
    torch.testing.assert_close(ladj + ladj_inverse, torch.zeros_like(ladj), rtol=0, atol=1e-9)


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_float32_inverse_is_accurate_to_its_conditioning(generator: torch.Generator, scale: float) -> None:
    """Within a few float32 ulps of B times dx/dy of the float64 inverse, also where xi is near 1 in flat
    bins (nflows' single root formula loses ~1e-3 there)."""
    params = _params(generator, 20_000, scale, torch.float32)
    y = torch.rand(20_000, generator=generator) * 2 * B - B
    x, ladj = rqs_inverse(y, params)
    exact, _ = rqs_inverse(y.double(), params.double())
    ulps = (x.double() - exact).abs() / (torch.finfo(torch.float32).eps * B * (1.0 + ladj.double().exp()))
    assert ulps.max() < 16


def test_knots_map_to_knots(generator: torch.Generator) -> None:
    params = _params(generator, 32, 1.5, torch.float64)
    x_knots, y_knots, _ = rqs_knots(params)
    y, _ = rqs_forward(x_knots, params[:, None, :].expand(-1, K + 1, -1))
    torch.testing.assert_close(y, y_knots, rtol=0, atol=1e-12)


def test_identity_with_zero_ladj_outside_the_bound(generator: torch.Generator) -> None:
    params = _params(generator, 4, 2.0, torch.float32)
    x = torch.tensor([-1e4, -B - 1e-3, B + 1e-3, 50.0])
    for function in (rqs_forward, rqs_inverse):
        out, ladj = function(x, params)
        assert torch.equal(out, x) and torch.equal(ladj, torch.zeros(4))


def test_ladj_matches_autograd(generator: torch.Generator) -> None:
    params = _params(generator, 128, 1.0, torch.float64)
    for function in (rqs_forward, rqs_inverse):
        v = (torch.rand(128, generator=generator, dtype=torch.float64) * 32 - 16).requires_grad_()
        out, ladj = function(v, params)
        (derivative,) = torch.autograd.grad(out.sum(), v)
        torch.testing.assert_close(ladj, derivative.log(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("scale", [30.0, 1e3, 1e5])
def test_extreme_parameters_give_finite_results(generator: torch.Generator, scale: float) -> None:
    params = _params(generator, 4096, scale, torch.float32)
    v = torch.rand(4096, generator=generator) * 40 - 20
    for function in (rqs_forward, rqs_inverse):
        out, ladj = function(v, params)
        assert torch.isfinite(out).all() and torch.isfinite(ladj).all()
        inside = v.abs() <= B
        assert (out[inside].abs() <= B).all()


def _zuko_spline(params: torch.Tensor) -> zuko.transforms.MonotonicRQSTransform:
    """zuko's spline on exactly our knots (its own parametrisation differs: soft-clip + exp derivatives)."""
    spline = zuko.transforms.MonotonicRQSTransform(
        params[..., :K], params[..., K : 2 * K], params[..., 2 * K :], bound=B
    )
    spline.horizontal, spline.vertical, spline.derivatives = rqs_knots(params)
    return spline


def test_matches_zuko_on_the_same_knots(generator: torch.Generator) -> None:
    params = _params(generator, 512, 1.5, torch.float64)
    x = torch.rand(512, generator=generator, dtype=torch.float64) * 2 * B - B
    reference = _zuko_spline(params)
    y_ref, ladj_ref = reference.call_and_ladj(x)
    y, ladj = rqs_forward(x, params)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(ladj, ladj_ref, rtol=0, atol=1e-9)
    x_back, _ = rqs_inverse(y_ref, params)
    torch.testing.assert_close(x_back, reference.inv(y_ref), rtol=0, atol=1e-9)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_scripted_functions_match_eager(generator: torch.Generator) -> None:
    params = _params(generator, 64, 1.0, torch.float32)
    x = torch.randn(64, generator=generator) * 10
    config = SplineConfig()
    args = (config.tail_bound, config.min_bin_width, config.min_bin_height, config.min_derivative)
    for function in (rqs_forward, rqs_inverse):
        scripted = torch.jit.script(function)
        for a, b in zip(scripted(x, params, *args), function(x, params, *args), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_config_validates_and_counts_parameters() -> None:
    assert SplineConfig().params_per_feature == P
    with pytest.raises(ValueError, match="num_bins"):
        SplineConfig(num_bins=8, min_bin_width=0.2)
