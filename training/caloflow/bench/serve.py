"""``caloflow bench serve``: what the server costs on top of the model, measured against a real server process.

One run, one model, figures printed (and ``--json``):

1. **engine**: the model artifact loaded in this process the way the server loads it (``CALOFLOW_BACKEND``,
   ``CALOFLOW_COMPILE_CACHE`` from ``--env``), shower noise included, timed at each ``--engine-batches`` size
   (one call at a time, the runtime's default threads) and in the server's own layout (its batch size, its
   number of concurrent calls and threads per call): showers/s, and this process's CPU time per shower (all
   threads; on a shared machine fairer than wall time). ``--engine-only`` stops here;
2. a **real server** (``python -m caloflow_server.main`` on free loopback ports, the repository's settings
   and any ``--env`` overrides) is started; its RSS is read from ``/proc``;
3. **idle latency**: ``--latency-requests`` one-shower requests, one after another (p50/p99 seconds);
4. **HTTP npy stream** of ``--count`` showers while ``--one-shower-clients`` other clients (default 1) each send
   one-shower requests, one after another - showers/s, and the latency under load over all their requests
   (the issue's load: ``--count 100000 --one-shower-clients 20``; 0 clients: the stream alone, for a model whose
   one-shower calls cost so much CPU that they would take the stream's share);
5. **gRPC stream** of ``--grpc-count`` showers through the native ``Generate`` call;
6. server RSS after the streams (growth against step 2).

Client and server share this machine's cores: the stream rates include the client's reading. Compare
figures from one run only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caloflow.cli import CLIError

if TYPE_CHECKING:
    from caloflow_server.process import ServerProcess
    from caloflow_server.settings import Settings


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="engine vs HTTP/gRPC streaming rate, one-shower latency idle and under load, server RSS"
    )
    parser.add_argument("--repo", type=Path, default=Path("model_repo"), help="model repository (model_repo)")
    parser.add_argument("--model", default="caloflow_photon", help="model name (caloflow_photon)")
    parser.add_argument("--energy-mev", type=float, default=65_536.0, help="incident energy of every shower")
    parser.add_argument("--count", type=int, default=1_000_000, help="showers in the HTTP stream (1 000 000)")
    parser.add_argument("--grpc-count", type=int, help="showers in the gRPC stream (default: --count; 0: skip)")
    parser.add_argument(
        "--engine-batches", default="1,100,10000", help="engine batch sizes, comma-separated (1,100,10000)"
    )
    parser.add_argument("--engine-seconds", type=float, default=5.0, help="timing per engine layout (5 s)")
    parser.add_argument("--latency-requests", type=int, default=200, help="idle one-shower requests (200)")
    parser.add_argument(
        "--one-shower-clients",
        type=int,
        default=1,
        help="concurrent one-shower clients during the stream (1; 0: the stream alone, no latency under load)",
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="server setting, e.g. CALOFLOW_DEVICE=cuda"
    )
    parser.add_argument("--engine-only", action="store_true", help="measure the engine only, start no server")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.set_defaults(handler=_run)


@dataclass
class Latency:
    """One-shower request latencies in seconds."""

    n: int
    p50_s: float
    p99_s: float
    max_s: float

    @classmethod
    def of(cls, samples: list[float]) -> Latency:
        if not samples:
            raise CLIError("no latency samples were taken")
        ordered = sorted(samples)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        return cls(len(ordered), statistics.median(ordered), p99, ordered[-1])


@dataclass
class Report:
    model: str
    engine_showers_per_s: dict[str, float] = field(default_factory=dict)
    engine_cpu_ms_per_shower: dict[str, float] = field(default_factory=dict)
    engine_backend: str | None = None
    http_showers_per_s: float | None = None
    grpc_showers_per_s: float | None = None
    idle_latency: Latency | None = None
    loaded_latency: Latency | None = None
    one_shower_clients: int = 1
    rss_before_mb: float | None = None
    rss_after_mb: float | None = None
    rss_peak_mb: float | None = None
    server_settings: dict[str, str] = field(default_factory=dict)


def _run(args: argparse.Namespace) -> int:
    if args.one_shower_clients < 0:
        raise CLIError(f"--one-shower-clients must be at least 0, got {args.one_shower_clients}")
    batches = [int(part) for part in args.engine_batches.split(",") if part.strip()]
    env = dict(_parse_env(item) for item in args.env)
    report = Report(model=args.model, server_settings=env)
    device = env.get("CALOFLOW_DEVICE", "cpu")
    layouts: list[tuple[str, int, int, int | None]] = [(f"batch {batch}", batch, 1, None) for batch in batches]
    server_batch, workers, threads = _server_layout(env)
    runtime_options = _runtime_options(env)
    server_label = f"batch {server_batch} x {workers} calls in parallel (the server's layout)"
    layouts.append((server_label, server_batch, workers, threads))
    for label, batch, n_workers, n_threads in layouts:
        rate = _engine_rate(args.repo, args.model, batch, n_workers, n_threads, args, device, **runtime_options)
        report.engine_backend = rate.backend
        report.engine_showers_per_s[label] = rate.showers_per_s
        report.engine_cpu_ms_per_shower[label] = rate.cpu_ms_per_shower
        print(f"engine ({rate.backend}), {label}: {rate.text()}", flush=True)
    if not args.engine_only:
        with _server(args.repo, args.model, env) as server:
            _measure_server(server, args, report)
    _print(report)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return 0


def _measure_server(server: ServerProcess, args: argparse.Namespace, report: Report) -> None:
    from caloflow.bench.serve_clients import grpc_stream, one_shower_latencies

    report.rss_before_mb = server.rss_mb()
    probe_args = (server.url, args.model, args.energy_mev)
    report.idle_latency = Latency.of(one_shower_latencies(*probe_args, args.latency_requests))
    print(f"idle one-shower latency: {_latency_text(report.idle_latency)}", flush=True)
    seconds, probe = _stream_under_probes(server, args)
    report.http_showers_per_s = args.count / seconds
    report.loaded_latency = Latency.of(probe) if args.one_shower_clients else None
    report.one_shower_clients = args.one_shower_clients
    print(f"HTTP npy stream: {args.count} showers in {seconds:.1f} s", flush=True)
    grpc_count = args.count if args.grpc_count is None else args.grpc_count
    if grpc_count:
        seconds = grpc_stream(server.grpc_target, args.model, args.energy_mev, grpc_count)
        report.grpc_showers_per_s = grpc_count / seconds
        print(f"gRPC stream: {grpc_count} showers in {seconds:.1f} s", flush=True)
    report.rss_after_mb = server.rss_mb()
    report.rss_peak_mb = server.rss_mb("VmHWM")


def _stream_under_probes(server: ServerProcess, args: argparse.Namespace) -> tuple[float, list[float]]:
    """Seconds of the HTTP stream, and the latencies of the one-shower clients that ran beside it."""
    from caloflow.bench.serve_clients import http_stream, one_shower_latencies

    stop = threading.Event()
    samples: list[list[float]] = [[] for _ in range(args.one_shower_clients)]
    failures: list[BaseException] = []

    def probe(out: list[float]) -> None:
        try:
            out.extend(one_shower_latencies(server.url, args.model, args.energy_mev, None, stop))
        except BaseException as exc:
            failures.append(exc)

    probers = [threading.Thread(target=probe, args=(out,), daemon=True) for out in samples]
    for prober in probers:
        prober.start()
    try:
        seconds = http_stream(server.url, args.model, args.energy_mev, args.count)
    finally:
        stop.set()
        for prober in probers:
            prober.join()
    if failures:
        raise CLIError(f"a one-shower client failed under load: {failures[0]}")
    return seconds, [value for out in samples for value in out]


def _server_layout(env: dict[str, str]) -> tuple[int, int, int | None]:
    """(batch showers, concurrent model calls, intra-op threads) the server will use with these settings."""
    settings = _settings(env)
    return settings.batch_showers, settings.concurrent_batches, settings.op_threads


def _settings(env: dict[str, str]) -> Settings:
    """The server's ``Settings`` from ``--env`` (the environment too, as the server process will see it)."""
    from caloflow_server.settings import Settings

    overrides: dict[str, Any] = {name.removeprefix("CALOFLOW_").lower(): value for name, value in env.items()}
    return Settings(**overrides)


def _runtime_options(env: dict[str, str]) -> dict[str, Any]:
    """The backend and compile cache the server will use (``CALOFLOW_BACKEND``, ``CALOFLOW_COMPILE_CACHE``)."""
    settings = _settings(env)
    return {"backend": settings.backend, "compile_cache": settings.compile_cache}


@dataclass(frozen=True)
class EngineRate:
    backend: str
    showers_per_s: float
    cpu_ms_per_shower: float

    def text(self) -> str:
        wall = 1e3 / self.showers_per_s
        return f"{self.showers_per_s:.1f} showers/s, {wall:.3f} ms/shower, CPU {self.cpu_ms_per_shower:.3f} ms/shower"


def _engine_rate(
    repo: Path,
    model: str,
    batch: int,
    workers: int,
    threads: int | None,
    args: argparse.Namespace,
    device: str,
    **runtime_options: Any,
) -> EngineRate:
    """Showers/s and CPU ms per shower of the artifact as the server runs it (noise included): ``workers``
    threads each calling the model on ``batch`` showers for ``--engine-seconds`` after a warm-up call (a
    compiled backend is compiled into its cache here, before the server starts)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from caloflow_repo import ModelRepository
    from caloflow_server import load_runtime
    from caloflow_server.noise import shower_noise

    runtime = load_runtime(
        ModelRepository(repo), model, device=device, intra_op_threads=threads, **runtime_options
    ).runtime
    incident = np.full((batch, 1), args.energy_mev, dtype=np.float32)

    def loop(worker: int, seconds: float) -> int:
        calls = 0
        deadline = time.perf_counter() + seconds
        while calls == 0 or time.perf_counter() < deadline:
            runtime.run(incident, shower_noise(worker + 1, calls * batch, batch, runtime.noise_dim))
            calls += 1
        return calls * batch

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(loop, range(workers), [0.0] * workers))  # warm-up: one call each
        started, cpu_started = time.perf_counter(), time.process_time()
        showers = sum(pool.map(loop, range(workers), [args.engine_seconds] * workers))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return EngineRate(runtime.backend, showers / wall, 1e3 * cpu / showers)


@contextmanager
def _server(repo: Path, model: str, env: dict[str, str]) -> Iterator[ServerProcess]:
    """A ready server process serving ``model``, stopped with SIGTERM (drained) afterwards."""
    from caloflow_server.process import ServerStartError, launch_server

    with (
        tempfile.TemporaryDirectory(prefix="caloflow-bench-") as scratch,
        launch_server(repo, Path(scratch) / "server.log", env, ("--models", model)) as server,
    ):
        try:
            server.wait_ready(timeout_s=300.0)
        except ServerStartError as exc:
            raise CLIError(str(exc)) from exc
        try:
            yield server
        finally:
            server.stop()


def _parse_env(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.startswith("CALOFLOW_"):
        raise CLIError(f"--env {item!r}: expected CALOFLOW_NAME=VALUE")
    return name, value


def _latency_text(latency: Latency) -> str:
    p50, p99, most = (1e3 * value for value in (latency.p50_s, latency.p99_s, latency.max_s))
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {most:.1f} ms (n={latency.n})"


def _print(report: Report) -> None:
    best = max(report.engine_showers_per_s.values(), default=0.0)
    print(f"\n== caloflow bench serve: {report.model} ==")
    for label, engine_rate in report.engine_showers_per_s.items():
        cpu = report.engine_cpu_ms_per_shower[label]
        print(f"{engine_rate:>10.1f} showers/s  engine ({report.engine_backend}), {label}; CPU {cpu:.3f} ms/shower")
    for name, rate in (("HTTP npy stream", report.http_showers_per_s), ("gRPC stream", report.grpc_showers_per_s)):
        if rate is not None:
            print(f"{rate:>10.1f} showers/s  {name} ({rate / best:.0%} of the best engine rate)")
    if report.idle_latency and report.loaded_latency:
        print(f"one shower, idle:       {_latency_text(report.idle_latency)}")
        clients = report.one_shower_clients
        print(f"one shower, under load ({clients} one-shower clients): {_latency_text(report.loaded_latency)}")
        print(f"p99 under load / idle p99: {report.loaded_latency.p99_s / report.idle_latency.p99_s:.2f}x")
    if report.rss_before_mb is not None and report.rss_after_mb is not None:
        growth = report.rss_after_mb - report.rss_before_mb
        print(f"server RSS: {report.rss_before_mb:.0f} MB before, {report.rss_after_mb:.0f} MB after ", end="")
        print(f"(growth {growth:+.0f} MB), peak {report.rss_peak_mb:.0f} MB")
