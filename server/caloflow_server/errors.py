"""The server's errors and the ONE table both transports read to turn them into an HTTP status and a gRPC code.

Third-party failures (onnxruntime, torch, the model repository) are translated into these types once, where
they enter (the runtime and the loader); the HTTP and gRPC adapters only look errors up in
``ERROR_STATUS`` through ``status_for``. gRPC codes are stored as the names of ``grpc.StatusCode`` members so
that this module imports no transport.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

__all__ = [
    "ERROR_STATUS",
    "ArtifactIntegrityError",
    "CaloflowServerError",
    "DeviceOutOfMemoryError",
    "DrainingError",
    "ErrorStatus",
    "InferenceError",
    "InternalError",
    "InvalidArgumentError",
    "ModelNotLoadedError",
    "NonFiniteOutputError",
    "NotFoundError",
    "PrecisionNotEnabledError",
    "QueueFullError",
    "RequestCancelledError",
    "ResponseTooLargeError",
    "RuntimeLoadError",
    "UnavailableError",
    "UnknownModelError",
    "UnknownVersionError",
    "status_for",
]


class CaloflowServerError(Exception):
    """Base of every error the serving core raises on purpose."""


class InvalidArgumentError(CaloflowServerError, ValueError):
    """A request field is missing, malformed or out of range; ``field`` names it (``""`` for the whole request)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


class PrecisionNotEnabledError(InvalidArgumentError):
    """The request names a precision mode that the model version does not serve here (no gate record, a failed
    one, or one measured on another device class); the message lists the enabled modes."""

    def __init__(self, precision: str, model: str, version: int, device_class: str, enabled: tuple[str, ...]) -> None:
        super().__init__(
            "precision",
            f"{precision!r} is not enabled for {model} version {version} on {device_class} (ungated, failed or gated "
            f"on another device class); enabled: {', '.join(enabled)}",
        )
        self.enabled = enabled


class NotFoundError(CaloflowServerError, LookupError):
    """A named thing does not exist; ``field`` names the request field that named it (``""`` if none)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class UnknownModelError(NotFoundError):
    """No model (or no model for the particle) of that name is served."""


class UnknownVersionError(NotFoundError):
    """The model has no such version."""


class QueueFullError(CaloflowServerError):
    """The batcher is at its limit of queued showers or active requests; the request was not queued."""


class ResponseTooLargeError(CaloflowServerError):
    """An unary answer (OIP ModelInfer) would exceed the message size limit; streaming has no such limit."""


class UnavailableError(CaloflowServerError):
    """The server cannot take the request now (not ready, draining); retrying later or elsewhere may succeed."""


class DrainingError(UnavailableError):
    """The server is shutting down. ``next_index``: where a client resumes an interrupted stream, if any."""

    def __init__(self, message: str, next_index: int | None = None) -> None:
        super().__init__(message)
        self.next_index = next_index


class ModelNotLoadedError(UnavailableError):
    """The version exists in the repository but is not loaded (not ready)."""


class RequestCancelledError(CaloflowServerError):
    """The client went away or cancelled; nothing is sent any more."""


class InternalError(CaloflowServerError):
    """A server-side failure that no client input explains."""


class RuntimeLoadError(InternalError):
    """A model could not be loaded on the asked device (missing provider, bad graph, signature mismatch)."""


class ArtifactIntegrityError(RuntimeLoadError):
    """An artifact's bytes do not match the sha256 and size its manifest records."""


class InferenceError(InternalError):
    """The backend failed while running a batch."""


class DeviceOutOfMemoryError(InferenceError):
    """The device ran out of memory for a batch; a smaller batch or less load may succeed."""


class NonFiniteOutputError(InternalError):
    """The model produced NaN, infinite or negative voxel energies; they are never sent to a client."""

    def __init__(self, n_nonfinite: int, n_negative: int, bad_rows: int, n_rows: int) -> None:
        super().__init__(
            f"model output refused: {n_nonfinite} non-finite and {n_negative} negative voxel energies "
            f"in {bad_rows} of {n_rows} showers"
        )
        self.n_nonfinite = n_nonfinite
        self.n_negative = n_negative
        self.bad_rows = bad_rows
        self.n_rows = n_rows


@dataclass(frozen=True)
class ErrorStatus:
    """How a transport reports an error: HTTP status, gRPC status-code name, and a metrics ``reason`` label."""

    http_status: int
    grpc_code: str
    reason: str


_INVALID = ErrorStatus(400, "INVALID_ARGUMENT", "invalid")
_NOT_FOUND = ErrorStatus(404, "NOT_FOUND", "invalid")
_UNAVAILABLE = ErrorStatus(503, "UNAVAILABLE", "rejected")
_INTERNAL = ErrorStatus(500, "INTERNAL", "backend")

ERROR_STATUS: dict[type[CaloflowServerError], ErrorStatus] = {
    CaloflowServerError: ErrorStatus(500, "INTERNAL", "other"),
    InvalidArgumentError: _INVALID,
    PrecisionNotEnabledError: ErrorStatus(422, "INVALID_ARGUMENT", "invalid"),
    NotFoundError: _NOT_FOUND,
    UnknownModelError: _NOT_FOUND,
    UnknownVersionError: _NOT_FOUND,
    QueueFullError: ErrorStatus(429, "RESOURCE_EXHAUSTED", "rejected"),
    ResponseTooLargeError: ErrorStatus(413, "RESOURCE_EXHAUSTED", "invalid"),
    UnavailableError: _UNAVAILABLE,
    DrainingError: _UNAVAILABLE,
    ModelNotLoadedError: _UNAVAILABLE,
    RequestCancelledError: ErrorStatus(499, "CANCELLED", "canceled"),
    InternalError: _INTERNAL,
    RuntimeLoadError: _INTERNAL,
    ArtifactIntegrityError: _INTERNAL,
    InferenceError: _INTERNAL,
    DeviceOutOfMemoryError: ErrorStatus(503, "RESOURCE_EXHAUSTED", "backend"),
    NonFiniteOutputError: _INTERNAL,
}
"""Every error type of this module (a test pins that none is missing); subclasses elsewhere use their base's row."""

_UNEXPECTED = ErrorStatus(500, "INTERNAL", "other")


def status_for(error: BaseException) -> ErrorStatus:
    """The row of the nearest listed class in ``type(error)``'s MRO; asyncio cancellation is CANCELLED, any other
    exception INTERNAL."""
    if isinstance(error, asyncio.CancelledError):
        return ERROR_STATUS[RequestCancelledError]
    for cls in type(error).__mro__:
        status = ERROR_STATUS.get(cls)  # type: ignore[call-overload]
        if status is not None:
            return status
    return _UNEXPECTED
