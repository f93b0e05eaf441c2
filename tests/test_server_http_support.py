"""Shared builders for the HTTP, metrics and lifecycle tests (no tests here).

``build_served`` puts the real app (FastAPI + OIP router, metrics, model control) over a service of tiny models;
``LiveServer`` runs it with uvicorn on loopback ports (API and metrics) in a thread with its own event loop, the
way ``main`` runs it. ``Recorder`` keeps what the batchers report, to assert on batches and request endings.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI

from caloflow_repo import ModelRepository
from caloflow_server import BatcherObserver, BatchStats, LoadedModel, RequestStats
from caloflow_server.app import ModelControl, ServerState
from caloflow_server.http_app import build_http_app
from caloflow_server.http_server import HttpServer
from caloflow_server.metrics import ServerMetrics
from caloflow_server.service import GenerationService

T = TypeVar("T")
ADMIN_TOKEN = "test-admin-token"


@dataclass
class Recorder:
    """Every batch (monotonic time, stats) and every finished request the batchers reported."""

    batches: list[tuple[float, BatchStats]] = field(default_factory=list)
    finished: list[RequestStats] = field(default_factory=list)

    def on_batch(self, stats: BatchStats) -> None:
        self.batches.append((time.monotonic(), stats))

    def on_queue(self, pending_showers: int, pending_requests: int) -> None:
        pass

    def on_request_finished(self, stats: RequestStats) -> None:
        self.finished.append(stats)


class _Both:
    def __init__(self, *observers: BatcherObserver) -> None:
        self._observers = observers

    def on_batch(self, stats: BatchStats) -> None:
        for observer in self._observers:
            observer.on_batch(stats)

    def on_queue(self, pending_showers: int, pending_requests: int) -> None:
        for observer in self._observers:
            observer.on_queue(pending_showers, pending_requests)

    def on_request_finished(self, stats: RequestStats) -> None:
        for observer in self._observers:
            observer.on_request_finished(stats)


@dataclass
class Served:
    app: FastAPI
    service: GenerationService
    state: ServerState
    metrics: ServerMetrics
    control: ModelControl
    recorder: Recorder


def build_served(
    repository: ModelRepository,
    loaded: list[LoadedModel],
    *,
    admin_token: str | None = None,
    max_body_bytes: int = 1 << 20,
    json_max_showers: int = 100,
    oip_max_batch_size: int = 512,
    ready: bool = True,
    **service_options: Any,
) -> Served:
    """The app over ``loaded`` (deterministic, small batches unless overridden); ready unless ``ready=False``."""
    metrics, recorder, state = ServerMetrics(), Recorder(), ServerState()
    state.models_loaded = ready
    options: dict[str, Any] = {"max_count": 100_000, "max_batch_showers": 64, "deterministic": True}
    options.update(service_options)
    service = GenerationService(
        repository,
        loaded,
        observer_for=lambda model, precision: _Both(metrics.observer_for(model, precision), recorder),
        **options,
    )
    control = ModelControl(service, intra_op_threads=1, drain_timeout_s=5.0, on_state=metrics.model_state)
    app = build_http_app(
        service,
        state=state,
        control=control,
        observer=metrics,
        max_body_bytes=max_body_bytes,
        json_max_showers=json_max_showers,
        oip_max_batch_size=oip_max_batch_size,
        admin_token=admin_token,
        server_version="test",
    )
    return Served(app, service, state, metrics, control, recorder)


def run(main: Callable[[], Awaitable[T]], timeout_s: float = 120.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout_s)

    return asyncio.run(bounded())


class LiveServer:
    """``served.app`` on ``127.0.0.1:<port>`` and its metrics on another port, run by uvicorn in a thread."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-server", daemon=True)
        self.http = HttpServer(served.app, host="127.0.0.1", port=0, graceful_timeout_s=2)
        self.metrics_http = HttpServer(served.metrics.asgi_app(), host="127.0.0.1", port=0, name="metrics")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_http.port}/metrics"

    def __enter__(self) -> LiveServer:
        self._thread.start()
        if not self._started.wait(60):
            raise TimeoutError("the live server did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        """Run ``coroutine`` on the server's loop (where its service lives) and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())
        self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.http.start()
            await self.metrics_http.start()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        await self._stop.wait()
        await self.served.service.aclose(2.0)
        await self.http.stop()
        await self.metrics_http.stop()
