"""Server addresses: ``http://host:port`` or ``host:port`` for HTTP (default port 8000), ``host:port`` for gRPC
(default port 8001)."""

from __future__ import annotations

import re

from caloflow_client.errors import InvalidRequestError

__all__ = ["DEFAULT_GRPC_PORT", "DEFAULT_HTTP_PORT", "grpc_target", "http_url"]

DEFAULT_HTTP_PORT = 8000
DEFAULT_GRPC_PORT = 8001
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\[\]\s]+)(?::(?P<port>\d{1,5}))?$")


def http_url(server: str) -> str:
    """The base URL of an HTTP server address (no trailing slash)."""
    text = server.strip().rstrip("/")
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise InvalidRequestError("server", f"{server!r}: an HTTP address starts with http:// or https://")
        return text
    host, port = _split(server, DEFAULT_HTTP_PORT)
    return f"http://{host}:{port}"


def grpc_target(server: str) -> str:
    """The ``host:port`` target of a gRPC server address (``grpc://`` prefix allowed)."""
    text = server.strip().rstrip("/")
    if text.lower().startswith("grpc://"):
        text = text[len("grpc://") :]
    elif "://" in text:
        raise InvalidRequestError("server", f"{server!r}: give the gRPC server as host:port (default port 8001)")
    host, port = _split(text, DEFAULT_GRPC_PORT)
    return f"{host}:{port}"


def _split(address: str, default_port: int) -> tuple[str, int]:
    match = _HOST_PORT.match(address.strip())
    if match is None:
        raise InvalidRequestError("server", f"{address!r} is not host:port")
    port = int(match.group("port") or default_port)
    if not 0 < port < 65536:
        raise InvalidRequestError("server", f"{address!r}: port {port} is out of range")
    return match.group("host"), port
