"""CaloChallenge HDF5 I/O: round trips, chunked reads, atomic writes, and every validation failure."""

from __future__ import annotations

import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from caloflow import __version__
from caloflow.data.datasets import DS1_PHOTON_GEOMETRY as PHOTON
from caloflow.data.datasets import DS1_PION_GEOMETRY as PION
from caloflow.data.hdf5 import (
    ShowerWriter,
    iter_showers,
    open_shower_file,
    read_incident_energies,
    read_showers,
    validate_shower_file,
    write_showers,
)
from caloflow.errors import ShowerFileError


def _sample(n: int, n_voxels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    energies = 2.0 ** rng.integers(8, 23, size=(n, 1))
    showers = rng.exponential(1.0, size=(n, n_voxels)) * (rng.random((n, n_voxels)) < 0.3)
    return energies, showers


def _raw_file(path: Path, energies: np.ndarray | None, showers: np.ndarray | None) -> Path:
    with h5py.File(path, "w") as f:
        if energies is not None:
            f.create_dataset("incident_energies", data=energies)
        if showers is not None:
            f.create_dataset("showers", data=showers)
    return path


def test_round_trip_with_attrs(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    energies, showers = _sample(40, PHOTON.n_voxels)
    attrs = {"generator": "test, stand-in, not Geant4", "seed": 7, "scale": 0.5, "flag": True}
    write_showers(path, energies, showers, attrs=attrs)
    e, x = read_showers(path, PHOTON)
    np.testing.assert_array_equal(e, energies)
    np.testing.assert_array_equal(x, showers)
    assert e.dtype == np.float64 and x.dtype == np.float64 and e.shape == (40, 1)
    info = open_shower_file(path, PHOTON)
    assert (info.n_showers, info.n_voxels, info.dtype, info.compression) == (40, 368, np.float64, "gzip")
    assert info.attrs == {**attrs, "writer": f"caloflow {__version__}"}
    assert isinstance(info.attrs["seed"], int) and isinstance(info.attrs["generator"], str)
    assert info.path == path


def test_read_slice_and_energies(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    energies, showers = _sample(30, 5)
    write_showers(path, energies[:, 0], showers)
    e, x = read_showers(path, start=10, stop=13)
    np.testing.assert_array_equal(x, showers[10:13])
    np.testing.assert_array_equal(e, energies[10:13])
    np.testing.assert_array_equal(read_incident_energies(path), energies[:, 0])


def test_chunked_iteration_equals_full_read(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    write_showers(path, *_sample(50, PION.n_voxels), dtype=np.float32)
    chunks = list(iter_showers(path, PION, chunk_rows=7))
    assert [len(x) for _, x in chunks] == [7] * 7 + [1]
    e_full, x_full = read_showers(path, PION)
    assert x_full.dtype == np.float32
    np.testing.assert_array_equal(np.concatenate([e for e, _ in chunks]), e_full)
    np.testing.assert_array_equal(np.concatenate([x for _, x in chunks]), x_full)


def test_writer_appends_batches(tmp_path: Path) -> None:
    path = tmp_path / "w.h5"
    energies, showers = _sample(25, 6)
    with ShowerWriter(path, 6, attrs={"seed": 1}, expected_rows=100) as writer:
        writer.append(energies[:10, 0], showers[:10])  # (n,) energies
        writer.append(energies[10:], showers[10:])  # (n, 1) energies
        assert writer.rows == 25
        assert not path.exists()  # only renamed into place on success
    e, x = read_showers(path)
    assert x.shape == (25, 6)  # pre-sized for 100, trimmed to what was written
    np.testing.assert_array_equal(x, showers)
    np.testing.assert_array_equal(e, energies)
    assert list(tmp_path.iterdir()) == [path]


def test_writer_deflates_standard_gzip_chunks_across_uneven_appends(tmp_path: Path) -> None:
    """Chunks are deflated by the writer (ISA-L) yet stay plain zlib streams under HDF5's gzip filter."""
    path = tmp_path / "grid.h5"
    n_voxels = 3 * 200_000  # float32 rows of 2.4 MB, over the 1 MB chunk target: chunks of one row
    energies, _ = _sample(7, 1)
    showers = np.random.default_rng(1).exponential(1.0, (7, n_voxels)).astype(np.float32)
    showers[:, ::3] = 0.0
    small = tmp_path / "small.h5"
    with ShowerWriter(small, 100, dtype=np.float32, expected_rows=3) as writer:  # chunks of 2 621 rows
        for rows in (1, 2, 2620, 3000):  # inside one chunk, completing it, and straddling two
            block = np.random.default_rng(rows).random((rows, 100)).astype(np.float32)
            writer.append(np.ones(rows), block)
    _, x = read_showers(small)
    expected = np.concatenate(
        [np.random.default_rng(r).random((r, 100)).astype(np.float32) for r in (1, 2, 2620, 3000)]
    )
    np.testing.assert_array_equal(x, expected)
    with ShowerWriter(path, n_voxels, dtype=np.float32, layout="ild", shower_shape=(3, 400, 500)) as writer:
        writer.append(energies, showers)
    with h5py.File(path, "r") as h5:
        layers = h5["30x30/layers"]
        assert layers.compression == "gzip" and layers.chunks == (1, 3, 400, 500)
        _, raw = layers.id.read_direct_chunk((4, 0, 0, 0))
        assert zlib.decompress(raw) == showers[4].tobytes()
        np.testing.assert_array_equal(layers[:].reshape(7, -1), showers)


def test_writer_rejects_bad_batches(tmp_path: Path) -> None:
    with ShowerWriter(tmp_path / "w.h5", 6) as writer:
        with pytest.raises(ValueError, match=r"showers must have shape \(3, 6\)"):
            writer.append(np.ones(3), np.ones((3, 5)))
        with pytest.raises(ValueError, match="incident energies"):
            writer.append(np.ones((3, 2)), np.ones((3, 6)))


def test_exception_in_block_removes_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "w.h5"
    path.write_bytes(b"previous contents")
    with pytest.raises(RuntimeError, match="boom"), ShowerWriter(path, 4) as writer:
        writer.append(np.ones(2), np.ones((2, 4)))
        raise RuntimeError("boom")
    assert path.read_bytes() == b"previous contents"  # the old file is untouched
    assert list(tmp_path.iterdir()) == [path]  # and no temporary file is left


def test_writer_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "x.h5"
    write_showers(path, [256.0], [[1.0, 2.0]])
    assert read_showers(path)[1].tolist() == [[1.0, 2.0]]


def test_same_input_gives_identical_bytes(tmp_path: Path) -> None:
    energies, showers = _sample(20, 8)
    write_showers(tmp_path / "a.h5", energies, showers, attrs={"seed": 3})
    write_showers(tmp_path / "b.h5", energies, showers, attrs={"seed": 3})
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_valid_file_passes_and_on_chunk_sees_every_row(tmp_path: Path) -> None:
    path = tmp_path / "ok.h5"
    write_showers(path, *_sample(23, PHOTON.n_voxels))
    seen: list[int] = []
    info = validate_shower_file(path, PHOTON, chunk_rows=10, on_chunk=lambda e, x: seen.append(len(x)))
    assert seen == [10, 10, 3]
    assert info.n_showers == 23


# ---------------------------------------------------------------------------------------------- failures

E4, X4 = np.full((4, 1), 1024.0), np.zeros((4, PHOTON.n_voxels))


def _with(array: np.ndarray, index: tuple[int, int], value: float) -> np.ndarray:
    out = array.copy()
    out[index] = value
    return out


FAILURES = {
    "missing showers": ((E4, None), "missing dataset 'showers'"),
    "missing energies": ((None, X4), "missing dataset 'incident_energies'"),
    "energies (N,)": ((E4[:, 0], X4), r"incident_energies has shape (4,), expected (N, 1)"),
    "showers 3-d": ((E4, X4[:, :, None]), "showers has shape (4, 368, 1)"),
    "mismatched N": ((E4[:3], X4), "incident_energies has 3 rows but showers has 4"),
    "integer showers": ((E4, X4.astype(np.int32)), "dtype int32, expected float"),
    "nan voxel": (
        (E4, _with(X4, (2, 17), np.nan)),
        "showers row 2 has a non-finite voxel (nan MeV at voxel 17)",
    ),
    "inf voxel": (
        (E4, _with(X4, (0, 3), np.inf)),
        "showers row 0 has a non-finite voxel (inf MeV at voxel 3)",
    ),
    "negative voxel": (
        (E4, _with(X4, (3, 17), -1.2)),
        "showers row 3 has a negative voxel (-1.2 MeV at voxel 17)",
    ),
    "zero energy": ((_with(E4, (1, 0), 0.0), X4), "incident_energies row 1 is not positive (0 MeV)"),
    "nan energy": ((_with(E4, (2, 0), np.nan), X4), "incident_energies row 2 is not finite (nan MeV)"),
    "pion file": ((E4, np.zeros((4, 533))), "533 voxels is ds1-pion"),
    "no showers": ((E4[:0], X4[:0]), "the file holds no showers"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_validation_failure_names_file_and_problem(tmp_path: Path, case: str) -> None:
    (energies, showers), problem = FAILURES[case]
    path = _raw_file(tmp_path / "bad.h5", energies, showers)
    with pytest.raises(ShowerFileError) as excinfo:
        validate_shower_file(path, PHOTON)
    assert str(excinfo.value).startswith(f"{path}: ")
    assert problem in str(excinfo.value)


def test_wrong_voxel_count_names_the_particle(tmp_path: Path) -> None:
    path = _raw_file(tmp_path / "photons.h5", E4, X4)
    with pytest.raises(ShowerFileError, match=r"368 voxels, the expected geometry has 533; 368 voxels is ds1-photon"):
        read_showers(path, PION)


def test_bad_row_index_is_absolute_across_chunks(tmp_path: Path) -> None:
    showers = np.zeros((300, 5))
    showers[234, 4] = -0.5
    path = _raw_file(tmp_path / "bad.h5", np.full((300, 1), 256.0), showers)
    with pytest.raises(ShowerFileError, match=r"row 234 has a negative voxel \(-0.5 MeV at voxel 4\)"):
        validate_shower_file(path, chunk_rows=100)


def test_not_hdf5_and_missing_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(ShowerFileError, match=f"{text}: not an HDF5 file"):
        validate_shower_file(text)
    missing = tmp_path / "missing.h5"
    for call in (validate_shower_file, open_shower_file, read_showers):
        with pytest.raises(ShowerFileError, match=f"{missing}: no such file"):
            call(missing)
    with pytest.raises(ShowerFileError, match="no such file"):
        next(iter_showers(missing))
    with pytest.raises(ShowerFileError, match="not a regular file"):
        validate_shower_file(tmp_path)
