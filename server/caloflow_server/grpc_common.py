"""What both gRPC services share: errors to gRPC statuses (through ``errors.status_for``), per-request accounting
(one INFO line per request, Triton-style cumulative model statistics, an optional observer for metrics).

Imported by the gRPC adapter modules only; imports no generated stub.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

import grpc

from caloflow_server.batcher import RequestStats
from caloflow_server.errors import status_for

__all__ = [
    "NEXT_INDEX_KEY",
    "Accounting",
    "GrpcRequestObserver",
    "GrpcRequestRecord",
    "ModelCounters",
    "RequestTracker",
    "abort_with",
    "grpc_code",
]

logger = logging.getLogger(__name__)

NEXT_INDEX_KEY = "caloflow-next-index"
"""Trailing-metadata key of the first shower index not sent, on a Generate call that ended with an error."""
ERROR_FIELD_KEY = "caloflow-error-field"
"""Trailing-metadata key naming the request field an INVALID_ARGUMENT / NOT_FOUND error is about."""


def grpc_code(error: BaseException) -> grpc.StatusCode:
    """The gRPC status code of ``error``, read from the one error table."""
    return grpc.StatusCode[status_for(error).grpc_code]


async def abort_with(
    context: grpc.aio.ServicerContext, error: BaseException, trailing: Iterable[tuple[str, str]] = ()
) -> NoReturn:
    """End the call with ``error``'s status and message; the request field it names goes in trailing metadata."""
    if status_for(error).grpc_code == "INTERNAL":
        logger.error("gRPC request failed: %s", error, exc_info=error)
    metadata = list(trailing)
    field_name = getattr(error, "field", "")
    if isinstance(field_name, str) and field_name:
        metadata.append((ERROR_FIELD_KEY, field_name))
    await context.abort(grpc_code(error), _message(error), trailing_metadata=tuple(metadata))
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


def _message(error: BaseException) -> str:
    text = str(error)
    if status_for(error).grpc_code == "INTERNAL" and not text:
        return f"internal error ({type(error).__name__})"
    return text or type(error).__name__


@dataclass(frozen=True)
class GrpcRequestRecord:
    """One finished gRPC request, for metrics. ``protocol``: "grpc" (caloflow.v1) or "grpc_oip" (inference.*).
    ``model``/``version`` are None when the request was refused before admission (invalid, unknown, queue full)."""

    protocol: str
    method: str
    model: str | None
    version: int | None
    code: str
    """gRPC status code name; "OK" on success."""
    reason: str | None
    """``errors.status_for(error).reason`` of a failure (rejected, invalid, canceled, backend, other)."""
    showers: int
    response_bytes: int
    duration_seconds: float
    first_chunk_seconds: float | None
    queue_seconds: float
    compute_seconds: float


class GrpcRequestObserver(Protocol):
    """Metrics hooks of the gRPC adapter; called on the event loop; exceptions are logged and ignored."""

    def on_stream_open(self, protocol: str) -> None: ...

    def on_stream_close(self, protocol: str) -> None: ...

    def on_request(self, record: GrpcRequestRecord) -> None: ...


@dataclass
class ModelCounters:
    """Cumulative statistics of one model version, as Triton's ModelStatistics reports them (ns, counts)."""

    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    queue_ns: int = 0
    compute_ns: int = 0
    compute_count: int = 0
    inference_count: int = 0
    last_inference_ms: int = 0


class Accounting:
    """Request bookkeeping shared by the gRPC services: log line, model counters, observer."""

    def __init__(self, observer: GrpcRequestObserver | None = None) -> None:
        self.observer = observer
        self._counters: dict[tuple[str, int], ModelCounters] = {}

    def track(self, protocol: str, method: str, request_id: str = "") -> RequestTracker:
        return RequestTracker(self, protocol, method, request_id)

    def counters(self, model: str, version: int) -> ModelCounters:
        return self._counters.get((model, version), ModelCounters())

    def notify(self, hook: str, *args: object) -> None:
        if self.observer is None:
            return
        try:
            getattr(self.observer, hook)(*args)
        except Exception:
            logger.exception("gRPC request observer hook %s failed", hook)

    def record(self, record: GrpcRequestRecord) -> None:
        if record.model is not None and record.version is not None:
            _count(self._counters.setdefault((record.model, record.version), ModelCounters()), record)
        self.notify("on_request", record)


def _count(counters: ModelCounters, record: GrpcRequestRecord) -> None:
    duration_ns = int(record.duration_seconds * 1e9)
    if record.code == "OK":
        counters.success_count += 1
        counters.success_ns += duration_ns
    else:
        counters.fail_count += 1
        counters.fail_ns += duration_ns
    counters.queue_ns += int(record.queue_seconds * 1e9)
    counters.compute_ns += int(record.compute_seconds * 1e9)
    counters.compute_count += 1 if record.compute_seconds > 0 else 0
    counters.inference_count += record.showers
    counters.last_inference_ms = int(time.time() * 1000)


@dataclass
class RequestTracker:
    """The life of one request: where it went, what it sent, how it ended; ``finish`` logs and records it once."""

    accounting: Accounting
    protocol: str
    method: str
    request_id: str = ""
    model: str | None = None
    version: int | None = None
    showers: int = 0
    response_bytes: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_chunk_seconds: float | None = None
    stats: RequestStats | None = None
    finished: bool = False

    def resolved(self, model: str, version: int) -> None:
        self.model, self.version = model, version

    def sent(self, showers: int, nbytes: int) -> None:
        if self.first_chunk_seconds is None and showers:
            self.first_chunk_seconds = time.perf_counter() - self.started
        self.showers += showers
        self.response_bytes += nbytes

    def ok(self) -> None:
        self._finish("OK", None)

    def failed(self, error: BaseException) -> None:
        status = status_for(error)
        self._finish(status.grpc_code, status.reason)

    def cancelled(self) -> None:
        self.failed(asyncio.CancelledError())

    def _finish(self, code: str, reason: str | None) -> None:
        if self.finished:
            return
        self.finished = True
        duration = time.perf_counter() - self.started
        stats = self.stats
        queue = stats.queue_seconds if stats is not None else 0.0
        compute = stats.compute_seconds if stats is not None else 0.0
        logger.info(
            "%s %s id=%s %s@%s showers=%d bytes=%d code=%s queue_ms=%.1f compute_ms=%.1f duration_ms=%.1f",
            self.protocol,
            self.method,
            self.request_id or (stats.request_id if stats is not None else "-"),
            self.model or "-",
            self.version if self.version is not None else "-",
            self.showers,
            self.response_bytes,
            code,
            queue * 1e3,
            compute * 1e3,
            duration * 1e3,
        )
        self.accounting.record(
            GrpcRequestRecord(
                self.protocol,
                self.method,
                self.model,
                self.version,
                code,
                reason,
                self.showers,
                self.response_bytes,
                duration,
                self.first_chunk_seconds,
                queue,
                compute,
            )
        )
