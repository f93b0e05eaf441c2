"""The dataset registry (``caloflow.data.datasets``): geometries against the official XMLs, the ILD grid, names,
energy spectra, and that nothing else in the package spells a dataset's voxel count."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from caloflow.data.binning_xml import read_binning_xml
from caloflow.data.datasets import DATASET_NAMES, DatasetError, dataset
from caloflow.data.grid_geometry import GridGeometry

REPO = Path(__file__).parents[1]
REFERENCE = Path(__file__).parents[2] / "shared" / "reference"
XML_FILES = {
    "ds1-photon": "binning_dataset_1_photons.xml",
    "ds1-pion": "binning_dataset_1_pions.xml",
    "ds2-electron": "binning_dataset_2.xml",
    "ds3-electron": "binning_dataset_3.xml",
}
VOXEL_COUNTS = {"ds1-photon": 368, "ds1-pion": 533, "ds2-electron": 6480, "ds3-electron": 40500, "ild-photon": 27000}
# hard-coded voxel counts allowed outside the registry: none
KNOWN_HARD_CODED: set[tuple[str, int]] = set()


@pytest.mark.parametrize(("name", "xml"), sorted(XML_FILES.items()))
def test_builtin_cylindrical_geometries_equal_the_official_xml(name: str, xml: str) -> None:
    path = REFERENCE / xml
    if not path.exists():
        pytest.skip(f"{path} not present (shared reference files)")
    official = read_binning_xml(path, pid=dataset(name).pid)
    builtin = dataset(name).cylindrical_geometry
    assert builtin.layer_ids == official.layer_ids
    assert builtin.pid == official.pid
    for ours, theirs in zip(builtin.layers, official.layers, strict=True):
        assert ours.n_alpha == theirs.n_alpha
        np.testing.assert_allclose(ours.r_edges_mm, theirs.r_edges_mm, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("name", "n_voxels"), sorted(VOXEL_COUNTS.items()))
def test_voxel_counts_and_layer_counts(name: str, n_voxels: int) -> None:
    ds = dataset(name)
    assert ds.n_voxels == n_voxels == int(np.prod(ds.shower_shape))
    assert sum(ds.geometry.layer_sizes) == n_voxels and ds.geometry.layer_offsets[-1] == n_voxels
    assert ds.geometry.voxel_layer.shape == (n_voxels,)
    assert ds.n_layers == {"ds1-photon": 5, "ds1-pion": 7}.get(name, 45 if name.startswith("ds") else 30)


def test_ild_grid_facts() -> None:
    ild = dataset("ild-photon")
    grid = ild.geometry
    assert isinstance(grid, GridGeometry) and ild.geometry_kind == "cartesian" and ild.layout == "ild"
    assert grid.shower_shape == (30, 30, 30) == ild.shower_shape and grid.n_voxels == 27_000
    depth = grid.layer_depth_x0
    assert depth[0] == pytest.approx(0.6, abs=0.005) and depth[29] == pytest.approx(24.0, abs=0.05)
    assert depth[19] == pytest.approx(12.0, abs=0.05) and np.all(np.diff(depth) > 0)
    positions = np.asarray(grid.layer_position_mm)
    assert positions[0] == pytest.approx(1811.34) and positions[-1] == pytest.approx(2010.05, abs=0.01)
    assert np.all(np.diff(positions) > 0)
    np.testing.assert_allclose(grid.x_centres_mm, -grid.x_centres_mm[::-1])
    assert grid.x_centres_mm[1] - grid.x_centres_mm[0] == pytest.approx(grid.cell_mm)
    assert ild.threshold_mev == 0.1


def test_short_names_are_the_dataset_1_entries() -> None:
    assert dataset("photon") is dataset("ds1-photon") and dataset("pion") is dataset("ds1-pion")
    assert dataset("photon").short_names == ("photon",) and dataset("ds1-pion").is_ds1
    assert not dataset("ds2-electron").is_ds1 and not dataset("ild-photon").short_names


def test_unknown_names_are_refused_listing_the_known_ones() -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'electron'") as info:
        dataset("electron")
    for name in (*DATASET_NAMES, "photon", "pion"):
        assert name in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_file_energies_lie_in_each_spectrum(name: str) -> None:
    ds = dataset(name)
    energies = ds.file_energies(0.01, np.random.default_rng(0))
    assert energies.size == max(1, round(0.01 * ds.showers_per_file)) or ds.energies.kind == "discrete"
    assert np.all(ds.energies.contains(energies))
    assert energies.min() >= ds.energies.min_mev * (1 - 1e-9) and energies.max() <= ds.energies.max_mev * (1 + 1e-9)
    assert not ds.energies.contains(np.array([ds.energies.min_mev * 0.9, ds.energies.max_mev * 1.1])).any()


@pytest.mark.parametrize(
    ("name", "kind", "lo", "hi"),
    [
        ("ds2-electron", "log-uniform", 1e3, 1e6),
        ("ds3-electron", "log-uniform", 1e3, 1e6),
        ("ild-photon", "uniform", 1e4, 1e5),
    ],
)
def test_continuous_spectra(name: str, kind: str, lo: float, hi: float) -> None:
    spec = dataset(name).energies
    assert (spec.kind, spec.min_mev, spec.max_mev) == (kind, lo, hi)
    sample = spec.sample(20_000, np.random.default_rng(1))
    flat = np.log(sample) if kind == "log-uniform" else sample
    lo_t, hi_t = (np.log(lo), np.log(hi)) if kind == "log-uniform" else (lo, hi)
    # uniform in the right variable: each quarter of the range holds a quarter of the sample
    quarters = np.histogram(flat, bins=np.linspace(lo_t, hi_t, 5))[0] / sample.size
    np.testing.assert_allclose(quarters, 0.25, atol=0.015)


def _hard_coded_voxel_counts(path: Path) -> list[tuple[int, int]]:
    """(line, value) of every integer literal in the code (not strings or comments) that is a voxel count."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    counts = set(VOXEL_COUNTS.values())
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value in counts
    ]


def test_no_voxel_count_is_hard_coded_outside_the_registry() -> None:
    package = REPO / "training" / "caloflow"
    found = {
        (str(path.relative_to(REPO)), line, value)
        for path in sorted(package.rglob("*.py"))
        if path != package / "data" / "datasets.py"
        for line, value in _hard_coded_voxel_counts(path)
    }
    unexpected = sorted(f for f in found if (f[0], f[2]) not in KNOWN_HARD_CODED)
    assert not unexpected, f"voxel counts spelled outside caloflow.data.datasets: {unexpected}"


def test_the_voxel_count_scan_finds_a_literal(tmp_path: Path) -> None:
    """The scan is not blind: a literal is found, a docstring or comment mentioning one is not."""
    source = tmp_path / "x.py"
    source.write_text('"""(n, 6480) showers."""\nN = 40_500  # not 368\n', encoding="utf-8")
    assert _hard_coded_voxel_counts(source) == [(2, 40500)]
