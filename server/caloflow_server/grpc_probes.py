"""``grpc.health.v1.Health`` (from grpcio-health-checking) answering from the server's readiness callable.

The reference servicer holds a status that someone must set; this one asks ``is_serving()`` on every Check,
so readiness (warm-up done, not draining) is reported without a second source of truth. ``""`` is the whole
server; each served gRPC service name is answered too.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Callable, Collection

import grpc

__all__ = ["HealthServicer", "add_health_servicer", "health_available"]

WATCH_INTERVAL_S = 1.0


def health_available() -> bool:
    """Whether grpcio-health-checking is installed."""
    return importlib.util.find_spec("grpc_health") is not None


class HealthServicer:
    """Check / Watch / List of ``grpc.health.v1.Health``: SERVING when ``is_serving()``, else NOT_SERVING."""

    def __init__(self, is_serving: Callable[[], bool], services: Collection[str]) -> None:
        from grpc_health.v1 import health_pb2

        self._pb = health_pb2
        self._is_serving = is_serving
        self._services = frozenset(services) | {""}

    def _status(self, service: str) -> int:
        response = self._pb.HealthCheckResponse
        if service not in self._services:
            return int(response.SERVICE_UNKNOWN)
        return int(response.SERVING if self._is_serving() else response.NOT_SERVING)

    async def Check(self, request: object, context: grpc.aio.ServicerContext) -> object:  # noqa: N802
        service = str(getattr(request, "service", ""))
        if service not in self._services:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service!r}")
        return self._pb.HealthCheckResponse(status=self._status(service))

    async def List(self, request: object, context: grpc.aio.ServicerContext) -> object:  # noqa: N802
        statuses = {name: self._pb.HealthCheckResponse(status=self._status(name)) for name in sorted(self._services)}
        return self._pb.HealthListResponse(statuses=statuses)

    async def Watch(self, request: object, context: grpc.aio.ServicerContext) -> AsyncIterator[object]:  # noqa: N802
        service = str(getattr(request, "service", ""))
        last = None
        while True:
            status = self._status(service)
            if status != last:
                yield self._pb.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_INTERVAL_S)


def add_health_servicer(server: grpc.aio.Server, is_serving: Callable[[], bool], services: Collection[str]) -> bool:
    """Serve ``grpc.health.v1.Health`` on ``server``; False (nothing added) without grpcio-health-checking."""
    if not health_available():
        return False
    from grpc_health.v1 import health_pb2_grpc

    health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(is_serving, services), server)
    return True
