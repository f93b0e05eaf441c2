"""Stand-in pions show the physics the spec asks for ("Results the stand-in must show", pions).

Every check computes plain quantities (E_tot, layer energies, voxel spectra) with numpy from the voxels.
"""

from __future__ import annotations

import numpy as np
import pytest

from caloflow.data.datasets import DS1_PION_GEOMETRY as PION
from caloflow.data.standin import iter_standin_showers

LOW_ENERGIES = (2.0**8, 2.0**9, 2.0**10)
HIGH_ENERGIES = (2.0**16, 2.0**18, 2.0**20, 2.0**22)
# incident energy (MeV) -> showers simulated
SAMPLE_SIZES = {
    **dict.fromkeys(LOW_ENERGIES, 3000),
    2.0**13: 1000,
    2.0**16: 600,
    2.0**18: 400,
    2.0**20: 300,
    2.0**22: 200,
}
EM_LAYERS = slice(0, PION.layer_offsets[PION.layer_ids.index(3) + 1])


@pytest.fixture(scope="module")
def showers() -> dict[float, np.ndarray]:
    return {
        e: np.concatenate(list(iter_standin_showers("pion", np.full(n, e), seed=5))) for e, n in SAMPLE_SIZES.items()
    }


def _ratio(x: np.ndarray, energy: float) -> np.ndarray:
    return x.sum(axis=1) / energy


def _two_modes(ratio: np.ndarray) -> tuple[float, float, float]:
    """Positions of the highest histogram peak and of the highest bin at least 0.25 away, and the
    depth of the valley between them relative to the lower of the two."""
    counts, edges = np.histogram(ratio, bins=30, range=(0.0, 1.5))
    first = int(np.argmax(counts))
    far = np.abs(np.arange(counts.size) - first) >= 5
    second = int(np.argmax(np.where(far, counts, -1)))
    lo, hi = sorted((first, second))
    return edges[lo], edges[hi], counts[lo : hi + 1].min() / counts[second]


@pytest.mark.parametrize("energy", LOW_ENERGIES)
def test_energy_ratio_is_bimodal_at_low_energy(showers: dict[float, np.ndarray], energy: float) -> None:
    """MIP-like pions (stopped before a hard interaction) versus showering ones, with a valley between."""
    low, high, valley = _two_modes(_ratio(showers[energy], energy))
    assert valley < 0.7, (low, high, valley)
    assert 0.1 < low < 0.55 and 0.6 < high < 0.95, (low, high)


def test_mean_energy_ratio_clearly_below_one_at_high_energy(showers: dict[float, np.ndarray]) -> None:
    means = [_ratio(showers[e], e).mean() for e in HIGH_ENERGIES]
    assert all(0.6 < m < 0.92 for m in means), means


def test_response_rises_with_energy_above_a_few_gev(showers: dict[float, np.ndarray]) -> None:
    """Non-compensation: the electromagnetic fraction, seen at full scale, grows with energy."""
    means = [_ratio(showers[e], e).mean() for e in (2.0**13, *HIGH_ENERGIES)]
    assert np.all(np.diff(means) > 0), means


@pytest.mark.parametrize("energy", HIGH_ENERGIES)
def test_sizable_share_of_high_energy_pions_leave_little_in_em_layers(
    showers: dict[float, np.ndarray], energy: float
) -> None:
    em_share = showers[energy][:, EM_LAYERS].sum(axis=1) / energy
    assert 0.2 < np.mean(em_share < 0.05) < 0.7


def test_total_energy_exceeds_incident_energy_in_rare_showers(showers: dict[float, np.ndarray]) -> None:
    above = np.concatenate([_ratio(x, e) > 1.0 for e, x in showers.items()])
    assert 0.0 < above.mean() < 0.05
    assert max(_ratio(x, e).max() for e, x in showers.items()) > 1.05


def test_pions_before_showering_leave_a_mip_track_in_central_voxels(showers: dict[float, np.ndarray]) -> None:
    """High-energy pions with little EM energy crossed the EM layers as MIPs: tens of MeV per layer
    (layers 1 and 2) in the innermost voxels, nothing far out."""
    x = showers[2.0**18]
    mip_like = x[:, EM_LAYERS].sum(axis=1) < 400.0
    for layer_id, (lo, hi) in ((1, (10.0, 60.0)), (2, (40.0, 200.0))):
        layer = PION.layer_slices[PION.layer_ids.index(layer_id)]
        energy = x[mip_like, layer]
        assert lo < np.median(energy.sum(axis=1)) < hi
        central = energy[:, PION.voxel_r_mm[layer] < 15.0].sum(axis=1) / energy.sum(axis=1)
        assert np.median(central) > 0.95


def test_small_isolated_deposits_near_a_tenth_of_an_mev(showers: dict[float, np.ndarray]) -> None:
    values = showers[2.0**10][showers[2.0**10] > 0]
    assert np.mean((values > 0.03) & (values < 0.3)) > 0.1


def test_hadronic_part_is_wider_than_photon_like_showers(showers: dict[float, np.ndarray]) -> None:
    """Tile layer A: the energy-weighted radius is of order 100 mm, not the few tens of an EM shower."""
    x = showers[2.0**16]
    layer = PION.layer_slices[PION.layer_ids.index(12)]
    e = x[:, layer]
    has = e.sum(axis=1) > 0.1 * 2.0**16
    radius = (e[has] * PION.voxel_r_mm[layer]).sum(axis=1) / e[has].sum(axis=1)
    assert 40.0 < np.median(radius) < 250.0
