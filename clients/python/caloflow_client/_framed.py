"""Incremental decoder of the HTTP framed stream (``application/octet-stream`` of ``POST /generate``).

Format (the server's ``http_framing``), little-endian: ``"CALO" u32 version`` then frames ``u8 type, u8 flags,
u16 reserved, u32 length, payload``: HEADER (1, JSON), DATA (2, ``u64 start_index, u32 n, u32 n_voxels``, in
version 2 ``n`` float32 incident energies, then ``n * n_voxels`` float32), STATUS (3, JSON, always last). This
client asks for version 2 and reads both. Bytes arrive in arbitrary pieces; ``feed`` returns the
frames completed so far, so each chunk is handed on as soon as its last byte is in.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from caloflow_client._events import DataEvent, TrailerEvent
from caloflow_client.errors import ProtocolError, TransportError, server_error

__all__ = ["FrameDecoder", "HeaderDocument", "status_event"]

_MAGIC = b"CALO"
_PREAMBLE = _MAGIC + struct.pack("<I", 1)
_PER_FRAME_ENERGIES = 2
_FRAME = struct.Struct("<BBHI")
_DATA = struct.Struct("<QII")
_HEADER, _DATA_TYPE, _STATUS = 1, 2, 3
_MAX_JSON_BYTES = 64 << 20


class HeaderDocument(dict[str, Any]):
    """The HEADER frame's JSON (the transport turns it into ``GenerationInfo``)."""


class FrameDecoder:
    """Feed bytes in, get ``HeaderDocument`` / ``DataEvent`` / ``TrailerEvent`` out; ``finish`` at end of body."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._started = False
        self.version = 0
        self.ended = False

    def feed(self, data: bytes) -> list[HeaderDocument | DataEvent | TrailerEvent]:
        self._buffer += data
        if not self._started:
            if len(self._buffer) < len(_PREAMBLE):
                return []
            head = bytes(self._buffer[: len(_PREAMBLE)])
            version = struct.unpack("<I", head[4:])[0]
            if head[:4] != _MAGIC or version not in (1, _PER_FRAME_ENERGIES):
                raise ProtocolError(f"not a caloflow framed stream (version 1 or 2): starts {head!r}")
            self.version = version
            del self._buffer[: len(_PREAMBLE)]
            self._started = True
        return self._frames()

    def finish(self) -> None:
        """The body ended: without a STATUS frame the connection was cut (a resumable ``TransportError``)."""
        if not self.ended:
            raise TransportError(f"the stream was cut before its status frame ({len(self._buffer)} bytes pending)")

    def _frames(self) -> list[HeaderDocument | DataEvent | TrailerEvent]:
        events: list[HeaderDocument | DataEvent | TrailerEvent] = []
        offset = 0
        view = memoryview(self._buffer)
        try:
            while offset + _FRAME.size <= len(view):
                kind, _flags, _reserved, length = _FRAME.unpack_from(view, offset)
                start = offset + _FRAME.size
                if start + length > len(view):
                    break
                events.append(self._frame(kind, view[start : start + length]))
                offset = start + length
        finally:
            view.release()
        del self._buffer[:offset]
        return events

    def _frame(self, kind: int, payload: memoryview) -> HeaderDocument | DataEvent | TrailerEvent:
        if self.ended:
            raise ProtocolError("a frame after the STATUS frame")
        if kind == _DATA_TYPE:
            return _data(payload, self.version == _PER_FRAME_ENERGIES)
        if kind not in (_HEADER, _STATUS) or len(payload) > _MAX_JSON_BYTES:
            raise ProtocolError(f"unknown frame type {kind} ({len(payload)} bytes)")
        document = json.loads(bytes(payload))
        if kind == _HEADER:
            return HeaderDocument(document)
        self.ended = True
        return status_event(document)


def _data(payload: memoryview, with_energies: bool) -> DataEvent:
    start_index, n, n_voxels = _DATA.unpack_from(payload)
    offset = _DATA.size + (4 * n if with_energies else 0)
    if len(payload) != offset + 4 * n * n_voxels:
        raise ProtocolError(f"DATA frame of {n} x {n_voxels} showers has {len(payload)} bytes")
    showers = np.frombuffer(payload, dtype="<f4", offset=offset).reshape(n, n_voxels).astype(np.float32)
    if not with_energies:
        return DataEvent(start_index, showers)
    energies = np.frombuffer(payload, dtype="<f4", count=n, offset=_DATA.size).astype(np.float32)
    return DataEvent(start_index, showers, energies)


def status_event(document: dict[str, Any]) -> TrailerEvent:
    """The STATUS frame's JSON as a trailer; an error status carries the typed error with ``next_index``."""
    status = str(document.get("status", ""))
    next_index = int(document.get("next_index", 0))
    error = None
    if status != "ok":
        error = server_error(
            str(document.get("code") or ("CANCELLED" if status == "cancelled" else "UNKNOWN")),
            str(document.get("error") or f"the stream ended with status {status!r}"),
            field=document.get("field"),
            next_index=next_index,
            http_status=document.get("http_status"),
        )
    return TrailerEvent(
        status, int(document.get("showers_sent", 0)), next_index, str(document.get("sha256", "")), error
    )
