"""The stand-in generator itself: public API, shapes, reproducibility, seeds, attributes and files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import caloflow.data.standin as standin
from caloflow.data.datasets import ds1_dataset, ds1_energy_multiset, geometry_for
from caloflow.data.standin import (
    GENERATOR_NAME,
    GENERATOR_VERSION,
    StandinError,
    iter_standin_showers,
    standin_attrs,
    write_standin_file,
)
from caloflow.data.standin.generator import BLOCK_SIZE
from caloflow.errors import CaloflowError

PARTICLES = ("photon", "pion")
# every Dataset 1 energy, a few times, in a scrambled order; crosses two block boundaries
MIXED = np.tile(
    np.array(sorted(ds1_dataset("photon").energies.counts))[[3, 0, 14, 7, 1, 10, 5, 12, 2, 9, 6, 13, 4, 11, 8]], 80
)[: 2 * BLOCK_SIZE + 37]


def _all(particle: str, energies: np.ndarray, seed: int, chunk_size: int = 10_000) -> np.ndarray:
    return np.concatenate(list(iter_standin_showers(particle, energies, seed, chunk_size=chunk_size)))


def test_public_api_is_pinned() -> None:
    assert sorted(standin.__all__) == sorted(
        [
            "GENERATOR_NAME",
            "GENERATOR_VERSION",
            "StandinError",
            "iter_standin_showers",
            "standin_attrs",
            "write_standin_file",
        ]
    )
    assert GENERATOR_NAME == "caloflow-standin"
    assert isinstance(GENERATOR_VERSION, str) and GENERATOR_VERSION


@pytest.mark.parametrize("particle", PARTICLES)
def test_showers_have_dataset_1_shape_and_are_finite_non_negative_float64(particle: str) -> None:
    x = _all(particle, MIXED, seed=0)
    assert x.shape == (MIXED.size, geometry_for(particle).n_voxels)
    assert x.dtype == np.float64
    assert np.all(np.isfinite(x)) and np.all(x >= 0)
    assert np.all(x.sum(axis=1) > 0)


@pytest.mark.parametrize("particle", PARTICLES)
def test_same_seed_is_byte_identical_whatever_the_chunk_size(particle: str) -> None:
    reference = _all(particle, MIXED, seed=3)
    for chunk_size in (1, 100, BLOCK_SIZE, BLOCK_SIZE + 1, 10_000):
        assert _all(particle, MIXED, seed=3, chunk_size=chunk_size).tobytes() == reference.tobytes()


def test_chunks_come_in_order_with_the_requested_sizes() -> None:
    chunks = list(iter_standin_showers("photon", MIXED, seed=1, chunk_size=300))
    assert [len(c) for c in chunks] == [300, 300, 300, MIXED.size - 900]


def test_a_shower_depends_only_on_its_block() -> None:
    """Generating a prefix that ends on a block boundary gives the same first showers."""
    full = _all("pion", MIXED, seed=2)
    prefix = _all("pion", MIXED[:BLOCK_SIZE], seed=2)
    np.testing.assert_array_equal(prefix, full[:BLOCK_SIZE])


@pytest.mark.parametrize("particle", PARTICLES)
@pytest.mark.parametrize("other_seed", [1, 8, 2**40])
def test_different_seeds_give_different_showers(particle: str, other_seed: int) -> None:
    a = _all(particle, MIXED[:200], seed=7)
    b = _all(particle, MIXED[:200], seed=other_seed)
    assert not np.any(np.all(a == b, axis=1)), "no shower may repeat across seeds"


def test_neighbouring_seeds_are_statistically_independent() -> None:
    """Seeds s and s+1 (train and evaluation files) share no structure: total energies uncorrelated."""
    energies = np.full(2000, 2.0**12)
    a = _all("photon", energies, seed=1).sum(axis=1)
    b = _all("photon", energies, seed=2).sum(axis=1)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.1


def test_photons_and_pions_of_the_same_seed_use_different_streams() -> None:
    energies = np.full(300, 2.0**14)
    photon, pion = _all("photon", energies, seed=1), _all("pion", energies, seed=1)
    assert abs(np.corrcoef(photon.sum(axis=1), pion.sum(axis=1))[0, 1]) < 0.2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "electron"}, "unknown dataset"),
        ({"energies_mev": np.array([256.0, -1.0])}, "positive"),
        ({"energies_mev": np.array([256.0, np.nan])}, "finite"),
        ({"energies_mev": np.ones((2, 2))}, "shape"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_invalid_arguments_are_rejected_before_any_work(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"name": "photon", "energies_mev": np.array([256.0]), "seed": 0, "chunk_size": 10}
    with pytest.raises(StandinError, match=match) as info:
        iter_standin_showers(**{**args, **kwargs})
    assert isinstance(info.value, ValueError) and isinstance(info.value, CaloflowError)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "kaon"}, "unknown dataset"),
        ({"seed": -2}, "seed"),
        ({"scale": 0.0}, "scale"),
        ({"scale": np.inf}, "scale"),
    ],
)
def test_invalid_file_arguments_are_rejected_before_writing(
    tmp_path: Path, kwargs: dict[str, object], match: str
) -> None:
    args: dict[str, object] = {"name": "photon", "out": tmp_path / "x.h5", "seed": 0, "scale": 0.01}
    with pytest.raises(StandinError, match=match):
        write_standin_file(**{**args, **kwargs}, progress=False)
    assert not any(tmp_path.iterdir())


def test_energies_may_come_as_a_column() -> None:
    energies = MIXED[:50]
    np.testing.assert_array_equal(_all("photon", energies[:, None], 4), _all("photon", energies, 4))


def test_empty_energies_give_no_chunks() -> None:
    assert list(iter_standin_showers("pion", np.zeros(0), seed=0)) == []


@pytest.mark.parametrize("particle", PARTICLES)
def test_attrs_name_the_generator_and_say_not_geant4(particle: str) -> None:
    attrs = standin_attrs(particle, seed=9, scale=0.25)
    assert "stand-in, not Geant4" in str(attrs["description"])
    assert attrs["generator"] == GENERATOR_NAME and attrs["generator_version"] == GENERATOR_VERSION
    assert attrs["particle"] == particle and attrs["seed"] == 9 and attrs["scale"] == 0.25


def _write(tmp_path: Path, name: str, particle: str, seed: int) -> Path:
    return write_standin_file(particle, tmp_path / name, seed=seed, scale=0.002, progress=False)


@pytest.mark.parametrize("particle", PARTICLES)
def test_written_file_holds_the_shuffled_dataset_1_mix_and_its_showers(tmp_path: Path, particle: str) -> None:
    path = _write(tmp_path, "a.h5", particle, seed=4)
    with h5py.File(path, "r") as f:
        energies, showers = f["incident_energies"][:], f["showers"][:]
        attrs = dict(f.attrs)
    assert energies.shape == (ds1_energy_multiset(particle, 0.002).size, 1)
    np.testing.assert_array_equal(np.sort(energies[:, 0]), ds1_energy_multiset(particle, 0.002))
    assert np.any(np.diff(energies[:, 0]) < 0), "Dataset 1 files are shuffled"
    np.testing.assert_array_equal(showers, _all(particle, energies[:, 0], seed=4))
    assert "stand-in, not Geant4" in str(attrs["description"]) and attrs["seed"] == 4


def test_same_seed_gives_byte_identical_files_and_other_seeds_do_not(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.h5", "photon", seed=1).read_bytes()
    b = _write(tmp_path, "b.h5", "photon", seed=1).read_bytes()
    c = _write(tmp_path, "c.h5", "photon", seed=2).read_bytes()
    assert a == b
    assert a != c
