"""Wire formats of the native ``POST /generate`` stream: the framed binary stream and streamed ``.npy``.

Framed stream, all integers little-endian, in two versions chosen by media type::

    stream   = preamble frame* status-frame
    preamble = "CALO" u32 format_version (1 or 2)                              8 bytes
    frame    = u8 type, u8 flags (0), u16 reserved (0), u32 payload_length, payload
    type 1   HEADER  payload: UTF-8 JSON object, the stream metadata (model, model_version, dataset,
                     shower_shape, file_layout, geometry_kind, sha256, seed, start_index, count, n_voxels,
                     dtype, energy_mev ...); always first
    type 2   DATA    version 1 payload: u64 start_index, u32 n_showers, u32 n_voxels, then n_showers * n_voxels
                     float32 voxel energies in MeV, row-major (shower after shower), shower indices consecutive;
                     version 2 payload: u64 start_index, u32 n_showers, u32 n_voxels, then n_showers float32
                     incident energies (MeV) of these showers, then the n_showers * n_voxels float32 voxels
    type 3   STATUS  payload: UTF-8 JSON object; always last: {"status": "ok" | "error" | "cancelled",
                     "showers_sent", "next_index", "sha256" (of every float32 byte of the DATA frames, in
                     order), and on error "error", "code" (gRPC status name), "http_status", "field"}

Versions. Version 1 (``application/octet-stream``, what every client before datasets asks for, and the
default) lists the per-shower form's incident energies in the HEADER (``energies_mev``): 10^6 energies put
~15 MB before the first shower. Version 2 (``application/vnd.caloflow.framed-v2``, or the body's
``"format": "framed-v2"``) carries each DATA frame's incident energies in that frame, and its HEADER says
``"energies": "per-frame"`` and lists none. An old client keeps asking for ``application/octet-stream`` (or
``"format": "framed"``) and keeps getting version 1 byte for byte, apart from HEADER keys added since (JSON
readers ignore them); a version 1 reader meeting a version 2 preamble refuses it by its version number.
A flat row of ``n_voxels`` reshapes (C order) to ``shower_shape``, the dataset's per-shower shape.

A stream that ends without a STATUS frame was cut (connection lost): resume at the last DATA frame's end.
An error after the first byte is reported in the STATUS frame (HTTP's status line is already sent); its
``next_index`` is where a request with the same seed resumes (``start_index = next_index``).

``.npy`` (``application/x-npy``): a version 1.0 header with the full shape ``(count, *shower_shape)`` (the
dataset's natural shape: ``(count, n_voxels)`` for CaloChallenge models), ``<f4``, then
the rows as they are generated; ``numpy.load`` reads the whole body. An error after the first byte aborts the
connection, so the body is visibly truncated rather than silently short.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from caloflow_server.errors import DrainingError, InvalidArgumentError, NotFoundError, status_for
from caloflow_server.service import StreamHeader, StreamTrailer

__all__ = [
    "FORMAT_VERSION",
    "FORMAT_VERSION_PER_FRAME_ENERGIES",
    "MAGIC",
    "PREAMBLE",
    "DecodedStream",
    "FrameType",
    "data_frame",
    "decode_framed",
    "header_document",
    "iter_frames",
    "json_frame",
    "npy_header",
    "preamble",
    "status_document",
    "stream_version",
]

MAGIC = b"CALO"
FORMAT_VERSION = 1
FORMAT_VERSION_PER_FRAME_ENERGIES = 2
FORMAT_VERSIONS = (FORMAT_VERSION, FORMAT_VERSION_PER_FRAME_ENERGIES)
PREAMBLE = MAGIC + struct.pack("<I", FORMAT_VERSION)
_FRAME = struct.Struct("<BBHI")
_DATA = struct.Struct("<QII")


class FrameType(IntEnum):
    HEADER = 1
    DATA = 2
    STATUS = 3


def json_frame(kind: FrameType, document: dict[str, Any]) -> bytes:
    payload = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
    return _FRAME.pack(kind, 0, 0, len(payload)) + payload


def preamble(version: int) -> bytes:
    """The 8 bytes that open a framed stream of ``version``."""
    return MAGIC + struct.pack("<I", version)


def data_frame(start_index: int, showers: np.ndarray, energies_mev: np.ndarray | None = None) -> bytes:
    """One DATA frame of ``showers`` (n, n_voxels) float32, the first being shower ``start_index``; with
    ``energies_mev`` (n,), the version 2 frame that carries them before the showers."""
    rows = np.ascontiguousarray(showers, dtype="<f4")
    n, n_voxels = rows.shape
    parts = [_DATA.pack(start_index, n, n_voxels)]
    if energies_mev is not None:
        parts.append(np.ascontiguousarray(energies_mev, dtype="<f4").reshape(n).tobytes())
    size = sum(len(part) for part in parts) + rows.nbytes
    return b"".join((_FRAME.pack(FrameType.DATA, 0, 0, size), *parts, rows.data))


def npy_header(count: int, shower_shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` v1.0 header of a C-order ``<f4`` array of shape ``(count, *shower_shape)``."""
    buffer = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (count, *shower_shape)}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def header_document(header: StreamHeader, version: int = FORMAT_VERSION) -> dict[str, Any]:
    """The HEADER frame's JSON (and the JSON answer's metadata); version 2 lists no per-shower energies."""
    document: dict[str, Any] = {
        "format": "caloflow-showers",
        "format_version": version,
        "model": header.model,
        "model_version": header.version,
        "particle": header.particle,
        "dataset": header.dataset,
        "shower_shape": list(header.shower_shape),
        "file_layout": header.file_layout,
        "geometry_kind": header.geometry_kind,
        "sha256": header.sha256,
        "seed": header.seed,
        "seed_drawn": header.seed_drawn,
        "start_index": header.start_index,
        "count": header.count,
        "n_voxels": header.n_voxels,
        "chunk_showers": header.chunk_showers,
        "dtype": header.dtype,
        "deterministic": header.deterministic,
        "extrapolated": header.extrapolated,
        "standin": header.standin,
    }
    if header.energies_mev is None:
        document["energy_mev"] = header.energy_mev
    elif version == FORMAT_VERSION:
        document["energies_mev"] = np.asarray(header.energies_mev, dtype=np.float32).tolist()
    else:
        document["energies"] = "per-frame"
    return document


def status_document(trailer: StreamTrailer) -> dict[str, Any]:
    """The STATUS frame's JSON."""
    document: dict[str, Any] = {
        "status": trailer.status,
        "showers_sent": trailer.showers_sent,
        "next_index": trailer.next_index,
        "sha256": trailer.sha256,
    }
    if trailer.error is not None:
        row = status_for(trailer.error)
        document.update(error=str(trailer.error), code=row.grpc_code, http_status=row.http_status)
        if isinstance(trailer.error, InvalidArgumentError | NotFoundError) and trailer.error.field:
            document["field"] = trailer.error.field
        if isinstance(trailer.error, DrainingError) and trailer.error.next_index is not None:
            document["next_index"] = trailer.error.next_index
    return document


# --------------------------------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class DecodedStream:
    """A whole framed stream read back: the HEADER document, the showers of every DATA frame, the STATUS
    document (None when the stream was cut before it), each DATA frame's (start_index, n_showers), the format
    version and, for version 2, the incident energies the DATA frames carried (None for version 1)."""

    header: dict[str, Any]
    showers: np.ndarray
    status: dict[str, Any] | None
    frames: list[tuple[int, int]]
    version: int = FORMAT_VERSION
    energies_mev: np.ndarray | None = None


def stream_version(data: bytes | memoryview) -> int:
    """The format version of a framed stream's preamble; ``ValueError`` when it is not one."""
    head = bytes(memoryview(data)[: len(PREAMBLE)])
    if len(head) < len(PREAMBLE) or head[:4] != MAGIC or struct.unpack("<I", head[4:])[0] not in FORMAT_VERSIONS:
        raise ValueError(f"not a caloflow framed stream (versions {FORMAT_VERSIONS}): starts {head!r}")
    return int(struct.unpack("<I", head[4:])[0])


def iter_frames(data: bytes | memoryview) -> Iterator[tuple[FrameType, memoryview]]:
    """(type, payload) of every complete frame after the preamble; ``ValueError`` on a malformed stream."""
    view = memoryview(data)
    stream_version(view)
    offset = len(PREAMBLE)
    while offset + _FRAME.size <= len(view):
        kind, _flags, _reserved, length = _FRAME.unpack_from(view, offset)
        start = offset + _FRAME.size
        if start + length > len(view):
            return  # a cut stream: the last frame is incomplete
        yield FrameType(kind), view[start : start + length]
        offset = start + length


def decode_framed(data: bytes | memoryview) -> DecodedStream:
    """Read a whole framed stream (for tests and small clients; a streaming client uses ``iter_frames``'s logic)."""
    version = stream_version(data)
    header: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    rows: list[np.ndarray] = []
    energies: list[np.ndarray] = []
    frames: list[tuple[int, int]] = []
    for kind, payload in iter_frames(data):
        if kind is FrameType.HEADER:
            header = json.loads(bytes(payload))
        elif kind is FrameType.STATUS:
            status = json.loads(bytes(payload))
        else:
            start_index, n, n_voxels = _DATA.unpack_from(payload)
            offset = _DATA.size
            if version == FORMAT_VERSION_PER_FRAME_ENERGIES:
                energies.append(np.frombuffer(payload[offset : offset + 4 * n], dtype="<f4"))
                offset += 4 * n
            rows.append(np.frombuffer(payload[offset:], dtype="<f4").reshape(n, n_voxels))
            frames.append((start_index, n))
    if header is None:
        raise ValueError("the stream has no HEADER frame")
    n_voxels = int(header["n_voxels"])
    showers = np.concatenate(rows) if rows else np.zeros((0, n_voxels), dtype="<f4")
    per_frame = None
    if version == FORMAT_VERSION_PER_FRAME_ENERGIES:
        per_frame = np.concatenate(energies) if energies else np.zeros(0, dtype="<f4")
    return DecodedStream(header, showers, status, frames, version, per_frame)
