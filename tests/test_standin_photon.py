"""Stand-in photons show the physics the spec asks for ("Results the stand-in must show", photons).

Every check computes plain quantities (E_tot, layer energies, sparsity) with numpy from the voxels.
"""

from __future__ import annotations

import numpy as np
import pytest

from caloflow.data.datasets import DS1_PHOTON_GEOMETRY as PHOTON
from caloflow.data.standin import iter_standin_showers

# incident energy (MeV) -> showers simulated; fewer at the expensive high energies
SAMPLE_SIZES = {
    2.0**8: 2000,
    2.0**10: 1500,
    2.0**12: 1000,
    2.0**14: 1000,
    2.0**16: 600,
    2.0**18: 400,
    2.0**20: 300,
    2.0**22: 200,
}
ENERGIES = sorted(SAMPLE_SIZES)


@pytest.fixture(scope="module")
def showers() -> dict[float, np.ndarray]:
    return {
        e: np.concatenate(list(iter_standin_showers("photon", np.full(n, e), seed=11))) for e, n in SAMPLE_SIZES.items()
    }


def _ratio(x: np.ndarray, energy: float) -> np.ndarray:
    return x.sum(axis=1) / energy


def _layer_shares(x: np.ndarray, energy: float) -> np.ndarray:
    """(n, layers) energy of each layer over E_inc."""
    return np.stack([x[:, s].sum(axis=1) for s in PHOTON.layer_slices], axis=1) / energy


def test_mean_energy_ratio_rises_with_energy(showers: dict[float, np.ndarray]) -> None:
    means = np.array([_ratio(showers[e], e).mean() for e in ENERGIES])
    # dead-material losses shrink: a clear rise up to 16 GeV ...
    assert np.all(np.diff(means[:4]) > 0.005), means
    assert means[3] - means[0] > 0.05, means
    # ... then a plateau: the growing longitudinal leakage takes back less than 1%
    assert np.all(means[4:] > means[3] - 0.01), means


def test_mean_energy_ratio_between_085_and_105_above_4_gev(showers: dict[float, np.ndarray]) -> None:
    for e in ENERGIES:
        if e >= 4096:
            assert 0.85 < _ratio(showers[e], e).mean() < 1.05, e


def test_relative_spread_of_energy_ratio_falls_with_energy(showers: dict[float, np.ndarray]) -> None:
    spreads = np.array([_ratio(showers[e], e).std() / _ratio(showers[e], e).mean() for e in ENERGIES])
    assert np.all(np.diff(spreads[:6]) < 0), spreads
    assert spreads[0] > 0.15 and spreads[-1] < 0.03, spreads


def test_layer_2_holds_most_energy_at_tens_of_gev(showers: dict[float, np.ndarray]) -> None:
    for e in (2.0**14, 2.0**16):
        shares = _layer_shares(showers[e], e).mean(axis=0)
        assert np.argmax(shares) == PHOTON.layer_ids.index(2)
        assert shares[PHOTON.layer_ids.index(2)] > 0.5 * shares.sum(), shares


@pytest.mark.parametrize("layer_id", [3, 12])
def test_leakage_share_grows_with_energy(showers: dict[float, np.ndarray], layer_id: int) -> None:
    index = PHOTON.layer_ids.index(layer_id)
    shares = np.array([_layer_shares(showers[e], e)[:, index].mean() for e in ENERGIES[1::2]])
    assert np.all(np.diff(shares) > 0), shares
    assert shares[-1] > 5 * shares[0], shares


def test_layer_1_sparsity_above_half_at_256_mev_and_falling(showers: dict[float, np.ndarray]) -> None:
    layer_1 = PHOTON.layer_slices[PHOTON.layer_ids.index(1)]
    sparsity = np.array([(showers[e][:, layer_1] == 0).mean() for e in ENERGIES])
    assert sparsity[0] > 0.5, sparsity
    assert np.all(np.diff(sparsity) < 0), sparsity


def test_early_conversions_feed_the_presampler(showers: dict[float, np.ndarray]) -> None:
    """Correlated fluctuations: showers with much presampler energy started early, so they have more
    in layer 1 relative to layer 2 (the layers are not drawn independently)."""
    x = showers[2.0**14]
    shares = _layer_shares(x, 2.0**14)
    presampler, strips, middle = shares[:, 0], shares[:, 1], shares[:, 2]
    early = presampler > np.quantile(presampler, 0.8)
    late = presampler <= np.median(presampler)
    assert np.mean(strips[early] / middle[early]) > 2 * np.mean(strips[late] / middle[late])


def test_shower_axis_is_jittered_off_centre(showers: dict[float, np.ndarray]) -> None:
    """Alpha-binned layers are not symmetric shower by shower: the centre of energy moves by mm."""
    x = showers[2.0**16]
    layer_2 = PHOTON.layer_slices[PHOTON.layer_ids.index(2)]
    e = x[:, layer_2]
    centre_x = (e * PHOTON.voxel_eta_mm[layer_2]).sum(axis=1) / e.sum(axis=1)
    assert 1.0 < centre_x.std() < 6.0
