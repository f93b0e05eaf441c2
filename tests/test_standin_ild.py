"""The ILD photon stand-in (stand-in, not Geant4): physics features, acceptance checks, reproducibility, files.

Each physics test names the removal it catches; where the model has a switch for that feature
(:class:`ILDPhotonModel`), the test also generates the model without it and sees the check fail, so the test is
shown to be able to fail. Figures are plain numpy on the voxels; samples are a few hundred showers.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import stats

from caloflow.cli import main
from caloflow.data.datasets import dataset
from caloflow.data.grid_geometry import GridGeometry
from caloflow.data.standin import iter_standin_showers, write_standin_file
from caloflow.data.standin.files import standin_energies
from caloflow.data.standin.generator import BLOCK_SIZE
from caloflow.data.standin.ild import ILDPhotonModel, ild_photon_showers

ILD = dataset("ild-photon")
assert isinstance(ILD.geometry, GridGeometry)
GRID: GridGeometry = ILD.geometry
ENERGIES_GEV = (10.0, 50.0, 100.0)
N = 300


def _showers(energy_gev: float, n: int = N, seed: int = 7) -> np.ndarray:
    x = np.concatenate(list(iter_standin_showers("ild-photon", np.full(n, energy_gev * 1e3), seed=seed)))
    return x.reshape(n, *GRID.shower_shape)


def _model_showers(model: ILDPhotonModel, energy_gev: float, n: int = N) -> np.ndarray:
    return model(np.full(n, energy_gev * 1e3), np.random.default_rng(5)).reshape(n, *GRID.shower_shape)


@pytest.fixture(scope="module")
def showers() -> dict[float, np.ndarray]:
    return {e: _showers(e) for e in ENERGIES_GEV}


def _layer_energies(x: np.ndarray) -> np.ndarray:
    return x.sum(axis=(2, 3))


def _cog_layer(x: np.ndarray) -> np.ndarray:
    e = _layer_energies(x)
    return (e * np.arange(GRID.n_layers)).sum(axis=1) / e.sum(axis=1)


def _sigma90_over_mu90(values: np.ndarray) -> float:
    q = np.sort(values)
    k = int(0.9 * q.size)
    i = int(np.argmin(q[k - 1 :] - q[: q.size - k + 1]))
    core = q[i : i + k]
    return float(core.std() / core.mean())


# ---------------------------------------------------------------------------------------------- shape


def test_showers_have_the_ild_shape_and_are_finite_non_negative_float64(showers: dict[float, np.ndarray]) -> None:
    flat = np.concatenate(list(iter_standin_showers("ild-photon", np.full(3, 2e4), seed=1)))
    assert flat.shape == (3, ILD.n_voxels) and flat.dtype == np.float64
    for x in showers.values():
        assert np.all(np.isfinite(x)) and np.all(x >= 0) and np.all(x.sum(axis=(1, 2, 3)) > 0)


def test_same_seed_is_byte_identical_whatever_the_chunk_size() -> None:
    energies = np.linspace(1e4, 2e4, 2 * BLOCK_SIZE + 37)
    reference = np.concatenate(list(iter_standin_showers("ild-photon", energies, seed=3)))
    for chunk_size in (7, BLOCK_SIZE, BLOCK_SIZE + 1, 10_000):
        chunks = iter_standin_showers("ild-photon", energies, seed=3, chunk_size=chunk_size)
        assert np.concatenate(list(chunks)).tobytes() == reference.tobytes(), chunk_size
    other = np.concatenate(list(iter_standin_showers("ild-photon", energies[:50], seed=4)))
    assert not np.array_equal(other, reference[:50])


def test_file_energies_are_uniform_in_10_to_100_gev() -> None:
    energies = standin_energies("ild-photon", seed=2, scale=0.03)
    assert energies.size == 3000
    assert energies.min() >= 1e4 and energies.max() <= 1e5
    assert stats.kstest(energies, stats.uniform(1e4, 9e4).cdf).pvalue > 1e-3
    assert stats.kstest(energies, stats.loguniform(1e4, 1e5).cdf).pvalue < 1e-6  # not log-uniform


# ---------------------------------------------------------------------------------------------- longitudinal


def test_shower_maximum_moves_deeper_with_energy(showers: dict[float, np.ndarray]) -> None:
    """Catches an energy-independent longitudinal profile (T not growing like ln E)."""
    layer_of_max = [_layer_energies(showers[e]).argmax(axis=1).mean() for e in ENERGIES_GEV]
    assert np.all(np.diff(layer_of_max) > 0.5), layer_of_max
    # ~ln(10) X0 = 2.3 X0, ~3-4 thin layers, from 10 to 100 GeV [note 7.1.2]
    assert 2.0 < layer_of_max[2] - layer_of_max[0] < 5.0, layer_of_max


def test_showers_fluctuate_in_start_and_profile(showers: dict[float, np.ndarray]) -> None:
    """Catches fixed conversion depth and fixed (a, T): the per-shower CoG depth spread at one energy collapses."""
    spread = _cog_layer(showers[50.0]).std()
    assert spread > 1.2, spread
    frozen = dataclasses.replace(ild_photon_showers, fluctuating_start=False, fluctuating_profile=False)
    assert _cog_layer(_model_showers(frozen, 50.0)).std() < 0.5 * spread
    # early and late energy shares anti-correlate through the per-shower depth (the layers are not independent)
    e = _layer_energies(showers[50.0])
    early, late = e[:, :10].sum(axis=1), e[:, 20:].sum(axis=1)
    assert np.corrcoef(early, late)[0, 1] < -0.4


# ---------------------------------------------------------------------------------------------- lateral


def _core_and_outside(x: np.ndarray) -> tuple[float, float]:
    """Shares of layers 8-19's energy in the 2x2 cells at the axis corner and outside the central 10x10."""
    layers = x[:, 8:20]
    total = layers.sum(axis=(1, 2, 3))
    core = layers[:, :, 13:15, 14:16].sum(axis=(1, 2, 3)) / total
    inside = layers[:, :, 9:19, 10:20].sum(axis=(1, 2, 3)) / total
    return float(core.mean()), float(1.0 - inside.mean())


def _tail_excess(x: np.ndarray) -> float:
    """Energy outside the 10x10 over what one f(r; R) profile with the measured 2x2 share would leave there."""
    core, outside = _core_and_outside(x)
    r_core, r_out = 2 * GRID.cell_mm / np.sqrt(np.pi), 10 * GRID.cell_mm / np.sqrt(np.pi)  # equal-area radii
    r2 = r_core**2 * (1.0 - core) / core  # f(r; R) holds r^2 / (r^2 + R^2) inside r
    return outside / (r2 / (r_out**2 + r2))


def test_radial_profile_has_a_core_and_a_tail(showers: dict[float, np.ndarray]) -> None:
    """Catches a single-radius lateral profile: the tail outside the 10x10 is then what the core share predicts."""
    core, outside = _core_and_outside(showers[50.0])
    assert core > 0.6 and 0.02 < outside < 0.1, (core, outside)
    assert _tail_excess(showers[50.0]) > 1.6
    single = _model_showers(dataclasses.replace(ild_photon_showers, core_tail=False), 50.0)
    assert _tail_excess(single) < 1.3


def _persistence(x: np.ndarray) -> tuple[float, float]:
    """How well layer i-1's pattern predicts layer i's (layers 9-19, central 10x10, each normalised to 1).

    Returns (blend, previous): the mean squared error of ``mean_i + lambda (I_{i-1} - mean_{i-1})`` (lambda fitted
    on the first half of the showers, scored on the second) and of ``I_{i-1}`` alone, both over the error of the
    mean pattern ``mean_i``. Below 1: the previous layer predicts better than the mean pattern.
    """
    window = x[:, :, 9:19, 10:20].reshape(len(x), GRID.n_layers, -1)
    energy = window.sum(axis=2, keepdims=True)
    image = np.divide(window, energy, out=np.zeros_like(window), where=energy > 0)
    current, previous = image[:, 9:20], image[:, 8:19]
    dc, dp = current - current.mean(axis=0), previous - previous.mean(axis=0)
    half = len(x) // 2
    lam = (dc[:half] * dp[:half]).sum() / (dp[:half] ** 2).sum()
    mean_error = (dc[half:] ** 2).mean()
    blend = ((dc[half:] - lam * dp[half:]) ** 2).mean() / mean_error
    alone = ((current[half:] - previous[half:]) ** 2).mean() / mean_error
    return float(blend), float(alone)


def test_lateral_pattern_persists_from_layer_to_layer(showers: dict[float, np.ndarray]) -> None:
    """Catches layers drawn independently given their energy (axis, width and sub-clusters redrawn per layer)."""
    blend, _ = _persistence(showers[50.0])
    assert blend < 0.85, blend
    _, alone = _persistence(showers[100.0])
    assert alone < 1.0, alone  # at 100 GeV the previous image alone beats the mean image
    independent = _model_showers(dataclasses.replace(ild_photon_showers, persistent=False), 50.0)
    assert _persistence(independent)[0] > 0.93


# ---------------------------------------------------------------------------------------------- hits


def test_sparsity_rises_at_low_energy_and_in_late_layers(showers: dict[float, np.ndarray]) -> None:
    """Catches a fixed number of hits per shower or per layer (no Poisson crossings following the profile)."""
    empty = [float((showers[e] == 0).mean()) for e in ENERGIES_GEV]
    assert empty[0] > empty[1] > empty[2] > 0.9, empty
    occupancy = (showers[100.0] > 0).mean(axis=(0, 2, 3))
    assert np.all(np.diff(occupancy[19:]) < 0), occupancy  # behind the maximum every layer is sparser
    assert occupancy[29] < 0.5 * occupancy[16]
    assert (_layer_energies(showers[10.0])[:, 0] == 0).mean() > 0.5  # unconverted photons: empty first layer


def test_cell_spectrum_has_a_mip_peak_multi_mip_core_and_the_threshold(showers: dict[float, np.ndarray]) -> None:
    """Catches smooth deposits without MIP sampling and a missing threshold (sub-0.1 MeV cells left in)."""
    cells = showers[50.0][showers[50.0] > 0]
    assert cells.min() >= ILD.threshold_mev
    counts, edges = np.histogram(cells, bins=np.geomspace(0.1, 1000.0, 61))
    assert 0.14 <= edges[np.argmax(counts)] <= 0.25  # MIP peak (0.15-0.2 MeV)
    assert showers[100.0].max() > 50.0  # core cells sum many crossings
    raw = _model_showers(dataclasses.replace(ild_photon_showers, threshold=False), 50.0, n=100)
    below = raw[(raw > 0) & (raw < ILD.threshold_mev)].size / raw[raw > 0].size
    assert below > 0.1, below  # the threshold removes a measurable sub-MIP population


# ---------------------------------------------------------------------------------------------- acceptance (7.2)


def test_acceptance_checks_of_the_design_note(showers: dict[float, np.ndarray]) -> None:
    """The note's section 7.2 targets, on the showers at 10, 50 and 100 GeV."""
    cog = np.concatenate([_cog_layer(showers[e]) for e in ENERGIES_GEV])
    assert 12.5 < cog.mean() < 15.0 and 1.5 < cog.std() < 2.6, (cog.mean(), cog.std())
    x_cog = [(showers[e].sum(axis=(1, 3)) * GRID.x_centres_mm).sum(axis=1) for e in ENERGIES_GEV]
    x_std = [float(np.std(c / showers[e].sum(axis=(1, 2, 3)))) for c, e in zip(x_cog, ENERGIES_GEV, strict=True)]
    assert all(0.25 < s < 0.8 for s in x_std), x_std  # ~0.5 mm [CC3]
    visible = {e: showers[e].sum(axis=(1, 2, 3)) for e in ENERGIES_GEV}
    fractions = [visible[e].mean() / (e * 1e3) for e in ENERGIES_GEV]
    assert all(0.015 < f < 0.025 for f in fractions) and fractions[2] < fractions[0], fractions  # sub-linear
    weights = np.asarray(GRID.absorber_mm) / min(GRID.absorber_mm)  # reconstructed energy: 1:2 layer weights
    resolution = [_sigma90_over_mu90(_layer_energies(showers[e]) @ weights) for e in ENERGIES_GEV]
    assert 0.03 < resolution[0] < 0.07 and 0.01 < resolution[2] < 0.03, resolution
    hits = [float((showers[e] > 0).sum(axis=(1, 2, 3)).mean()) for e in ENERGIES_GEV]
    assert hits[0] > 150 and hits[2] < 1700, hits
    assert 0.5 < np.log(hits[2] / hits[0]) / np.log(10.0) < 0.9, hits  # occupancy ~ E^0.6-0.9
    contained = showers[100.0][:, :, 9:19, 10:20].sum(axis=(1, 2, 3)) / visible[100.0]
    assert 0.9 < contained.mean() < 0.97  # the 10x10 crop misses 3-10 %


# ---------------------------------------------------------------------------------------------- files and CLI


@pytest.fixture(scope="module")
def ild_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ild") / "ild.h5"
    args = ["data", "standin", "--dataset", "ild-photon", "--out", str(path), "--seed", "3", "--scale", "0.002"]
    assert main([*args, "--no-progress"]) == 0
    return path


def test_cli_writes_the_ild_layout_and_check_accepts_it(ild_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with h5py.File(ild_file, "r") as h5:
        assert list(h5.keys()) == ["30x30"] and sorted(h5["30x30"].keys()) == ["energy", "layers"]
        energy, layers = h5["30x30/energy"][:], h5["30x30/layers"][:]
        assert "not Geant4" in str(h5.attrs["description"])
    assert energy.shape == (200, 1) and layers.shape == (200, *GRID.shower_shape)
    assert energy.min() >= 10.0 and energy.max() <= 100.0  # GeV
    expected = standin_energies("ild-photon", seed=3, scale=0.002)
    np.testing.assert_allclose(energy[:, 0] * 1e3, expected, rtol=1e-12)
    generated = np.concatenate(list(iter_standin_showers("ild-photon", expected, seed=3)))
    stored = generated.astype(dataset("ild-photon").shower_dtype)  # the registry says how stand-ins store voxels
    np.testing.assert_array_equal(layers.reshape(200, -1), stored)  # MeV, axes [layer, x, z]
    capsys.readouterr()
    assert main(["data", "check", str(ild_file), "--dataset", "ild-photon", "--no-progress"]) == 0
    assert "OK:" in capsys.readouterr().out


def test_check_refuses_an_ild_file_with_energies_in_mev(
    ild_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mev.h5"
    shutil.copy(ild_file, path)
    with h5py.File(path, "r+") as h5:
        h5["30x30/energy"][:] = h5["30x30/energy"][:] * 1e3
    assert main(["data", "check", str(path), "--dataset", "ild-photon", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "look like MeV instead of GeV" in err and str(path) in err and "30x30/energy row 0" in err


def test_check_names_file_row_and_field_of_a_bad_value(
    ild_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.h5"
    shutil.copy(ild_file, path)
    with h5py.File(path, "r+") as h5:
        h5["30x30/energy"][7, 0] = 150.0
        h5["30x30/layers"][3, 2, 4, 5] = -1.0
    assert main(["data", "check", str(path), "--dataset", "ild-photon", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "30x30/layers row 3" in err and "negative" in err
    with h5py.File(path, "r+") as h5:
        h5["30x30/layers"][3, 2, 4, 5] = 0.0
    assert main(["data", "check", str(path), "--dataset", "ild-photon", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "30x30/energy row 7 is 150 GeV, outside the ild-photon spectrum" in err


def test_check_refuses_another_datasets_file_naming_the_one_it_fits(
    ild_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "check", str(ild_file), "--dataset", "ds1-photon", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "not a ds1-photon file" in err and "it fits ild-photon" in err
    ds1 = write_standin_file("ds1-photon", tmp_path / "ds1.h5", seed=1, scale=0.001, progress=False)
    assert main(["data", "check", str(ds1), "--dataset", "ild-photon", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "not a ild-photon file" in err and "it fits ds1-photon" in err
