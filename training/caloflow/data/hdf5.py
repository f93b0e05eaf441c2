"""Read, write and validate CaloChallenge HDF5 shower files.

A file holds ``incident_energies`` (N, 1) and ``showers`` (N, n_voxels), both in MeV, gzip-compressed,
plus file attributes for provenance (generator, version, seed, ...). Readers work chunk by chunk, so a
full Dataset 1 file (121 000 x 368 float64, 356 MB) is never held in memory unless asked for.

Every problem with a file is reported as a :class:`~caloflow.errors.ShowerFileError` whose message names
the file and the problem. Writers go through a temporary file in the target directory that is renamed
on success, so a failed or interrupted write never leaves a half-written file under the final name.
Dataset timestamps are off, so the same arrays and attributes give byte-identical files.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from caloflow import __version__
from caloflow.data.geometry import PHOTON, PION, Geometry
from caloflow.errors import ShowerFileError

__all__ = [
    "ENERGIES",
    "SHOWERS",
    "ShowerFileInfo",
    "ShowerWriter",
    "check_shower_chunk",
    "iter_showers",
    "open_shower_file",
    "read_incident_energies",
    "read_showers",
    "validate_shower_file",
    "write_showers",
]

ENERGIES = "incident_energies"
SHOWERS = "showers"
_CHUNK_BYTES = 1 << 20  # target size of one HDF5 chunk of showers
_KNOWN_VOXEL_COUNTS = {
    PHOTON.n_voxels: "the Dataset 1 photon geometry",
    PION.n_voxels: "the Dataset 1 pion geometry",
    6480: "Dataset 2",
    40500: "Dataset 3",
}

FloatArray = NDArray[np.floating[Any]]
AttrValue = str | int | float | bool | list[Any]


@dataclass(frozen=True)
class ShowerFileInfo:
    """What a shower file holds, read from its metadata (no shower data is read)."""

    path: Path
    n_showers: int
    n_voxels: int
    dtype: np.dtype[Any]
    attrs: dict[str, AttrValue] = field(default_factory=dict)
    compression: str | None = None


# --------------------------------------------------------------------------------------------- writing


class ShowerWriter:
    """Append showers to a new CaloChallenge file; the file appears under ``path`` only on success.

    ``expected_rows`` is a hint that pre-sizes the datasets; more or fewer rows may be appended.
    Used as a context manager, an exception inside the block removes the partial file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        n_voxels: int,
        *,
        attrs: Mapping[str, Any] | None = None,
        expected_rows: int | None = None,
        dtype: DTypeLike = np.float64,
    ) -> None:
        if n_voxels < 1:
            raise ValueError(f"n_voxels must be positive, got {n_voxels}")
        self.path = Path(path)
        self.n_voxels = n_voxels
        self.rows = 0
        self._dtype = np.dtype(dtype)
        if not np.issubdtype(self._dtype, np.floating):
            raise ValueError(f"dtype must be a floating type, got {self._dtype}")
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        self._file: Any = _create(self._tmp, self.path)
        try:
            self._create_datasets(max(0, expected_rows or 0))
            _write_attrs(self._file, {"writer": f"caloflow {__version__}", **(attrs or {})})
        except BaseException:
            self.abort()
            raise

    def _create_datasets(self, rows: int) -> None:
        chunk_rows = max(1, _CHUNK_BYTES // (self.n_voxels * self._dtype.itemsize))
        common = {"dtype": self._dtype, "compression": "gzip", "track_times": False}
        self._energies = self._file.create_dataset(
            ENERGIES, shape=(rows, 1), maxshape=(None, 1), chunks=(max(chunk_rows, 4096), 1), **common
        )
        self._showers = self._file.create_dataset(
            SHOWERS,
            shape=(rows, self.n_voxels),
            maxshape=(None, self.n_voxels),
            chunks=(chunk_rows, self.n_voxels),
            **common,
        )

    def append(self, incident_energies_mev: ArrayLike, showers_mev: ArrayLike) -> None:
        """Append n showers: energies of shape (n,) or (n, 1), showers (n, n_voxels), in MeV."""
        energies, showers = self._checked_batch(incident_energies_mev, showers_mev)
        stop = self.rows + len(showers)
        if stop > self._showers.shape[0]:
            self._energies.resize(stop, axis=0)
            self._showers.resize(stop, axis=0)
        self._energies[self.rows : stop] = energies
        self._showers[self.rows : stop] = showers
        self.rows = stop

    def _checked_batch(self, energies: ArrayLike, showers: ArrayLike) -> tuple[FloatArray, FloatArray]:
        if self._file is None:
            raise ValueError(f"{self.path}: writer is closed")
        e = np.asarray(energies, dtype=self._dtype)
        x = np.asarray(showers, dtype=self._dtype)
        if e.ndim == 1:
            e = e[:, None]
        if e.ndim != 2 or e.shape[1] != 1:
            raise ValueError(f"incident energies must have shape (n,) or (n, 1), got {e.shape}")
        if x.shape != (e.shape[0], self.n_voxels):
            raise ValueError(f"showers must have shape ({e.shape[0]}, {self.n_voxels}), got {x.shape}")
        return e, x

    def close(self) -> None:
        """Finish the file and move it to ``path`` (replacing any file there)."""
        if self._file is None:
            return
        try:
            self._energies.resize(self.rows, axis=0)
            self._showers.resize(self.rows, axis=0)
            self._file.close()
            self._file = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the partial file; ``path`` is left untouched."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShowerWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_showers(
    path: str | os.PathLike[str],
    incident_energies_mev: ArrayLike,
    showers_mev: ArrayLike,
    *,
    attrs: Mapping[str, Any] | None = None,
    dtype: DTypeLike = np.float64,
) -> None:
    """Write a whole CaloChallenge file at once (see :class:`ShowerWriter`)."""
    showers = np.asarray(showers_mev)
    if showers.ndim != 2:
        raise ValueError(f"showers must have shape (n, n_voxels), got {showers.shape}")
    with ShowerWriter(path, showers.shape[1], attrs=attrs, expected_rows=len(showers), dtype=dtype) as w:
        w.append(incident_energies_mev, showers)


def _create(tmp: Path, path: Path) -> Any:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return h5py.File(tmp, "w")
    except OSError as exc:
        raise ShowerFileError(f"{path}: cannot create file ({exc})") from exc


def _write_attrs(h5: Any, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        if value is None:
            raise ValueError(f"attribute {key!r} is None; HDF5 attributes need a value")
        h5.attrs[key] = value


def _read_attrs(h5: Any) -> dict[str, AttrValue]:
    return {key: _python_value(value) for key, value in h5.attrs.items()}


def _python_value(value: Any) -> AttrValue:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_python_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return _python_value(value.item())
    return value  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------- reading


def open_shower_file(path: str | os.PathLike[str], geometry: Geometry | None = None) -> ShowerFileInfo:
    """Check a file's structure (datasets, shapes, dtypes, voxel count) and describe it."""
    with _open(path) as h5:
        return _inspect(h5, Path(path), geometry)


def read_showers(
    path: str | os.PathLike[str], geometry: Geometry | None = None, *, start: int = 0, stop: int | None = None
) -> tuple[FloatArray, FloatArray]:
    """Rows ``start:stop`` as (energies (n, 1), showers (n, n_voxels)), MeV, in the stored dtype."""
    with _open(path) as h5:
        _inspect(h5, Path(path), geometry)
        return h5[ENERGIES][start:stop], h5[SHOWERS][start:stop]


def read_incident_energies(path: str | os.PathLike[str], geometry: Geometry | None = None) -> FloatArray:
    """All incident energies as a flat (N,) array in MeV (showers are not read)."""
    with _open(path) as h5:
        _inspect(h5, Path(path), geometry)
        return np.asarray(h5[ENERGIES][:, 0])


def iter_showers(
    path: str | os.PathLike[str], geometry: Geometry | None = None, *, chunk_rows: int = 10_000
) -> Iterator[tuple[FloatArray, FloatArray]]:
    """Yield (energies (n, 1), showers (n, n_voxels)) blocks of at most ``chunk_rows`` rows, in order."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    with _open(path) as h5:
        info = _inspect(h5, Path(path), geometry)
        energies, showers = h5[ENERGIES], h5[SHOWERS]
        for start in range(0, info.n_showers, chunk_rows):
            stop = min(start + chunk_rows, info.n_showers)
            yield energies[start:stop], showers[start:stop]


def validate_shower_file(
    path: str | os.PathLike[str],
    geometry: Geometry | None = None,
    *,
    chunk_rows: int = 10_000,
    on_chunk: Callable[[FloatArray, FloatArray], None] | None = None,
) -> ShowerFileInfo:
    """Check structure and every value (finite, voxels >= 0, energies > 0), chunk by chunk.

    ``on_chunk(energies, showers)`` sees each chunk once it has passed (progress bars, statistics),
    so one pass over the file can both validate and summarise it.
    """
    info = open_shower_file(path, geometry)
    if info.n_showers == 0:
        raise ShowerFileError(f"{path}: the file holds no showers")
    start = 0
    for energies, showers in iter_showers(path, geometry, chunk_rows=chunk_rows):
        check_shower_chunk(path, start, energies, showers)
        start += len(showers)
        if on_chunk is not None:
            on_chunk(energies, showers)
    return info


def check_shower_chunk(path: str | os.PathLike[str], start: int, energies: FloatArray, showers: FloatArray) -> None:
    """Raise ShowerFileError for the first bad value in rows ``start ...`` of a file."""
    bad = _first_true(~np.isfinite(energies[:, 0]) | ~(energies[:, 0] > 0))
    if bad is not None:
        value = energies[bad, 0]
        what = "not finite" if not np.isfinite(value) else "not positive"
        raise ShowerFileError(f"{path}: {ENERGIES} row {start + bad} is {what} ({value:g} MeV)")
    for mask, what in ((~np.isfinite(showers), "a non-finite"), (showers < 0, "a negative")):
        flat = _first_true(mask.ravel())
        if flat is not None:
            row, voxel = divmod(flat, showers.shape[1])
            value = showers[row, voxel]
            raise ShowerFileError(
                f"{path}: {SHOWERS} row {start + row} has {what} voxel ({value:g} MeV at voxel {voxel})"
            )


def _first_true(mask: NDArray[np.bool_]) -> int | None:
    if mask.size == 0 or not mask.any():
        return None
    return int(np.argmax(mask))


def _open(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    if not p.is_file():
        raise ShowerFileError(f"{path}: no such file" if not p.exists() else f"{path}: not a regular file")
    if not h5py.is_hdf5(p):
        raise ShowerFileError(f"{path}: not an HDF5 file")
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        raise ShowerFileError(f"{path}: cannot open HDF5 file ({exc})") from exc


def _inspect(h5: Any, path: Path, geometry: Geometry | None) -> ShowerFileInfo:
    for name in (ENERGIES, SHOWERS):
        if not isinstance(h5.get(name), h5py.Dataset):
            raise ShowerFileError(f"{path}: missing dataset {name!r} (found: {sorted(h5.keys())})")
    energies, showers = h5[ENERGIES], h5[SHOWERS]
    _check_shapes(path, energies.shape, showers.shape)
    for ds in (energies, showers):
        if not np.issubdtype(ds.dtype, np.floating):
            raise ShowerFileError(f"{path}: dataset {ds.name.lstrip('/')!r} has dtype {ds.dtype}, expected float")
    if geometry is not None:
        _check_voxel_count(path, showers.shape[1], geometry)
    return ShowerFileInfo(
        path=path,
        n_showers=int(showers.shape[0]),
        n_voxels=int(showers.shape[1]),
        dtype=showers.dtype,
        attrs=_read_attrs(h5),
        compression=showers.compression,
    )


def _check_shapes(path: Path, e_shape: tuple[int, ...], x_shape: tuple[int, ...]) -> None:
    if len(e_shape) != 2 or e_shape[1] != 1:
        raise ShowerFileError(f"{path}: {ENERGIES} has shape {e_shape}, expected (N, 1)")
    if len(x_shape) != 2:
        raise ShowerFileError(f"{path}: {SHOWERS} has shape {x_shape}, expected (N, n_voxels)")
    if e_shape[0] != x_shape[0]:
        raise ShowerFileError(
            f"{path}: {ENERGIES} has {e_shape[0]} rows but {SHOWERS} has {x_shape[0]}; they must match"
        )


def _check_voxel_count(path: Path, n_voxels: int, geometry: Geometry) -> None:
    if n_voxels == geometry.n_voxels:
        return
    message = f"{path}: showers have {n_voxels} voxels, the {geometry.name} geometry has {geometry.n_voxels}"
    if n_voxels in _KNOWN_VOXEL_COUNTS:
        message += f"; {n_voxels} voxels is {_KNOWN_VOXEL_COUNTS[n_voxels]} - wrong --particle or file?"
    raise ShowerFileError(message)
