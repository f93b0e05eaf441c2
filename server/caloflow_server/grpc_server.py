"""The gRPC server: ``caloflow.v1.ShowerService`` (native streaming), ``inference.GRPCInferenceService`` (Open
Inference Protocol v2 + the Triton subset CMS SONIC uses) and ``grpc.health.v1.Health``, on one ``grpc.aio``
server that shares the event loop with the HTTP app and the batchers.

``build_grpc_server`` returns the server unstarted; the caller owns its life::

    server = build_grpc_server(service, host="0.0.0.0", port=8001, readiness=lambda: state.ready)
    await server.start()
    ...
    await service.aclose(drain_timeout_s)   # open streams end with UNAVAILABLE + next_index
    await server.stop(grace_s)

The generated stubs (``caloflow_server._proto``, built by ``gen_protos.py``) are imported when a server is
built, not when this module is imported, so the HTTP side can import it in a tree without stubs.
"""

from __future__ import annotations

import importlib.metadata
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from caloflow_server.grpc_common import Accounting, GrpcRequestObserver, GrpcRequestRecord
from caloflow_server.grpc_probes import add_health_servicer
from caloflow_server.service import GenerationService

if TYPE_CHECKING:
    from caloflow_server.grpc_native import ShowerServicer
    from caloflow_server.grpc_oip import InferenceServicer

__all__ = [
    "DEFAULT_MAX_RECEIVE_MESSAGE_BYTES",
    "DEFAULT_MAX_SEND_MESSAGE_BYTES",
    "MAX_MESSAGE_BYTES",
    "SERVICE_NAMES",
    "GrpcRequestObserver",
    "GrpcRequestRecord",
    "bound_port",
    "build_grpc_server",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = 64 * 1024 * 1024
"""Requests: 64 MiB (Triton's HTTP input limit) holds 16 M energies of a per-shower request."""
MAX_MESSAGE_BYTES = 2**31 - 1
"""gRPC's hard ceiling on one message."""
DEFAULT_MAX_SEND_MESSAGE_BYTES = MAX_MESSAGE_BYTES
"""Responses: the ceiling. Streamed chunks are ~2 MiB; only a unary ModelInfer comes near it."""
RESPONSE_FRAMING_BYTES = 1024 * 1024
"""Room left in a ModelInfer response for everything but the shower bytes (names, shapes, parameters)."""
SERVICE_NAMES = ("caloflow.v1.ShowerService", "inference.GRPCInferenceService")
SERVER_NAME = "caloflow-serve"

_BOUND_PORTS: weakref.WeakKeyDictionary[grpc.aio.Server, int] = weakref.WeakKeyDictionary()


def build_grpc_server(
    service: GenerationService,
    *,
    host: str = "0.0.0.0",
    port: int = 8001,
    readiness: Callable[[], bool],
    liveness: Callable[[], bool] | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    max_concurrent_rpcs: int | None = None,
    max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
    max_send_message_bytes: int = DEFAULT_MAX_SEND_MESSAGE_BYTES,
    max_infer_response_bytes: int | None = None,
    observer: GrpcRequestObserver | None = None,
) -> grpc.aio.Server:
    """An unstarted ``grpc.aio`` server bound to ``host:port`` (``port=0``: an ephemeral port, see ``bound_port``).

    Call it on the event loop that runs ``service``. ``readiness``: whether to take requests (ServerReady,
    ModelReady, health; a draining ``service`` is never ready); ``liveness``: ServerLive (default: always).
    ``tls_cert``/``tls_key``: PEM file paths, both or neither. ``max_concurrent_rpcs``: further RPCs are
    refused with RESOURCE_EXHAUSTED (None: no limit; grpc.aio runs handlers as tasks, there are no workers).
    ``max_infer_response_bytes``: the most shower bytes (``count * n_voxels * 4``) of one unary ModelInfer
    (default: the send limit less 1 MiB); larger requests get RESOURCE_EXHAUSTED naming the streaming API.
    ``observer``: metrics hooks per request and stream.
    """
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("give both tls_cert and tls_key, or neither")
    if not 1 <= max_receive_message_bytes <= MAX_MESSAGE_BYTES or not 1 <= max_send_message_bytes <= MAX_MESSAGE_BYTES:
        raise ValueError(f"message limits must lie in [1, {MAX_MESSAGE_BYTES}] bytes")
    response_bytes = max_infer_response_bytes or max(1, max_send_message_bytes - RESPONSE_FRAMING_BYTES)
    if response_bytes > max_send_message_bytes:
        raise ValueError(f"max_infer_response_bytes {response_bytes} exceeds max_send_message_bytes")
    stubs = _load_stubs()
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", max_send_message_bytes),
            ("grpc.max_receive_message_length", max_receive_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    accounting = Accounting(observer)
    max_count = service.max_count
    stubs.add_native(stubs.shower_servicer(service, accounting, max_count), server)
    oip = stubs.inference_servicer(
        service,
        accounting,
        readiness=readiness,
        liveness=liveness or (lambda: True),
        max_count=max_count,
        max_response_bytes=response_bytes,
        server_name=SERVER_NAME,
        server_version=_package_version(),
    )
    stubs.add_oip(oip, server)
    if not add_health_servicer(server, lambda: not service.draining and readiness(), SERVICE_NAMES):
        logger.warning("grpcio-health-checking is not installed: grpc.health.v1.Health is not served")
    _BOUND_PORTS[server] = _bind(server, f"{_host(host)}:{port}", tls_cert, tls_key)
    return server


@dataclass(frozen=True)
class _Stubs:
    shower_servicer: type[ShowerServicer]
    inference_servicer: type[InferenceServicer]
    add_native: Callable[[object, grpc.aio.Server], None]
    add_oip: Callable[[object, grpc.aio.Server], None]


def _load_stubs() -> _Stubs:
    """The servicers and their registration functions: everything that needs the generated stubs."""
    try:
        from caloflow_server._proto.caloflow.v1 import showers_pb2_grpc
        from caloflow_server._proto.inference import grpc_service_pb2_grpc
        from caloflow_server.grpc_native import ShowerServicer
        from caloflow_server.grpc_oip import InferenceServicer
    except ImportError as exc:
        raise ImportError(
            f"the gRPC stubs are missing or stale ({exc}): run `python server/caloflow_server/gen_protos.py`"
        ) from exc
    return _Stubs(
        ShowerServicer,
        InferenceServicer,
        showers_pb2_grpc.add_ShowerServiceServicer_to_server,
        grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server,
    )


def bound_port(server: grpc.aio.Server) -> int:
    """The port a server from ``build_grpc_server`` is bound to (the ephemeral one when built with ``port=0``)."""
    return _BOUND_PORTS[server]


def _bind(server: grpc.aio.Server, address: str, tls_cert: str | None, tls_key: str | None) -> int:
    if tls_cert is not None and tls_key is not None:
        credentials = grpc.ssl_server_credentials([(Path(tls_key).read_bytes(), Path(tls_cert).read_bytes())])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if not port:
        raise OSError(f"cannot bind the gRPC server to {address}")
    logger.info("gRPC server on %s (port %d, %s)", address, port, "TLS" if tls_cert else "plaintext")
    return int(port)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _package_version() -> str:
    try:
        return importlib.metadata.version("caloflow-serve")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
