"""The built-in Dataset 1 geometries: equal to the official binning XMLs, and the voxel layout of §1.3."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from caloflow.data.binning_xml import read_binning_xml
from caloflow.data.datasets import DS1_PHOTON_GEOMETRY as PHOTON
from caloflow.data.datasets import DS1_PION_GEOMETRY as PION
from caloflow.data.datasets import geometry_for
from caloflow.data.geometry import Geometry

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
XML = {
    "photon": REFERENCE / "binning_dataset_1_photons.xml",
    "pion": REFERENCE / "binning_dataset_1_pions.xml",
}


@pytest.mark.parametrize(("particle", "builtin"), [("photon", PHOTON), ("pion", PION)])
def test_builtin_geometry_equals_official_xml(particle: str, builtin: Geometry) -> None:
    if not XML[particle].is_file():
        pytest.skip(f"{XML[particle]} not available")
    parsed = read_binning_xml(XML[particle])
    assert parsed == builtin
    assert parsed.n_voxels == builtin.n_voxels
    np.testing.assert_array_equal(parsed.voxel_r_mm, builtin.voxel_r_mm)
    np.testing.assert_array_equal(parsed.voxel_alpha, builtin.voxel_alpha)


@pytest.mark.parametrize(
    ("geometry", "n_voxels", "layer_ids", "offsets", "alpha_layers"),
    [
        (PHOTON, 368, (0, 1, 2, 3, 12), (0, 8, 168, 358, 363, 368), (1, 2)),
        (PION, 533, (0, 1, 2, 3, 12, 13, 14), (0, 8, 108, 208, 213, 363, 523, 533), (1, 2, 12, 13)),
    ],
)
def test_voxel_counts_and_slices_match_method_table(geometry, n_voxels, layer_ids, offsets, alpha_layers):
    assert geometry.n_voxels == n_voxels
    assert geometry.layer_ids == layer_ids
    assert geometry.layer_offsets == offsets
    assert [(s.start, s.stop) for s in geometry.layer_slices] == list(itertools.pairwise(offsets))
    assert tuple(geometry.layer_ids[i] for i in geometry.alpha_binned_layers) == alpha_layers


def test_caloflow_input_sizes() -> None:
    assert PHOTON.layer_sizes == (8, 160, 190, 5, 5)
    assert PION.layer_sizes == (8, 100, 100, 5, 150, 160, 10)


def test_alpha_centres() -> None:
    ten = PHOTON.layers[1].alpha_centres
    expected = [-2.8274, -2.1991, -1.5708, -0.9425, -0.3142, 0.3142, 0.9425, 1.5708, 2.1991, 2.8274]
    np.testing.assert_allclose(ten, expected, atol=5e-5)
    np.testing.assert_allclose(ten, (np.arange(10) + 0.5) * 2 * np.pi / 10 - np.pi, rtol=0, atol=1e-15)
    assert PHOTON.layers[0].alpha_centres.tolist() == [0.0]


def test_per_voxel_order_is_alpha_outer_r_inner() -> None:
    layer = PHOTON.layers[1]  # flat 8..168, n_r 16, n_alpha 10
    r, alpha = PHOTON.voxel_r_mm, PHOTON.voxel_alpha
    assert (r[8], r[9], r[8 + 15]) == (1.0, 3.0, 175.0)
    assert r[8 + 16] == 1.0  # next alpha bin starts again at the innermost r
    np.testing.assert_allclose(alpha[8 : 8 + 16], layer.alpha_centres[0])
    np.testing.assert_allclose(alpha[8 + 16 * 9 : 168], layer.alpha_centres[9])
    # (layer 2, alpha 3, r 4) -> 168 + 3 * 19 + 4
    assert r[168 + 3 * 19 + 4] == pytest.approx(17.5)
    assert alpha[168 + 3 * 19 + 4] == pytest.approx(-0.9425, abs=5e-5)
    assert PHOTON.voxel_layer[167] == 1 and PHOTON.voxel_layer[168] == 2


def test_eta_phi_are_cartesian_positions_in_mm() -> None:
    i = 8 + 2 * 16 + 5  # layer 1, alpha bin 2 (-1.5708), r bin 5 (11 mm)
    assert PHOTON.voxel_eta_mm[i] == pytest.approx(0.0, abs=1e-12)
    assert PHOTON.voxel_phi_mm[i] == pytest.approx(-11.0)
    j = 8 + 5 * 16 + 5  # alpha bin 5 (+0.3142)
    assert PHOTON.voxel_eta_mm[j] == pytest.approx(11 * np.cos(np.pi / 10))
    assert PHOTON.voxel_phi_mm[j] == pytest.approx(11 * np.sin(np.pi / 10))
    assert PHOTON.voxel_eta_mm[0] == 2.5 and PHOTON.voxel_phi_mm[0] == 0.0  # un-binned layer: alpha 0


@pytest.mark.parametrize("geometry", [PHOTON, PION])
def test_dict_round_trip(geometry: Geometry) -> None:
    assert Geometry.from_dict(geometry.to_dict()) == geometry


def test_geometry_for() -> None:
    assert geometry_for("photon") is PHOTON and geometry_for("pion") is PION
    with pytest.raises(ValueError, match="electron"):
        geometry_for("electron")
