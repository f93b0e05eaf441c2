"""The client's exceptions: one type per server status code, the same whether the answer came over HTTP or gRPC.

``ServerError`` carries what the server said: ``code`` (a gRPC status name, also on HTTP answers), ``message``
(the server's text, naming the field), ``field`` when the server named one, and ``next_index`` when a stream
ended early (a request with the same seed resumes there). ``TransportError`` is a failure to reach the server
or a connection lost mid-stream; the client retries both kinds that a retry can cure (``retryable``).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CaloflowClientError",
    "ClientTimeoutError",
    "InternalServerError",
    "InvalidArgumentError",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "RequestCancelledError",
    "ResourceExhaustedError",
    "ResumeMismatchError",
    "ServerError",
    "TransportError",
    "UnauthenticatedError",
    "UnavailableError",
    "server_error",
]


class CaloflowClientError(Exception):
    """Base of every error this package raises."""

    retryable: ClassVar[bool] = False


class InvalidRequestError(CaloflowClientError, ValueError):
    """The request is malformed before it is sent (``field`` names the argument); the server checks values."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class ServerError(CaloflowClientError):
    """The server refused or failed the request; ``message`` is the server's own text."""

    default_code: ClassVar[str] = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        next_index: int | None = None,
        http_status: int | None = None,
    ) -> None:
        self.code = code or self.default_code
        self.message = message
        self.field = field or None
        self.next_index = next_index
        self.http_status = http_status
        super().__init__(f"{self.code}: {message}")


class InvalidArgumentError(ServerError):
    default_code = "INVALID_ARGUMENT"


class NotFoundError(ServerError):
    default_code = "NOT_FOUND"


class ResourceExhaustedError(ServerError):
    """Queue full or device memory: the server may take the request a little later."""

    default_code = "RESOURCE_EXHAUSTED"
    retryable = True


class UnavailableError(ServerError):
    """Not ready, draining, or (gRPC) not reachable: retried, resuming at ``next_index`` when the stream had begun."""

    default_code = "UNAVAILABLE"
    retryable = True


class InternalServerError(ServerError):
    default_code = "INTERNAL"


class RequestCancelledError(ServerError):
    default_code = "CANCELLED"


class UnauthenticatedError(ServerError):
    default_code = "UNAUTHENTICATED"


class PermissionDeniedError(ServerError):
    default_code = "PERMISSION_DENIED"


_BY_CODE: dict[str, type[ServerError]] = {
    cls.default_code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        ResourceExhaustedError,
        UnavailableError,
        InternalServerError,
        RequestCancelledError,
        UnauthenticatedError,
        PermissionDeniedError,
    )
}


def server_error(
    code: str,
    message: str,
    *,
    field: str | None = None,
    next_index: int | None = None,
    http_status: int | None = None,
) -> ServerError:
    """The typed error of a status code name (``ServerError`` itself for codes without a subclass)."""
    cls = _BY_CODE.get(code, ServerError)
    return cls(message, code=code, field=field, next_index=next_index, http_status=http_status)


class TransportError(CaloflowClientError):
    """The server could not be reached, or the connection broke mid-stream (the client resumes)."""

    retryable = True


class ClientTimeoutError(TransportError):
    """Nothing arrived for ``timeout_s`` seconds (connecting, or between two chunks of a stream)."""


class ProtocolError(CaloflowClientError):
    """The answer does not follow the wire format (bad frame, checksum mismatch, shower indices out of order)."""


class ResumeMismatchError(ProtocolError):
    """A resumed stream came from another model artifact or seed, so it could not continue the first one."""
