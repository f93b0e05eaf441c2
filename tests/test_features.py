"""High-level features against hand-computed values and a per-layer loop written from the formulas."""

from __future__ import annotations

import numpy as np
import pytest

from caloflow.data.datasets import DS1_PHOTON_GEOMETRY as PHOTON
from caloflow.data.datasets import DS1_PION_GEOMETRY as PION
from caloflow.data.features import HighLevelFeatures, compute_features
from caloflow.data.geometry import Geometry, Layer

# layer 0: 2 r bins (centres 5, 20 mm), 1 alpha bin; layer 5: 2 r bins (centres 1, 3 mm) x 4 alpha bins
# with centres -3pi/4, -pi/4, pi/4, 3pi/4.  Flat index of (layer 5, alpha a, r k) = 2 + 2a + k.
TOY = Geometry("toy", 0, (Layer(0, (0, 10, 30), 1), Layer(5, (0, 2, 4), 4)))
S = np.sqrt(0.5)


def _shower(**voxels: float) -> np.ndarray:
    x = np.zeros((1, TOY.n_voxels))
    for name, energy in voxels.items():
        x[0, int(name[1:])] = energy
    return x


def test_single_voxel_in_alpha_binned_layer() -> None:
    f = compute_features(_shower(v7=10.0), TOY, incident_energies=[20.0])  # layer 5, alpha pi/4, r 3 mm
    assert f.layer_ids == (0, 5) and f.alpha_layer_ids == (5,)
    assert f.e_tot.tolist() == [10.0] and f.e_layer.tolist() == [[0.0, 10.0]]
    np.testing.assert_allclose(f.ec_r, [[0.0, 3.0]], rtol=1e-14)
    np.testing.assert_allclose(f.ec_eta, [[3 * S]], rtol=1e-14)
    np.testing.assert_allclose(f.ec_phi, [[3 * S]], rtol=1e-14)
    assert f.width_r.tolist() == [[0.0, 0.0]] and f.width_eta.tolist() == f.width_phi.tolist() == [[0.0]]
    np.testing.assert_allclose(f.sparsity, [[1.0, 7 / 8]])
    assert f.e_inc is not None and f.e_ratio is not None and f.e_ratio.tolist() == [0.5]


def test_two_voxel_radial_width() -> None:
    f = compute_features(_shower(v0=1.0, v1=3.0), TOY)  # r = 5 mm (1 MeV) and 20 mm (3 MeV)
    ec, width = f.ec_r[0, f.column(0)], f.width_r[0, f.column(0)]
    assert ec == pytest.approx((5 * 1 + 20 * 3) / 4, rel=1e-14)
    assert width == pytest.approx(15 * np.sqrt(1 * 3) / 4, rel=1e-12)  # |r1 - r2| sqrt(w1 w2) / (w1 + w2)
    assert f.sparsity[0].tolist() == [0.0, 1.0]
    assert f.e_ratio is None and f.e_inc is None


def test_two_voxel_eta_phi_widths() -> None:
    f = compute_features(_shower(v2=2.0, v8=2.0), TOY)  # r 1 mm at alpha -3pi/4 and +3pi/4
    j = f.alpha_column(5)
    assert f.ec_eta[0, j] == pytest.approx(-S, rel=1e-14)  # both at eta = cos(3pi/4)
    assert f.width_eta[0, j] == pytest.approx(0.0, abs=1e-7)
    assert f.ec_phi[0, j] == pytest.approx(0.0, abs=1e-15)  # sin = -S and +S, equal weights
    assert f.width_phi[0, j] == pytest.approx(S, rel=1e-14)
    assert f.width_r[0, f.column(5)] == 0.0


def test_empty_layers_give_zero_centre_and_width() -> None:
    f = compute_features(np.zeros((3, TOY.n_voxels)), TOY, incident_energies=np.ones((3, 1)))
    for array in (f.ec_r, f.width_r, f.ec_eta, f.ec_phi, f.width_eta, f.width_phi, f.e_tot, f.e_ratio):
        assert array is not None and np.all(array == 0.0)
    assert np.all(f.sparsity == 1.0)


def test_epsilon_in_denominator_as_reference() -> None:
    f = compute_features(_shower(v0=1e-16), TOY)  # sum(rE) / (sum(E) + 1e-16) = 5e-16 / 2e-16
    assert f.ec_r[0, 0] == pytest.approx(2.5, rel=1e-12)


def test_widths_never_nan_for_single_voxels() -> None:
    x = np.diag(np.full(PION.n_voxels, 3.7))  # one shower per voxel: rounding can push <r^2> - EC^2 below 0
    f = compute_features(x, PION)
    for width in (f.width_r, f.width_eta, f.width_phi):
        assert np.all(np.isfinite(width)) and np.all(width >= 0)
        assert np.max(width) < 1e-5


def test_threshold_only_affects_sparsity() -> None:
    x = _shower(v0=0.5, v1=2.0)
    f0, f1 = compute_features(x, TOY), compute_features(x, TOY, threshold=1.0)
    assert f0.sparsity[0, 0] == 0.0 and f1.sparsity[0, 0] == 0.5
    np.testing.assert_array_equal(f0.ec_r, f1.ec_r)
    np.testing.assert_array_equal(f0.e_layer, f1.e_layer)


def _reference_loop(x: np.ndarray, g: Geometry) -> dict[str, list[np.ndarray]]:
    """The formulas of §1.4 written out layer by layer with element-wise sums."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("e", "sp", "ecr", "wr", "ece", "we", "ecp", "wp")}
    for i, sl in enumerate(g.layer_slices):
        data = x[:, sl]
        e = data.sum(axis=-1)
        out["e"].append(e)
        out["sp"].append(1 - (data > 0).mean(axis=-1))
        positions = [("r", g.voxel_r_mm[sl])]
        if i in g.alpha_binned_layers:
            positions += [("e", g.voxel_eta_mm[sl]), ("p", g.voxel_phi_mm[sl])]
        for key, pos in positions:
            ec = (pos * data).sum(axis=-1) / (e + 1e-16)
            width = np.sqrt(np.maximum((pos * pos * data).sum(axis=-1) / (e + 1e-16) - ec**2, 0))
            out[f"ec{key}"].append(ec)
            out[f"w{key}"].append(width)
    return out


@pytest.mark.parametrize("geometry", [PHOTON, PION])
def test_matches_per_layer_loop_on_random_showers(geometry: Geometry) -> None:
    rng = np.random.default_rng(1)
    x = rng.exponential(5.0, size=(200, geometry.n_voxels)) * (rng.random((200, geometry.n_voxels)) < 0.4)
    x[0, geometry.layer_slices[1]] = 0.0  # one empty layer
    f, ref = compute_features(x, geometry), _reference_loop(x, geometry)
    pairs = [
        (f.e_layer, "e"),
        (f.sparsity, "sp"),
        (f.ec_r, "ecr"),
        (f.width_r, "wr"),
        (f.ec_eta, "ece"),
        (f.width_eta, "we"),
        (f.ec_phi, "ecp"),
        (f.width_phi, "wp"),
    ]
    for ours, key in pairs:
        np.testing.assert_allclose(ours, np.stack(ref[key], axis=1), rtol=1e-10, atol=1e-9, err_msg=key)
    np.testing.assert_allclose(f.e_tot, x.sum(axis=1), rtol=1e-12)
    assert f.ec_eta.shape == (200, len(geometry.alpha_binned_layers))
    assert all(a.dtype == np.float64 for a in (f.e_tot, f.ec_r, f.width_phi))


def test_concatenate_equals_one_call() -> None:
    rng = np.random.default_rng(2)
    x, e = rng.exponential(1.0, size=(30, PHOTON.n_voxels)), rng.uniform(1, 2, size=30)
    whole = compute_features(x, PHOTON, e)
    joined = HighLevelFeatures.concatenate(
        [compute_features(x[:10], PHOTON, e[:10]), compute_features(x[10:], PHOTON, e[10:])]
    )
    assert len(joined) == 30
    np.testing.assert_array_equal(joined.width_eta, whole.width_eta)
    assert joined.e_ratio is not None and whole.e_ratio is not None
    np.testing.assert_array_equal(joined.e_ratio, whole.e_ratio)


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"shape \(N, 368\) for photon"):
        compute_features(np.zeros((2, 533)), PHOTON)
    with pytest.raises(ValueError, match="incident energies"):
        compute_features(np.zeros((2, 368)), PHOTON, incident_energies=np.ones(3))
