"""Read, write and validate HDF5 shower files in each dataset's official layout.

Two layouts (``caloflow.data.datasets`` says which dataset uses which):

* ``calochallenge``: ``incident_energies`` (N, 1) and ``showers`` (N, n_voxels), both in MeV;
* ``ild``: group ``30x30`` with ``energy`` (N, 1) in **GeV** and ``layers`` (N, 30, 30, 30) in MeV.

Readers always hand out incident energies in MeV, shape (n, 1), and showers flat, (n, n_voxels) (a C-order
view of the grid: ``reshape(n, *shower_shape)`` restores it). Files are gzip-compressed, with file attributes
for provenance (generator, version, seed, ...). Readers work chunk by chunk, so a
full Dataset 1 file (121 000 x 368 float64, 356 MB) is never held in memory unless asked for.

Every problem with a file is reported as a :class:`~caloflow.errors.ShowerFileError` whose message names
the file and the problem. Writers go through a temporary file in the target directory that is renamed
on success, so a failed or interrupted write never leaves a half-written file under the final name.
Dataset timestamps are off, so the same arrays and attributes give byte-identical files.

Compression: the shower datasets carry HDF5's standard gzip (deflate) filter, so every HDF5 reader opens them,
but :class:`ShowerWriter` deflates each chunk itself with ISA-L (``isal``, level ``min(gzip_level, 3)``) and
stores it with ``write_direct_chunk``: the same zlib format, about five times faster than zlib's level 1 on
mostly-zero showers (an ILD shower is 27 000 float32 cells, ~95 % zeros).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import h5py
import numpy as np
from isal import isal_zlib
from numpy.typing import ArrayLike, DTypeLike, NDArray

from caloflow import __version__
from caloflow.data.datasets import dataset_for_voxels
from caloflow.errors import ShowerFileError

__all__ = [
    "ENERGIES",
    "LAYOUTS",
    "SHOWERS",
    "FileLayoutSpec",
    "ShowerFileInfo",
    "ShowerWriter",
    "check_shower_chunk",
    "chunk_rows_for",
    "iter_showers",
    "lateral_layout",
    "layout_spec",
    "open_shower_file",
    "read_attrs",
    "read_incident_energies",
    "read_showers",
    "validate_shower_file",
    "write_showers",
]

ENERGIES = "incident_energies"
SHOWERS = "showers"
_CHUNK_BYTES = 1 << 20  # target size of one HDF5 chunk of showers

FloatArray = NDArray[np.floating[Any]]
AttrValue = str | int | float | bool | list[Any]


class _Geometry(Protocol):
    """What the file functions need of a geometry (cylindrical or grid)."""

    @property
    def n_voxels(self) -> int: ...


@dataclass(frozen=True)
class FileLayoutSpec:
    """Where a layout keeps its arrays, and the unit of its incident energies."""

    name: str
    group: str  # "" for the file's root
    energies_key: str
    showers_key: str
    energy_unit_mev: float  # 1.0: stored in MeV; 1000.0: stored in GeV
    energy_unit: str
    shower_dims: str  # one shower's stored axes, for messages and the rank check

    def path_of(self, key: str) -> str:
        return f"{self.group}/{key}" if self.group else key

    @property
    def energies_path(self) -> str:
        return self.path_of(self.energies_key)

    @property
    def showers_path(self) -> str:
        return self.path_of(self.showers_key)


LAYOUTS: dict[str, FileLayoutSpec] = {
    "calochallenge": FileLayoutSpec("calochallenge", "", ENERGIES, SHOWERS, 1.0, "MeV", "n_voxels"),
    "ild": FileLayoutSpec("ild", "30x30", "energy", "layers", 1000.0, "GeV", "layers, x, z"),
}


def layout_spec(layout: str | FileLayoutSpec) -> FileLayoutSpec:
    """A layout by name, or ``layout`` itself when it is a spec (e.g. :func:`lateral_layout`'s)."""
    if isinstance(layout, FileLayoutSpec):
        return layout
    try:
        return LAYOUTS[layout]
    except KeyError:
        raise ValueError(f"unknown file layout {layout!r}; expected one of {sorted(LAYOUTS)}") from None


def lateral_layout(layout: str, n_x: int, n_z: int) -> FileLayoutSpec:
    """``layout`` for ``n_x`` x ``n_z`` cells per layer: the ILD layout names its group after them (``10x10``: how
    a client writes the showers of a model that covers a 10 x 10 crop of the 30 x 30 layers)."""
    spec = layout_spec(layout)
    if not spec.group:
        raise ValueError(f"file layout {spec.name!r} keeps its arrays at the root, not in a per-grid group")
    return replace(spec, group=f"{n_x}x{n_z}")


@dataclass(frozen=True)
class ShowerFileInfo:
    """What a shower file holds, read from its metadata (no shower data is read)."""

    path: Path
    n_showers: int
    n_voxels: int
    dtype: np.dtype[Any]
    attrs: dict[str, AttrValue] = field(default_factory=dict)
    compression: str | None = None
    layout: str = "calochallenge"
    shower_shape: tuple[int, ...] = ()  # one shower's stored shape ((n_voxels,) for CaloChallenge files)


# --------------------------------------------------------------------------------------------- writing


class ShowerWriter:
    """Append showers to a new CaloChallenge file; the file appears under ``path`` only on success.

    ``expected_rows`` is a hint that pre-sizes the datasets; more or fewer rows may be appended.
    Used as a context manager, an exception inside the block removes the partial file. ``layout`` and
    ``shower_shape`` write another dataset's layout (``ild``: showers stored as (n, *shower_shape), energies
    converted from MeV to the layout's unit); appended showers may be flat or in that shape.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        n_voxels: int,
        *,
        attrs: Mapping[str, Any] | None = None,
        expected_rows: int | None = None,
        dtype: DTypeLike = np.float64,
        layout: str = "calochallenge",
        shower_shape: tuple[int, ...] | None = None,
        energies_dtype: DTypeLike | None = None,
        gzip_level: int = 4,
    ) -> None:
        if n_voxels < 1:
            raise ValueError(f"n_voxels must be positive, got {n_voxels}")
        self.shape = (n_voxels,) if shower_shape is None else tuple(shower_shape)
        if int(np.prod(self.shape)) != n_voxels:
            raise ValueError(f"shower_shape {self.shape} does not hold {n_voxels} voxels")
        self.layout = layout_spec(layout)
        self.path = Path(path)
        self.n_voxels = n_voxels
        self.rows = 0
        self._dtype = np.dtype(dtype)
        self._energies_dtype = self._dtype if energies_dtype is None else np.dtype(energies_dtype)
        for d in (self._dtype, self._energies_dtype):
            if not np.issubdtype(d, np.floating):
                raise ValueError(f"dtype must be a floating type, got {d}")
        self._gzip_level = gzip_level
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
        self._chunks = _ChunkDeflater(chunk_rows, self.shape, self._dtype, self._gzip_level)
        common = {"compression": "gzip", "compression_opts": self._gzip_level, "track_times": False}
        self._energies = self._file.create_dataset(
            self.layout.energies_path,
            shape=(rows, 1),
            maxshape=(None, 1),
            chunks=(max(chunk_rows, 4096), 1),
            dtype=self._energies_dtype,
            **common,
        )
        self._showers = self._file.create_dataset(
            self.layout.showers_path,
            shape=(rows, *self.shape),
            maxshape=(None, *self.shape),
            chunks=(chunk_rows, *self.shape),
            dtype=self._dtype,
            **common,
        )

    def append(self, incident_energies_mev: ArrayLike, showers_mev: ArrayLike) -> None:
        """Append n showers: energies of shape (n,) or (n, 1), showers (n, n_voxels) or (n, *shape), in MeV."""
        energies, showers = self._checked_batch(incident_energies_mev, showers_mev)
        stop = self.rows + len(showers)
        if stop > self._showers.shape[0]:
            self._energies.resize(stop, axis=0)
            self._showers.resize(stop, axis=0)
        self._energies[self.rows : stop] = energies
        for row, chunk in self._chunks.add(showers):
            self._showers.id.write_direct_chunk((row, *(0 for _ in self.shape)), chunk)
        self.rows = stop

    def _checked_batch(self, energies: ArrayLike, showers: ArrayLike) -> tuple[FloatArray, FloatArray]:
        if self._file is None:
            raise ValueError(f"{self.path}: writer is closed")
        e = np.asarray(energies, dtype=self._energies_dtype)
        x = np.asarray(showers, dtype=self._dtype)
        if e.ndim == 1:
            e = e[:, None]
        if e.ndim != 2 or e.shape[1] != 1:
            raise ValueError(f"incident energies must have shape (n,) or (n, 1), got {e.shape}")
        if x.shape not in ((e.shape[0], self.n_voxels), (e.shape[0], *self.shape)):
            raise ValueError(f"showers must have shape ({e.shape[0]}, {self.n_voxels}), got {x.shape}")
        return e / self.layout.energy_unit_mev, x.reshape(e.shape[0], *self.shape)

    def close(self) -> None:
        """Finish the file and move it to ``path`` (replacing any file there)."""
        if self._file is None:
            return
        try:
            for row, chunk in self._chunks.flush():
                self._showers.id.write_direct_chunk((row, *(0 for _ in self.shape)), chunk)
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


class _ChunkDeflater:
    """Cuts appended showers into HDF5 chunks of ``chunk_rows`` rows and deflates each (zlib format, ISA-L).

    Rows short of a full chunk wait in a buffer for the next :meth:`add`; :meth:`flush` deflates them padded
    with zeros (the padding lies beyond the dataset's final extent, so no reader sees it).
    """

    def __init__(self, chunk_rows: int, shape: tuple[int, ...], dtype: np.dtype[Any], gzip_level: int) -> None:
        self.chunk_rows = chunk_rows
        self.level = min(max(gzip_level, 0), isal_zlib.ISAL_BEST_COMPRESSION)
        self._buffer = np.zeros((chunk_rows, *shape), dtype=dtype)
        self._held = 0
        self._next_row = 0

    def add(self, showers: FloatArray) -> Iterator[tuple[int, bytes]]:
        """(first row, deflated chunk) of every chunk that ``showers`` completes, in order."""
        start = 0
        while start < len(showers):
            take = min(self.chunk_rows - self._held, len(showers) - start)
            if self._held == 0 and take == self.chunk_rows:
                yield self._deflated(showers[start : start + take])
            else:
                self._buffer[self._held : self._held + take] = showers[start : start + take]
                self._held += take
                if self._held == self.chunk_rows:
                    yield self._deflated(self._buffer)
            start += take

    def flush(self) -> Iterator[tuple[int, bytes]]:
        """The held rows as one last chunk, zero-padded (nothing if no rows are held)."""
        if self._held:
            self._buffer[self._held :] = 0
            yield self._deflated(self._buffer)

    def _deflated(self, rows: FloatArray) -> tuple[int, bytes]:
        first, self._next_row, self._held = self._next_row, self._next_row + self.chunk_rows, 0
        return first, isal_zlib.compress(np.ascontiguousarray(rows), self.level)


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


def chunk_rows_for(n_voxels: int, target_bytes: int = 64 << 20, max_rows: int = 10_000) -> int:
    """Showers per read so a chunk holds about ``target_bytes`` of float64 voxels (a DS3 chunk: 207 rows)."""
    return max(1, min(max_rows, target_bytes // (8 * n_voxels)))


def open_shower_file(
    path: str | os.PathLike[str], geometry: _Geometry | None = None, *, layout: str | FileLayoutSpec = "calochallenge"
) -> ShowerFileInfo:
    """Check a file's structure (datasets, shapes, dtypes, voxel count) and describe it."""
    with _open(path) as h5:
        return _inspect(h5, Path(path), geometry, layout_spec(layout))


def read_showers(
    path: str | os.PathLike[str],
    geometry: _Geometry | None = None,
    *,
    start: int = 0,
    stop: int | None = None,
    layout: str | FileLayoutSpec = "calochallenge",
) -> tuple[FloatArray, FloatArray]:
    """Rows ``start:stop`` as (energies (n, 1) MeV, showers (n, n_voxels) MeV), in the stored dtype."""
    spec = layout_spec(layout)
    with _open(path) as h5:
        _inspect(h5, Path(path), geometry, spec)
        return _read_rows(h5, spec, start, stop)


def _read_rows(h5: Any, spec: FileLayoutSpec, start: int, stop: int | None) -> tuple[FloatArray, FloatArray]:
    energies = h5[spec.energies_path][start:stop]
    showers = h5[spec.showers_path][start:stop]
    if spec.energy_unit_mev != 1.0:
        energies = energies * energies.dtype.type(spec.energy_unit_mev)
    return energies, showers.reshape(len(showers), -1)


def read_incident_energies(
    path: str | os.PathLike[str], geometry: _Geometry | None = None, *, layout: str | FileLayoutSpec = "calochallenge"
) -> FloatArray:
    """All incident energies as a flat (N,) array in MeV (showers are not read)."""
    spec = layout_spec(layout)
    with _open(path) as h5:
        _inspect(h5, Path(path), geometry, spec)
        return np.asarray(h5[spec.energies_path][:, 0]) * spec.energy_unit_mev


def iter_showers(
    path: str | os.PathLike[str],
    geometry: _Geometry | None = None,
    *,
    chunk_rows: int = 10_000,
    layout: str | FileLayoutSpec = "calochallenge",
) -> Iterator[tuple[FloatArray, FloatArray]]:
    """Yield (energies (n, 1) MeV, showers (n, n_voxels) MeV) blocks of at most ``chunk_rows`` rows, in order."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    spec = layout_spec(layout)
    with _open(path) as h5:
        info = _inspect(h5, Path(path), geometry, spec)
        for start in range(0, info.n_showers, chunk_rows):
            yield _read_rows(h5, spec, start, min(start + chunk_rows, info.n_showers))


def validate_shower_file(
    path: str | os.PathLike[str],
    geometry: _Geometry | None = None,
    *,
    chunk_rows: int = 10_000,
    on_chunk: Callable[[FloatArray, FloatArray], None] | None = None,
    layout: str | FileLayoutSpec = "calochallenge",
) -> ShowerFileInfo:
    """Check structure and every value (finite, voxels >= 0, energies > 0), chunk by chunk.

    ``on_chunk(energies, showers)`` sees each chunk once it has passed (progress bars, statistics),
    so one pass over the file can both validate and summarise it.
    """
    info = open_shower_file(path, geometry, layout=layout)
    if info.n_showers == 0:
        raise ShowerFileError(f"{path}: the file holds no showers")
    start = 0
    for energies, showers in iter_showers(path, geometry, chunk_rows=chunk_rows, layout=layout):
        check_shower_chunk(path, start, energies, showers, layout=layout)
        start += len(showers)
        if on_chunk is not None:
            on_chunk(energies, showers)
    return info


def check_shower_chunk(
    path: str | os.PathLike[str],
    start: int,
    energies: FloatArray,
    showers: FloatArray,
    *,
    layout: str | FileLayoutSpec = "calochallenge",
) -> None:
    """Raise ShowerFileError for the first bad value in rows ``start ...`` of a file (energies in MeV)."""
    spec = layout_spec(layout)
    bad = _first_true(~np.isfinite(energies[:, 0]) | ~(energies[:, 0] > 0))
    if bad is not None:
        value = energies[bad, 0]
        what = "not finite" if not np.isfinite(value) else "not positive"
        raise ShowerFileError(f"{path}: {spec.energies_path} row {start + bad} is {what} ({value:g} MeV)")
    for mask, what in ((~np.isfinite(showers), "a non-finite"), (showers < 0, "a negative")):
        flat = _first_true(mask.ravel())
        if flat is not None:
            row, voxel = divmod(flat, showers.shape[1])
            value = showers[row, voxel]
            raise ShowerFileError(
                f"{path}: {spec.showers_path} row {start + row} has {what} voxel ({value:g} MeV at voxel {voxel})"
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


def read_attrs(path: str | os.PathLike[str]) -> dict[str, AttrValue]:
    """The file's attributes (provenance), whatever arrays it holds."""
    with _open(path) as h5:
        return _read_attrs(h5)


def file_layout(path: str | os.PathLike[str]) -> str | None:
    """The layout whose arrays the file holds (``calochallenge`` / ``ild``), or None."""
    with _open(path) as h5:
        for spec in LAYOUTS.values():
            if all(isinstance(h5.get(p), h5py.Dataset) for p in (spec.energies_path, spec.showers_path)):
                return spec.name
    return None


def _inspect(h5: Any, path: Path, geometry: _Geometry | None, spec: FileLayoutSpec) -> ShowerFileInfo:
    for name in (spec.energies_path, spec.showers_path):
        if not isinstance(h5.get(name), h5py.Dataset):
            raise ShowerFileError(f"{path}: missing dataset {name!r} ({_found(h5, spec)})")
    energies, showers = h5[spec.energies_path], h5[spec.showers_path]
    _check_shapes(path, spec, energies.shape, showers.shape)
    for ds in (energies, showers):
        if not np.issubdtype(ds.dtype, np.floating):
            raise ShowerFileError(f"{path}: dataset {ds.name.lstrip('/')!r} has dtype {ds.dtype}, expected float")
    n_voxels = int(np.prod(showers.shape[1:]))
    if geometry is not None and n_voxels != geometry.n_voxels:
        message = f"{path}: showers have {n_voxels} voxels, the expected geometry has {geometry.n_voxels}"
        fits = [d.name for d in dataset_for_voxels(n_voxels) if spec.name == d.layout]
        if fits:
            message += f"; {n_voxels} voxels is {' / '.join(fits)} - wrong --dataset or file?"
        raise ShowerFileError(message)
    return ShowerFileInfo(
        path=path,
        n_showers=int(showers.shape[0]),
        n_voxels=n_voxels,
        dtype=showers.dtype,
        attrs=_read_attrs(h5),
        compression=showers.compression,
        layout=spec.name,
        shower_shape=tuple(int(d) for d in showers.shape[1:]),
    )


def _found(h5: Any, spec: FileLayoutSpec) -> str:
    where = h5[spec.group] if spec.group and isinstance(h5.get(spec.group), h5py.Group) else h5
    return f"found in {where.name}: {sorted(where.keys())}"


def _check_shapes(path: Path, spec: FileLayoutSpec, e_shape: tuple[int, ...], x_shape: tuple[int, ...]) -> None:
    if len(e_shape) != 2 or e_shape[1] != 1:
        raise ShowerFileError(f"{path}: {spec.energies_path} has shape {e_shape}, expected (N, 1)")
    if len(x_shape) != 1 + len(spec.shower_dims.split(",")):
        raise ShowerFileError(f"{path}: {spec.showers_path} has shape {x_shape}, expected (N, {spec.shower_dims})")
    if e_shape[0] != x_shape[0]:
        raise ShowerFileError(
            f"{path}: {spec.energies_path} has {e_shape[0]} rows but {spec.showers_path} has {x_shape[0]}; "
            "they must match"
        )
