"""What the native and OIP HTTP routes share: error answers from the one table, body limits, request ids, tokens.

Every error answer is JSON ``{"error": "...", "code": "<gRPC status name>", "field": "..."}`` (``field`` when the
error names one), with the HTTP status of ``errors.status_for``. Only HTTP-specific conditions are decided here:
413 (body too large), 401/403 (model control), 404/405 for unknown routes.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from caloflow_server.errors import (
    CaloflowServerError,
    DrainingError,
    InvalidArgumentError,
    NotFoundError,
    status_for,
)
from caloflow_server.metrics import RequestObserver
from caloflow_server.service import GenerationStream

__all__ = [
    "BodyLimitMiddleware",
    "BodyTooLargeError",
    "TrackedGeneration",
    "bearer_token_matches",
    "error_response",
    "install_error_handlers",
    "request_id_of",
    "validation_error",
]

logger = logging.getLogger(__name__)

_RETRY_AFTER_S = "1"


class BodyTooLargeError(Exception):
    """The request body is over the configured limit (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body exceeds the limit of {limit} bytes")
        self.limit = limit


def error_response(error: BaseException, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error answer of any exception, its status from the one table (unexpected ones: 500, no details)."""
    row = status_for(error)
    if isinstance(error, CaloflowServerError):
        document: dict[str, Any] = {"error": str(error), "code": row.grpc_code}
    else:
        document = {"error": "internal server error", "code": row.grpc_code}
    if isinstance(error, InvalidArgumentError | NotFoundError) and error.field:
        document["field"] = error.field
    if isinstance(error, DrainingError) and error.next_index is not None:
        document["next_index"] = error.next_index
    extra = dict(headers or {})
    if row.http_status in (429, 503):
        extra["Retry-After"] = _RETRY_AFTER_S
    return JSONResponse(document, status_code=row.http_status, headers=extra)


def validation_error(error: ValidationError) -> InvalidArgumentError:
    """The first pydantic error as an ``InvalidArgumentError`` naming the field (``energies_mev[3]``)."""
    first = error.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return InvalidArgumentError("", f"malformed JSON body: {first['msg']}")
    loc = first["loc"]
    field = str(loc[0]) if loc else ""
    field += "".join(f"[{part}]" for part in loc[1:] if isinstance(part, int))
    message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    return InvalidArgumentError(field, message)


def request_id_of(request: Request) -> str:
    """The client's ``X-Request-Id`` when it is short printable ASCII, else a fresh one."""
    given = request.headers.get("x-request-id", "")
    if 0 < len(given) <= 64 and given.isascii() and given.isprintable():
        return given
    return uuid.uuid4().hex[:16]


def bearer_token_matches(request: Request, token: str) -> bool:
    """Whether ``Authorization: Bearer <token>`` carries ``token`` (constant-time comparison)."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), token.encode())


class BodyLimitMiddleware:
    """ASGI middleware: 413 at once for a declared ``Content-Length`` over the limit; ``BodyTooLargeError`` from
    ``receive`` when a body without one grows over it (the route's error handler answers 413)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            response = _too_large(BodyTooLargeError(self.max_body_bytes))
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLargeError(self.max_body_bytes)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(error: BodyTooLargeError) -> JSONResponse:
    return JSONResponse({"error": str(error), "code": "RESOURCE_EXHAUSTED"}, status_code=413)


def install_error_handlers(app: FastAPI) -> None:
    """JSON error bodies for everything that escapes a route: our errors, 413, unknown routes, and bugs (500)."""

    async def too_large(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BodyTooLargeError)
        return _too_large(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    async def caloflow_error(request: Request, exc: Exception) -> Response:
        return error_response(exc)

    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected failure in %s %s", request.method, request.url.path)
        return error_response(exc)

    app.add_exception_handler(BodyTooLargeError, too_large)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(CaloflowServerError, caloflow_error)
    app.add_exception_handler(Exception, unexpected)


class TrackedGeneration:
    """One admitted request's service stream, with its end-of-request accounting: ``close`` (idempotent) closes
    the stream, reports the outcome and latencies to the observer and logs the one INFO line of the request."""

    def __init__(
        self, stream: GenerationStream, request_id: str, observer: RequestObserver, protocol: str, started: float
    ) -> None:
        self.stream = stream
        self.request_id = request_id
        self.observer = observer
        self.protocol = protocol
        self.started = started
        self.first_chunk_seconds: float | None = None
        self._closed = False

    def mark_chunk(self) -> None:
        if self.first_chunk_seconds is None:
            self.first_chunk_seconds = time.perf_counter() - self.started

    async def collect(self) -> tuple[np.ndarray, np.ndarray]:
        """Every shower: (energies (n,), showers (n, n_voxels)); raises the stream's error."""
        energies, showers = [], []
        async for chunk in self.stream:
            self.mark_chunk()
            energies.append(chunk.energies_mev)
            showers.append(chunk.showers)
        if not showers:
            return np.zeros(0, np.float32), np.zeros((0, self.stream.header.n_voxels), np.float32)
        return np.concatenate(energies), np.concatenate(showers)

    @property
    def outcome(self) -> str:
        """ "ok", "canceled", or the reason of the stream's error (once closed)."""
        trailer = self.stream.trailer
        if trailer.status == "ok":
            return "ok"
        return status_for(trailer.error).reason if trailer.error is not None else "canceled"

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.stream.aclose()
        header, trailer, status = self.stream.header, self.stream.trailer, self.outcome
        duration = time.perf_counter() - self.started
        self.observer.request_completed(
            self.protocol, header.model, str(header.version), status, duration, self.first_chunk_seconds
        )
        stats = trailer.stats
        logger.info(
            "request %s %s: %s@%d %d/%d showers %s, queue %.1f ms, compute %.1f ms, total %.1f ms",
            self.request_id,
            self.protocol,
            header.model,
            header.version,
            trailer.showers_sent,
            header.count,
            status,
            1e3 * (stats.queue_seconds if stats else 0.0),
            1e3 * (stats.compute_seconds if stats else 0.0),
            1e3 * duration,
        )
