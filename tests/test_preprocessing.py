"""Pre- and post-processing of section 2: round trips, empty layers, post-processing invariants."""

import math

import pytest
import torch

from caloflow import preprocessing as pp
from caloflow.data.datasets import DS1_PHOTON_GEOMETRY as PHOTON
from caloflow.data.datasets import DS1_PION_GEOMETRY as PION


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(7)


def _layer_energies(generator: torch.Generator, batch: int, n_layers: int) -> torch.Tensor:
    energies = torch.rand(batch, n_layers, generator=generator, dtype=torch.float64) * 3
    energies[::4, -2:] = 0.0  # empty trailing layers
    energies[1::4, 1] = 0.0  # an empty middle layer
    return energies


def test_unit_space_round_trip(generator: torch.Generator) -> None:
    energies = _layer_energies(generator, 64, 7)
    incident = energies.sum(1, keepdim=True) / (0.3 + 0.6 * torch.rand(64, 1, generator=generator, dtype=torch.float64))
    u = pp.energies_to_unit(energies, incident, u0_scale=6.93)
    assert torch.isfinite(u).all()
    assert ((u >= 0) & (u <= 1)).all()
    back = pp.unit_to_energies(u, incident, u0_scale=6.93)
    torch.testing.assert_close(back, energies, rtol=1e-12, atol=1e-12)


def test_empty_layers_give_no_nan() -> None:
    energies = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    incident = torch.tensor([[2.0], [2.0]])
    u = pp.energies_to_unit(energies, incident, u0_scale=2.42)
    assert torch.isfinite(u).all()
    assert u[0].tolist() == pytest.approx([1.0 / 4.84, 1.0, 0.0, 0.0, 0.0])
    x = pp.logit(u)
    assert torch.isfinite(x).all() and x.abs().max() <= 13.82


def test_last_layer_takes_the_remainder() -> None:
    u = torch.tensor([[0.5, 0.5, 0.5]])
    incident = torch.tensor([[4.0]])
    energies = pp.unit_to_energies(u, incident, u0_scale=2.0)
    assert energies.tolist() == [[2.0, 1.0, 1.0]]  # total 0.5 * 2 * 4 = 4, halved twice


def test_logit_round_trip() -> None:
    u = torch.linspace(0, 1, 101, dtype=torch.float64)
    torch.testing.assert_close(pp.inverse_logit(pp.logit(u)), u, rtol=0, atol=1e-12)
    assert pp.logit(torch.tensor([0.0, 1.0])).tolist() == pytest.approx([-13.8155, 13.8155], abs=1e-3)


def test_fit_u0_scale_rounds_up_with_margin() -> None:
    assert pp.fit_u0_scale(torch.tensor([0.5, 2.4, 1.0])) == 2.43
    with pytest.raises(ValueError, match="u0 scale"):
        pp.fit_u0_scale(torch.tensor([float("nan")]))


def test_labels_match_reference_examples() -> None:
    incident = torch.tensor([[1.0]])  # 100 GeV
    energies = torch.tensor([[1.0, 40.0]])
    labels = pp.flow2_labels(incident, energies)
    assert labels[0, 0].item() == pytest.approx(math.log10(3))
    assert labels[0, 1].item() == pytest.approx(-1.0, abs=1e-7)  # a 100 GeV layer gives -1
    assert labels[0, 2].item() == pytest.approx(math.log10(40) - 1, abs=1e-7)


@pytest.mark.parametrize("geometry", [PHOTON, PION], ids=["photon", "pion"])
def test_flow2_pre_and_post_processing_round_trip(geometry, generator: torch.Generator) -> None:
    sizes = geometry.layer_sizes
    showers = torch.rand(16, geometry.n_voxels, generator=generator, dtype=torch.float64) ** 4 * 1e-2
    showers[:, geometry.layer_slices[-1]] = 0.0  # an empty last layer
    noisy = pp.add_noise(showers, 1e-8, generator)
    membership = pp.layer_membership(sizes, dtype=torch.float64)
    voxel_layer = pp.voxel_layer_index(sizes)
    energies = noisy @ membership
    x = pp.flow2_inputs(noisy, energies, voxel_layer, pp.LOGIT_ALPHA)
    assert torch.isfinite(x).all()
    out = pp.flow2_outputs_to_showers(x, energies, membership, voxel_layer, alpha=pp.LOGIT_ALPHA, threshold_mev=0.0)
    torch.testing.assert_close(out, noisy * pp.ENERGY_UNIT_MEV, rtol=1e-5, atol=2e-3)
    torch.testing.assert_close(out @ membership, energies * pp.ENERGY_UNIT_MEV, rtol=1e-9, atol=1e-6)


def test_postprocessing_clamps_thresholds_and_guards_non_finite() -> None:
    sizes = (2, 2)
    membership = pp.layer_membership(sizes)
    voxel_layer = pp.voxel_layer_index(sizes)
    x = torch.tensor([[20.0, -20.0, float("nan"), 0.0]])
    energies = torch.tensor([[1e-3, 1e-3]])  # 100 MeV per layer
    out = pp.flow2_outputs_to_showers(x, energies, membership, voxel_layer, alpha=1e-6, threshold_mev=0.01)
    assert torch.isfinite(out).all() and (out >= 0).all()
    assert out[0, 0].item() == pytest.approx(100.0, rel=1e-5)
    assert out[0, 1].item() == 0.0  # below threshold after the clamp at 0
    assert out[0, 2].item() == 0.0  # NaN is never emitted
