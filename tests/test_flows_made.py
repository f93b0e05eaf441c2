"""MADE: autoregressive structure, degree coverage, mask folding, and the published parameter counts."""

import pytest
import torch

from caloflow.flows import (
    MADE,
    IncompleteDegreesWarning,
    MaskedLinear,
    build_flow1,
    build_student,
    build_teacher,
    fold_masks,
)
from caloflow.flows.made import hidden_degrees

PHOTON_LAYERS = (8, 160, 190, 5, 5)
PION_LAYERS = (8, 100, 100, 5, 150, 160, 10)


def _made(features: int = 6, hidden: int = 9, **options: object) -> MADE:
    torch.manual_seed(3)
    return MADE(features, hidden, context=2, params_per_feature=3, n_hidden_blocks=2, **options).double()  # type: ignore[arg-type]


def _dependency(made: MADE) -> torch.Tensor:
    """(D, D) bool: output feature i depends on input j, from autograd Jacobians at random points."""
    x = torch.randn(16, made.features, dtype=torch.float64)
    c = torch.randn(16, 2, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: made(v, c), x)  # (B, D, P, B, D)
    return jacobian.abs().sum(dim=(0, 2, 3)) > 0


def _connectivity(made: MADE) -> torch.Tensor:
    """(D, D) bool from the masks alone: a path exists from input j to output feature i."""
    layers = [made.initial_layer, *(block.linear for block in made.blocks), made.final_layer]
    paths = layers[0].mask
    for layer in layers[1:]:
        paths = layer.mask @ paths
    return paths.view(made.features, made.params_per_feature, -1).sum(dim=1) > 0


def test_output_depends_exactly_on_earlier_inputs() -> None:
    made = _made(features=6, hidden=16).eval()
    strictly_lower = torch.ones(6, 6).tril(-1).bool()
    assert torch.equal(_connectivity(made), strictly_lower)
    dependency = _dependency(made)
    assert not (dependency & ~strictly_lower).any()  # never on itself or later inputs
    assert torch.equal(dependency, strictly_lower)  # and on all earlier ones


def test_nflows_degrees_and_contiguous_output_layout() -> None:
    assert hidden_degrees(7, 4).tolist() == [1, 2, 3, 1, 2, 3, 1]
    assert hidden_degrees(3, 1).tolist() == [0, 0, 0]
    made = _made(features=4, hidden=5)
    assert made.final_layer.degrees.tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert made(torch.zeros(7, 4, dtype=torch.float64), torch.zeros(7, 2, dtype=torch.float64)).shape == (
        7,
        4,
        3,
    )


def test_too_few_hidden_units_are_refused() -> None:
    with pytest.raises(ValueError, match=r"covers degrees 1\.\.4 only"):
        _made(features=7, hidden=4)
    with pytest.warns(IncompleteDegreesWarning):
        made = _made(features=7, hidden=4, allow_incomplete_degrees=True)
    missing = torch.ones(7, 7).tril(-1).bool() & ~_connectivity(made)
    # outputs of degree d >= H + 2 lose the inputs of degree > H
    assert missing.nonzero().tolist() == [[i, j] for i in range(5, 7) for j in range(4, i)]


def test_folded_masks_skip_the_multiply_only_without_gradients() -> None:
    made = _made().eval()
    x, c = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    expected = made(x, c).detach()
    fold_masks(made)
    made.requires_grad_(False)
    torch.testing.assert_close(made(x, c), expected, rtol=0, atol=0)
    layer = made.final_layer
    with torch.no_grad():
        layer.weight[0] = 5.0  # feature 1 sees no hidden unit: visible only if the multiply is skipped
    assert not torch.equal(made(x, c), expected)
    made.requires_grad_(True)
    torch.testing.assert_close(made(x, c), expected, rtol=0, atol=0)


def test_masked_weights_get_zero_gradient_and_stay_zero_after_folding() -> None:
    made = _made()
    fold_masks(made)
    optimiser = torch.optim.Adam(made.parameters(), lr=1e-2)
    for _ in range(3):
        optimiser.zero_grad()
        made(torch.randn(8, 6, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)).square().sum().backward()
        optimiser.step()
    for layer in made.modules():
        if isinstance(layer, MaskedLinear):
            assert layer.weight.grad is not None
            assert (layer.weight.grad[layer.mask == 0] == 0).all()
            assert (layer.weight[layer.mask == 0] == 0).all()


def test_loading_a_state_dict_unfolds() -> None:
    made, other = _made(), _made()
    fold_masks(made)
    made.load_state_dict(other.state_dict())
    assert not made.final_layer.mask_folded


def _count(flow: torch.nn.Module) -> int:
    return sum(p.numel() for p in flow.parameters())


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: build_flow1(5, device="meta"), 97_842),
        (lambda: build_flow1(7, device="meta"), 116_550),
        (lambda: build_teacher(PHOTON_LAYERS, 6, 378, device="meta"), 27_945_968),
        (lambda: build_student(build_teacher(PHOTON_LAYERS, 6, 378, device="meta"), 736), 56_457_088),
        (lambda: build_teacher(PION_LAYERS, 8, 533, device="meta"), 56_962_776),
        (lambda: build_student(build_teacher(PION_LAYERS, 8, 533, device="meta"), 532), 56_851_832),
    ],
    ids=[
        "photon-flow1",
        "pion-flow1",
        "photon-teacher",
        "photon-student",
        "pion-teacher",
        "pion-student-532",
    ],
)
def test_published_parameter_counts(build, expected: int) -> None:
    assert _count(build()) == expected


def test_published_pion_student_is_refused_but_countable() -> None:
    teacher = build_teacher(PION_LAYERS, 8, 533, device="meta")
    with pytest.raises(ValueError, match="hidden >= 532"):
        build_student(teacher, 500)
    with pytest.warns(IncompleteDegreesWarning):
        student = build_student(teacher, 500, allow_incomplete_degrees=True, device="meta")
    assert _count(student) == 53_310_072
