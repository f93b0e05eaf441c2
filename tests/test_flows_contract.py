"""The flow contract, parametrised over flow-I, a small MAF teacher and the IAF student built from it;
plus MADE-call counts, trace ordering, permutations, seeding, export and the public API."""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

import caloflow.flows
from caloflow.flows import (
    Flow,
    MaskedLinear,
    Permutation,
    build_flow1,
    build_student,
    build_teacher,
    fold_masks,
    layerwise_inversion,
    layerwise_random_permutation,
)

LAYERS = (3, 4, 2)
D = sum(LAYERS)


@dataclass
class Case:
    flow: Flow
    context: int
    iaf: bool

    def data(self, batch: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, self.flow.features, generator=generator, dtype=dtype) * 4
        x[0, 0], x[1, -1], x[2, 0] = 13.8, -13.8, 15.0  # logit range edges and a tail point
        c = torch.randn(batch, self.context, generator=generator, dtype=dtype)
        return x, c


def _teacher() -> Flow:
    return build_teacher(LAYERS, context=3, hidden=12, seed=5)


CASES: dict[str, Callable[[], Case]] = {
    "flow1": lambda: Case(build_flow1(5, seed=4), 1, iaf=False),
    "teacher": lambda: Case(_teacher(), 3, iaf=False),
    "student": lambda: Case(build_student(_teacher(), hidden=16, seed=6), 3, iaf=True),
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    built = CASES[request.param]()
    built.flow.eval()
    return built


def test_log_prob_is_finite_and_agrees_with_the_sampling_pass(case: Case) -> None:
    x, c = case.data(16)
    assert torch.isfinite(case.flow.log_prob(x, c)).all()
    noise = torch.randn(16, case.flow.features, generator=torch.Generator().manual_seed(1))
    sample, log_prob = case.flow.sample_and_log_prob(noise, c)
    torch.testing.assert_close(case.flow.log_prob(sample, c), log_prob, rtol=0, atol=1e-4)


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-9), (torch.float32, 1e-3)])
def test_inverse_of_forward_is_identity_both_ways(case: Case, dtype: torch.dtype, atol: float) -> None:
    """Exact in float64; float32 is limited by conditioning (|dx/dz| reaches ~200 in the random teacher)."""
    flow = case.flow.to(dtype)
    x, c = case.data(32, dtype)
    z = flow.forward_trace(x, c).out
    torch.testing.assert_close(flow.inverse_trace(z, c).out, x, rtol=0, atol=atol)
    noise = torch.randn(32, flow.features, generator=torch.Generator().manual_seed(2), dtype=dtype)
    torch.testing.assert_close(flow.forward_trace(flow.sample(noise, c), c).out, noise, rtol=0, atol=atol)


def _jacobian_log_dets(function: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor) -> torch.Tensor:
    jacobian = torch.autograd.functional.jacobian(function, v, vectorize=True)  # (B, D, B, D)
    per_sample = torch.stack([jacobian[b, :, b, :] for b in range(v.shape[0])])
    return torch.linalg.slogdet(per_sample).logabsdet


def test_ladj_equals_autograd_jacobian_log_det(case: Case) -> None:
    flow = case.flow.double()
    x, c = case.data(3, torch.float64)
    forward = flow.forward_trace(x, c)
    expected = _jacobian_log_dets(lambda v: flow.forward_trace(v, c).out, x)
    torch.testing.assert_close(forward.ladj, expected, rtol=0, atol=1e-8)
    inverse = flow.inverse_trace(forward.out, c)
    expected = _jacobian_log_dets(lambda v: flow.inverse_trace(v, c).out, forward.out)
    torch.testing.assert_close(inverse.ladj, expected, rtol=0, atol=1e-8)


def test_gradients_reach_every_parameter_but_not_masked_weights(case: Case) -> None:
    case.flow.train()
    x, c = case.data(64)
    # the student is trained on its samples, the MAFs on their log-likelihood
    loss = case.flow.sample(x / 4, c).square().mean() if case.iaf else -case.flow.log_prob(x, c).mean()
    loss.backward()
    for name, parameter in case.flow.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    for layer in case.flow.modules():
        if isinstance(layer, MaskedLinear):
            assert layer.weight.grad is not None and (layer.weight.grad[layer.mask == 0] == 0).all()


def _count_made_calls(flow: Flow) -> tuple[list[int], list[list[torch.Tensor]]]:
    calls, outputs = [0] * flow.n_blocks, [[] for _ in range(flow.n_blocks)]
    for i in range(flow.n_blocks):

        def hook(_module: torch.nn.Module, _inputs: object, output: torch.Tensor, i: int = i) -> None:
            calls[i] += 1
            outputs[i].append(output)

        flow.block(i).autoregressive_net.register_forward_hook(hook)
    return calls, outputs


def test_fast_direction_is_one_made_pass_per_block_and_returns_its_output(case: Case) -> None:
    x, c = case.data(4)
    calls, outputs = _count_made_calls(case.flow)
    trace = case.flow.inverse_trace(x, c) if case.iaf else case.flow.forward_trace(x, c)
    assert calls == [1] * case.flow.n_blocks
    assert all(params is made[0] for params, made in zip(trace.params, outputs, strict=True))


def test_slow_direction_takes_d_passes_and_returns_the_last(case: Case) -> None:
    x, c = case.data(4)
    calls, outputs = _count_made_calls(case.flow)
    trace = case.flow.forward_trace(x, c) if case.iaf else case.flow.inverse_trace(x, c)
    assert calls == [case.flow.features] * case.flow.n_blocks
    assert all(params is made[-1] for params, made in zip(trace.params, outputs, strict=True))


def test_traces_are_indexed_by_block_in_both_directions(case: Case) -> None:
    x, c = case.data(8)
    forward = case.flow.forward_trace(x, c)
    inverse = case.flow.inverse_trace(forward.out, c)
    n = case.flow.n_blocks
    assert len(forward.intermediates) == len(inverse.intermediates) == n + 1
    assert len(forward.params) == len(inverse.params) == n
    assert forward.intermediates[0] is x
    for a, b in zip(forward.intermediates + forward.params, inverse.intermediates + inverse.params, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    last = case.flow.permutation(n - 1)
    assert torch.equal(forward.out, forward.intermediates[n] if last is None else last(forward.intermediates[n]))


def test_generation_is_a_pure_function_of_noise_and_condition(case: Case) -> None:
    _, c = case.data(8)
    noise = torch.randn(8, case.flow.features)
    assert torch.equal(case.flow.sample(noise, c), case.flow.sample(noise.clone(), c.clone()))


def test_folding_masks_keeps_inference_outputs(case: Case) -> None:
    x, c = case.data(8)
    with torch.no_grad():
        expected = case.flow.log_prob(x, c), case.flow.sample(x / 4, c)
        fold_masks(case.flow)
        torch.testing.assert_close(case.flow.log_prob(x, c), expected[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(case.flow.sample(x / 4, c), expected[1], rtol=0, atol=1e-5)


def test_teacher_layout_and_student_shares_its_permutations() -> None:
    teacher = _teacher()
    student = build_student(teacher, hidden=16)
    assert teacher.n_blocks == student.n_blocks == 8 and len(teacher.permutations) == 7
    assert torch.equal(teacher.permutation(0).indices, layerwise_inversion(LAYERS).indices)
    for i in range(7):
        assert torch.equal(student.permutation(i).indices, teacher.permutation(i).indices)
    assert not teacher.block(0).inverse_autoregressive and student.block(0).inverse_autoregressive
    assert teacher.permutation(7) is None


def test_layerwise_permutations_keep_the_layer_blocks() -> None:
    assert layerwise_inversion(LAYERS).indices.tolist() == [2, 1, 0, 6, 5, 4, 3, 8, 7]
    permutation = layerwise_random_permutation(LAYERS, torch.Generator().manual_seed(0)).indices
    assert sorted(permutation[:3].tolist()) == [0, 1, 2] and sorted(permutation[3:7].tolist()) == [3, 4, 5, 6]
    assert sorted(permutation[7:].tolist()) == [7, 8]
    x = torch.randn(2, D)
    layer = Permutation(permutation)
    torch.testing.assert_close(layer.inverse(layer(x)), x, rtol=0, atol=0)


def test_permutations_are_saved_and_restored_with_the_state_dict() -> None:
    teacher, other = _teacher(), build_teacher(LAYERS, context=3, hidden=12, seed=99)
    assert not torch.equal(teacher.permutation(1).indices, other.permutation(1).indices)
    assert "permutations.1._permutation" in teacher.state_dict()
    other.load_state_dict(teacher.state_dict())
    x = torch.randn(2, D)
    torch.testing.assert_close(other.permutation(1).inverse(teacher.permutation(1)(x)), x, rtol=0, atol=0)


def test_builds_are_seeded_and_leave_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a, b = build_flow1(5, seed=3), build_flow1(5, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert not torch.equal(
        a.block(0).autoregressive_net.final_layer.weight,
        build_flow1(5, seed=4).block(0).autoregressive_net.final_layer.weight,
    )


def test_student_sampler_exports_with_a_dynamic_batch() -> None:
    """torch.export refuses data-dependent shapes and host syncs, so this pins the static-shape design."""
    student = build_student(_teacher(), hidden=16).eval()

    class Sampler(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.flow = student

        def forward(self, noise: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            return self.flow.sample(noise, c)

    batch = torch.export.Dim("batch")
    exported = torch.export.export(
        Sampler(), (torch.randn(4, D), torch.randn(4, 3)), dynamic_shapes=({0: batch}, {0: batch})
    )
    noise, c = torch.randn(7, D), torch.randn(7, 3)
    torch.testing.assert_close(exported.module()(noise, c), student.sample(noise, c), rtol=0, atol=1e-6)


def test_public_api_is_pinned() -> None:
    assert sorted(caloflow.flows.__all__) == sorted(
        [
            "MADE",
            "AutoregressiveRQS",
            "BlockOutput",
            "Flow",
            "IncompleteDegreesWarning",
            "MaskedLinear",
            "Permutation",
            "SplineConfig",
            "TraceOutput",
            "build_flow1",
            "build_student",
            "build_teacher",
            "fold_masks",
            "layerwise_inversion",
            "layerwise_random_permutation",
            "random_permutation",
            "rqs_forward",
            "rqs_inverse",
            "rqs_knots",
            "standard_normal_log_prob",
            "teacher_permutations",
        ]
    )
    assert all(hasattr(caloflow.flows, name) for name in caloflow.flows.__all__)
