"""Writing a stream straight to a file, chunk by chunk (O(chunk) memory), and reading incident-energy files.

HDF5 output is the official layout of the stream's dataset (the header's ``file_layout``), as the project's
``caloflow data`` tools read it: ``calochallenge``: ``incident_energies`` ``(N, 1)`` and ``showers``
``(N, n_voxels)`` in MeV; ``ild``: group ``<x>x<z>`` (``30x30``) with ``energy`` ``(N, 1)`` in **GeV** and
``layers`` ``(N, *shower_shape)`` (``(N, 30, 30, 30)``) in MeV. Gzip-compressed, chunked, no dataset
timestamps, with the stream's provenance (server, model, version, dataset, artifact sha256, seed, stand-in
flag) as file attributes. ``.npy`` output is one float32 ``(N, *shower_shape)`` array (showers only, as the
server's ``application/x-npy``). Both are
written to a temporary file in the target directory and renamed on success, so a failed download never leaves
a file under the final name.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import DTypeLike, NDArray

from caloflow_client.errors import InvalidRequestError
from caloflow_client.results import GenerationInfo, ShowerChunk

__all__ = [
    "Hdf5ShowerWriter",
    "NpyShowerWriter",
    "ShowerFileWriter",
    "check_output_path",
    "open_writer",
    "read_energies_file",
]

ENERGIES = "incident_energies"
SHOWERS = "showers"
ILD_ENERGY = "energy"
ILD_LAYERS = "layers"
ILD_ENERGY_UNIT_MEV = 1000.0  # the ILD files store incident energies in GeV
_CHUNK_BYTES = 1 << 20
HDF5_SUFFIXES = (".h5", ".hdf5")
NPY_SUFFIXES = (".npy",)


class ShowerFileWriter(Protocol):
    def append(self, chunk: ShowerChunk) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def open_writer(path: str | os.PathLike[str], info: GenerationInfo, dtype: DTypeLike = np.float32) -> ShowerFileWriter:
    """A writer for ``path`` by its suffix: ``.h5``/``.hdf5`` (CaloChallenge) or ``.npy``."""
    if check_output_path(path) in HDF5_SUFFIXES:
        return Hdf5ShowerWriter(path, info, dtype)
    return NpyShowerWriter(path, info)


def check_output_path(path: str | os.PathLike[str]) -> str:
    """The suffix of a supported output file name (checked before any shower is generated)."""
    suffix = Path(path).suffix.lower()
    if suffix not in HDF5_SUFFIXES + NPY_SUFFIXES:
        raise InvalidRequestError("path", f"{path}: write .h5, .hdf5 or .npy, not {suffix or 'no suffix'!r}")
    return suffix


def _temporary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


class _AtomicShowerFile:
    """A file of exactly ``count`` showers, written under a temporary name and renamed on ``close``; ``abort`` (or a
    short ``close``) removes it. Subclasses open ``_file`` on ``_tmp`` and write the rows in ``_write``."""

    _file: Any

    def __init__(self, path: str | os.PathLike[str], count: int) -> None:
        self.path = Path(path)
        self.rows = 0
        self._expected = count
        self._tmp = _temporary(self.path)

    def append(self, chunk: ShowerChunk) -> None:
        stop = self.rows + chunk.n_showers
        if stop > self._expected:
            raise ValueError(f"{self.path}: more than the {self._expected} showers expected")
        self._write(chunk)
        self.rows = stop

    def _write(self, chunk: ShowerChunk) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if self._file is None:
            return
        if self.rows != self._expected:
            self.abort()
            raise ValueError(f"{self.path}: {self.rows} of {self._expected} showers written; file dropped")
        self._file.close()
        self._file = None
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)


class Hdf5ShowerWriter(_AtomicShowerFile):
    """The dataset's official HDF5 layout (``info.file_layout``), datasets pre-sized to the request's count;
    appears under ``path`` on ``close``."""

    def __init__(self, path: str | os.PathLike[str], info: GenerationInfo, dtype: DTypeLike = np.float32) -> None:
        import h5py  # only file output needs it

        self._dtype = np.dtype(dtype)
        if not np.issubdtype(self._dtype, np.floating):
            raise InvalidRequestError("dtype", f"must be a floating type, got {self._dtype}")
        super().__init__(path, info.count)
        self._file = h5py.File(self._tmp, "w")
        try:
            self._create(info)
        except BaseException:
            self.abort()
            raise

    def _create(self, info: GenerationInfo) -> None:
        rows = max(1, _CHUNK_BYTES // (info.n_voxels * self._dtype.itemsize))
        common: dict[str, Any] = {"dtype": self._dtype, "compression": "gzip", "track_times": False}
        count, shape = info.count, info.shape
        names, self._energy_unit_mev = _layout(info)
        group = self._file.require_group(names[0]) if names[0] else self._file
        self._energies = group.create_dataset(
            names[1], shape=(count, 1), chunks=(min(count, max(rows, 4096)), 1), **common
        )
        self._showers = group.create_dataset(
            names[2], shape=(count, *shape), chunks=(min(count, rows), *shape), **common
        )
        self._shape = shape
        for key, value in info.provenance().items():
            self._file.attrs[key] = value

    def _write(self, chunk: ShowerChunk) -> None:
        stop = self.rows + chunk.n_showers
        self._energies[self.rows : stop, 0] = chunk.incident_energy_mev / self._energy_unit_mev
        self._showers[self.rows : stop] = chunk.showers.reshape(chunk.n_showers, *self._shape)


def _layout(info: GenerationInfo) -> tuple[tuple[str, str, str], float]:
    """(group, energies, showers) names and the energy unit (MeV) of the stream's official file layout."""
    if info.file_layout == "calochallenge":
        return ("", ENERGIES, SHOWERS), 1.0
    if info.file_layout == "ild":
        shape = info.shape
        if len(shape) != 3:
            raise InvalidRequestError("path", f"an ILD file needs a (layers, x, z) shower shape, got {shape}")
        return (f"{shape[1]}x{shape[2]}", ILD_ENERGY, ILD_LAYERS), ILD_ENERGY_UNIT_MEV
    raise InvalidRequestError(
        "path", f"{info.dataset}: no HDF5 writer for file layout {info.file_layout!r}; write .npy instead"
    )


class NpyShowerWriter(_AtomicShowerFile):
    """A ``.npy`` v1.0 float32 ``(count, *shower_shape)`` array, rows appended as they come."""

    def __init__(self, path: str | os.PathLike[str], info: GenerationInfo) -> None:
        super().__init__(path, info.count)
        self._file = self._tmp.open("wb")
        header = {"descr": "<f4", "fortran_order": False, "shape": (info.count, *info.shape)}
        np.lib.format.write_array_header_1_0(self._file, header)

    def _write(self, chunk: ShowerChunk) -> None:
        self._file.write(np.ascontiguousarray(chunk.showers, dtype="<f4").tobytes())


def read_energies_file(path: str | os.PathLike[str]) -> NDArray[np.float64]:
    """Incident energies (MeV) from text (numbers separated by white space, ``#`` comments), ``.npy`` or HDF5
    (its ``incident_energies`` dataset, e.g. a CaloChallenge file, or an ILD file's ``30x30/energy`` in GeV), as a
    flat array in MeV."""
    p = Path(path)
    if not p.is_file():
        raise InvalidRequestError("energies_file", f"{p}: no such file")
    suffix = p.suffix.lower()
    try:
        if suffix in HDF5_SUFFIXES:
            energies = _read_hdf5_energies(p)
        elif suffix in NPY_SUFFIXES:
            energies = np.load(p, allow_pickle=False)
        else:
            energies = np.loadtxt(p, dtype=np.float64, comments="#", ndmin=1)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidRequestError("energies_file", f"{p}: cannot read incident energies ({exc})") from None
    array = np.asarray(energies, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or array.size == 0:
        raise InvalidRequestError(
            "energies_file", f"{p}: expected a non-empty list of energies, got shape {array.shape}"
        )
    return array


def _read_hdf5_energies(path: Path) -> NDArray[np.float64]:
    import h5py

    with h5py.File(path, "r") as h5:
        if ENERGIES in h5:
            return np.asarray(h5[ENERGIES][...], dtype=np.float64)
        for name in sorted(h5.keys()):  # the ILD layout: <x>x<z>/energy in GeV
            entry = h5[name]
            if isinstance(entry, h5py.Group) and ILD_ENERGY in entry:
                return np.asarray(entry[ILD_ENERGY][...], dtype=np.float64) * ILD_ENERGY_UNIT_MEV
        raise KeyError(f"no {ENERGIES!r} dataset nor an ILD '<x>x<z>/{ILD_ENERGY}' (found: {sorted(h5.keys())})")
