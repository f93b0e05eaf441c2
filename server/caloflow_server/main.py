"""The server process: HTTP (8000), gRPC (8001) and metrics (8002) in one process and one asyncio loop.

``python -m caloflow_server.main [--repo DIR] [--http-port N] ...`` (or ``caloflow serve``): every ``Settings``
field is a ``--kebab-case`` option and a ``CALOFLOW_*`` environment variable; options win.

Life of the process:

1. listeners start at once (``/v2/health/live`` answers 200, ``/v2/health/ready`` 503);
2. the configured models are verified, loaded and warmed up, off the event loop; then ready (200);
3. on SIGTERM or SIGINT: ready turns 503 at once; requests are still taken for ``drain_grace_s`` (load
   balancer de-registration), then refused (503); open streams finish for up to ``drain_timeout_s`` and are
   then ended with a resumable status (``next_index``); the listeners close; exit code 0.

A model that fails to load at start, or a port that cannot be bound, ends the process with exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from caloflow_repo import ModelRepository, RepositoryError
from caloflow_server.app import ModelControl, ServerState
from caloflow_server.errors import CaloflowServerError
from caloflow_server.http_app import build_http_app
from caloflow_server.http_server import HttpServer
from caloflow_server.malloc import set_mmap_threshold
from caloflow_server.metrics import ServerMetrics, cuda_memory_by_device, nvml_gpu_stats
from caloflow_server.service import GenerationService
from caloflow_server.settings import Settings

__all__ = ["Server", "build_server", "configure_malloc", "main", "parse_model_specs", "serve", "settings_from_args"]

logger = logging.getLogger(__name__)

_GRPC_GRACE_S = 5.0
_EXIT_FAILURE = 1


class _GrpcServer(Protocol):
    """What is used of ``grpc.aio.Server`` (so that this module imports no transport)."""

    async def start(self) -> None: ...

    async def stop(self, grace: float | None) -> object: ...


@dataclass
class Server:
    """Everything one process serves, built by ``build_server``; ``run`` is its whole life."""

    settings: Settings
    state: ServerState
    metrics: ServerMetrics
    service: GenerationService
    control: ModelControl
    http: HttpServer
    metrics_http: HttpServer
    grpc: _GrpcServer | None
    grpc_port: int | None

    async def run(self, stop: asyncio.Event) -> int:
        """Serve until ``stop`` is set, then drain; the exit code."""
        try:
            await self._start()
            await self._load_models(stop)
        except (OSError, ValueError, CaloflowServerError, RepositoryError) as exc:
            logger.error("cannot start: %s", exc)
            await self._close(drain_timeout_s=0.0)
            return _EXIT_FAILURE
        if not stop.is_set():
            self.state.models_loaded = True
            logger.info(
                "caloflow-serve ready: http=%d grpc=%s metrics=%d models=%s",
                self.http.port,
                self.grpc_port if self.grpc is not None else "off",
                self.metrics_http.port,
                ",".join(f"{m.model}@{m.version}" for m in self.service.loaded_models) or "none",
            )
            await stop.wait()
        await self._drain()
        return 0

    async def _start(self) -> None:
        await self.metrics_http.start()
        await self.http.start()
        if self.grpc is not None:
            await self.grpc.start()

    async def _load_models(self, stop: asyncio.Event) -> None:
        specs = parse_model_specs(self.settings.models) or [(m, None) for m in self.service.repository.models()]
        if not specs:
            logger.warning("the repository %s holds no model: nothing to serve", self.service.repository.root)
        for model, version in specs:
            if stop.is_set():
                return
            await self.control.load(model, version)

    async def _drain(self) -> None:
        self.state.draining = True
        self.metrics.set_draining(True)
        settings = self.settings
        logger.info(
            "shutting down: not ready; taking requests for %.1f s more, then draining for up to %.1f s",
            settings.drain_grace_s,
            settings.drain_timeout_s,
        )
        if settings.drain_grace_s > 0:
            await asyncio.sleep(settings.drain_grace_s)
        await self._close(settings.drain_timeout_s)
        logger.info("stopped")

    async def _close(self, drain_timeout_s: float) -> None:
        await self.service.aclose(drain_timeout_s)
        if self.grpc is not None:
            await self.grpc.stop(_GRPC_GRACE_S)
        await self.http.stop()
        await self.metrics_http.stop()


def build_server(settings: Settings) -> Server:
    """Build every component from ``settings`` (on the running loop; nothing is started or loaded yet)."""
    state = ServerState()
    on_gpu = settings.device == "cuda"
    metrics = ServerMetrics(
        cuda_memory=cuda_memory_by_device if on_gpu else None, gpu_stats=nvml_gpu_stats() if on_gpu else None
    )
    service = GenerationService(
        ModelRepository(settings.repo),
        max_count=settings.max_count,
        max_chunk_showers=settings.max_chunk_showers,
        chunk_bytes=settings.chunk_bytes,
        observer_for=metrics.observer_for,
        shape_buckets=settings.bucket_candidates,
        **settings.batcher_options,
    )
    control = ModelControl(
        service,
        backend=settings.backend,
        device=settings.device,
        intra_op_threads=settings.op_threads,
        compile_cache=settings.compile_cache,
        warmup_batch_sizes=_warmup_batch_sizes(settings),
        drain_timeout_s=settings.drain_timeout_s,
        on_state=metrics.model_state,
    )
    version = _package_version()
    app = build_http_app(
        service,
        state=state,
        control=control,
        observer=metrics,
        max_body_bytes=settings.max_body_bytes,
        json_max_showers=settings.json_max_showers,
        oip_max_batch_size=settings.oip_max_batch_size,
        admin_token=settings.admin_token_value,
        server_version=version,
    )
    http = HttpServer(
        app, host=settings.host, port=settings.http_port, tls_cert=settings.tls_cert, tls_key=settings.tls_key
    )
    metrics_http = HttpServer(
        metrics.asgi_app(), host=settings.metrics_host or settings.host, port=settings.metrics_port, name="metrics"
    )
    grpc, grpc_port = _build_grpc(settings, service, state, metrics) if settings.grpc_enabled else (None, None)
    return Server(settings, state, metrics, service, control, http, metrics_http, grpc, grpc_port)


def _build_grpc(
    settings: Settings, service: GenerationService, state: ServerState, metrics: ServerMetrics
) -> tuple[_GrpcServer, int]:
    from caloflow_server.grpc_server import bound_port, build_grpc_server

    server = build_grpc_server(
        service,
        host=settings.host,
        port=settings.grpc_port,
        readiness=state.is_ready,
        liveness=state.is_live,
        tls_cert=str(settings.tls_cert) if settings.tls_cert is not None else None,
        tls_key=str(settings.tls_key) if settings.tls_key is not None else None,
        max_receive_message_bytes=settings.grpc_max_message_bytes,
        observer=metrics,
    )
    return server, bound_port(server)


def _warmup_batch_sizes(settings: Settings) -> list[int]:
    if settings.warmup_batch_sizes:
        return list(settings.warmup_batch_sizes)
    if settings.deterministic:  # every model call has exactly compute_showers rows
        return [settings.compute_showers or settings.batch_showers]
    return sorted({1, settings.batch_showers})


def parse_model_specs(specs: Sequence[str]) -> list[tuple[str, int | None]]:
    """``["a", "b@2"]`` -> ``[("a", None), ("b", 2)]`` (None: the repository's default version)."""
    parsed: list[tuple[str, int | None]] = []
    for spec in specs:
        name, _, version = spec.partition("@")
        if version and not version.isdigit():
            raise ValueError(f"model {spec!r}: expected NAME or NAME@VERSION")
        parsed.append((name, int(version) if version else None))
    return parsed


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Build and run the server on the running loop until SIGTERM/SIGINT (or ``stop``); the exit code."""
    stop = stop or asyncio.Event()
    with _signals_set(stop):
        try:
            server = build_server(settings)
        except (OSError, ValueError) as exc:
            logger.error("cannot start: %s", exc)
            return _EXIT_FAILURE
        return await server.run(stop)


@contextlib.contextmanager
def _signals_set(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (main thread only; elsewhere the caller sets it)."""
    loop = asyncio.get_running_loop()
    handled = (signal.SIGTERM, signal.SIGINT)
    installed = threading.current_thread() is threading.main_thread()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            logger.warning("%s: already shutting down", signal.Signals(signum).name)
        else:
            logger.info("%s: shutting down", signal.Signals(signum).name)
        stop.set()

    if installed:
        for signum in handled:
            loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    finally:
        if installed:
            for signum in handled:
                loop.remove_signal_handler(signum)


def settings_from_args(argv: Sequence[str] | None = None) -> Settings:
    """``Settings`` from the environment, overridden by ``--option value`` for every field (``--http-port 9000``)."""
    parser = argparse.ArgumentParser(prog="python -m caloflow_server.main", description=__doc__.split("\n\n")[0])
    for name, info in Settings.model_fields.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="VALUE", help=info.description)
    values = {name: value for name, value in vars(parser.parse_args(argv)).items() if value is not None}
    return Settings(**values)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: settings from the environment and ``argv``, logging, then ``serve``."""
    try:
        settings = settings_from_args(argv)
    except ValidationError as exc:
        print(f"caloflow-serve: invalid settings: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    configure_malloc(settings.malloc_mmap_threshold_bytes)
    return asyncio.run(serve(settings))


def configure_malloc(mmap_threshold_bytes: int) -> None:
    """Fix glibc's mmap threshold (``caloflow_server.malloc``); 0 leaves the C library as it is."""
    if not mmap_threshold_bytes:
        return
    if set_mmap_threshold(mmap_threshold_bytes):
        logger.info("malloc: buffers above %d bytes are mapped and returned when freed", mmap_threshold_bytes)
    else:
        logger.warning("malloc: this C library has no mallopt (not glibc); its mmap threshold is left as it is")


def _package_version() -> str:
    try:
        return importlib.metadata.version("caloflow-serve")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


if __name__ == "__main__":
    sys.exit(main())
