"""Prometheus metrics: the only module that imports ``prometheus_client``.

Two sources report here, neither knowing Prometheus:

* every model version's ``Batcher``, through the ``BatcherObserver`` that ``ServerMetrics.observer_for`` makes
  (batches, queue depth, finished requests: protocol-neutral, so gRPC and HTTP requests count alike);
* the transport adapters, through ``RequestObserver`` (requests refused before they reached a batcher, end-to-end
  duration, time to first chunk, open streams), and ``main`` (model states, draining).

Triton-compatible families keep Triton's exact names, types and units (``nv_inference_*``: counters without a
``_total`` suffix, latencies as cumulative microsecond counters, labels ``model`` and ``version``), so
dashboards and SuperSONIC's autoscaling rule work unchanged. Native families (``calo_*``) follow Prometheus
conventions: seconds, ``_total`` counters and histograms (aggregatable across replicas, unlike summaries).
Everything lives in this object's own ``CollectorRegistry``, never the process-global default one.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from caloflow_repo import DEFAULT_PRECISION
from caloflow_server.batcher import BatcherObserver, BatchStats, RequestStats
from caloflow_server.runtime import LoadedModel

__all__ = [
    "CONTENT_TYPE",
    "MODEL_STATES",
    "GpuStats",
    "NullRequestObserver",
    "RequestObserver",
    "ServerMetrics",
    "cuda_memory_by_device",
    "nvml_gpu_stats",
]

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MODEL_STATES = ("loading", "ready", "unloading", "unavailable")
_US = 1e6
_PROTOCOLS = ("http", "oip", "grpc", "grpc_oip")  # the values of the ``protocol`` label
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)
_TRITON_REASON = {"rejected": "REJECTED", "canceled": "CANCELED", "backend": "BACKEND"}
"""Our ``ErrorStatus.reason`` -> Triton's ``nv_inference_request_failure`` reason; anything else is OTHER."""

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[MutableMapping[str, Any]]], Callable[..., Awaitable[None]]],
    Awaitable[None],
]


class RequestObserver(Protocol):
    """What a transport adapter reports; ``protocol`` is one of ``_PROTOCOLS``: "http" (native), "oip" (OIP REST),
    "grpc" (native) or "grpc_oip"."""

    def stream_opened(self, protocol: str) -> None: ...

    def stream_closed(self, protocol: str) -> None: ...

    def request_rejected(self, protocol: str, reason: str, model: str = "", version: str = "") -> None:
        """Refused before reaching a batcher (invalid, unknown model, queue full, draining); ``reason`` is
        ``status_for(error).reason``; model/version are "" when the request named none that resolves."""

    def request_completed(
        self,
        protocol: str,
        model: str,
        version: str,
        status: str,
        duration_seconds: float,
        first_chunk_seconds: float | None,
    ) -> None:
        """An admitted request ended: ``status`` "ok" or the reason of its error ("canceled", "backend" ...)."""


class NullRequestObserver:
    """A ``RequestObserver`` that ignores everything."""

    def stream_opened(self, protocol: str) -> None:
        pass

    def stream_closed(self, protocol: str) -> None:
        pass

    def request_rejected(self, protocol: str, reason: str, model: str = "", version: str = "") -> None:
        pass

    def request_completed(
        self,
        protocol: str,
        model: str,
        version: str,
        status: str,
        duration_seconds: float,
        first_chunk_seconds: float | None,
    ) -> None:
        pass


class GrpcRecord(Protocol):
    """The fields of the gRPC adapter's per-request record that metrics read (structural: no gRPC import)."""

    @property
    def protocol(self) -> str: ...

    @property
    def model(self) -> str | None: ...

    @property
    def version(self) -> int | None: ...

    @property
    def code(self) -> str: ...

    @property
    def reason(self) -> str | None: ...

    @property
    def duration_seconds(self) -> float: ...

    @property
    def first_chunk_seconds(self) -> float | None: ...


@dataclass(frozen=True)
class _Family:
    name: str
    kind: str
    help: str


_TRITON_FAMILIES = (
    _Family("nv_inference_request_success", "counter", "Number of successful inference requests, all batch sizes"),
    _Family("nv_inference_request_failure", "counter", "Number of failed inference requests, all batch sizes"),
    _Family("nv_inference_count", "counter", "Number of inferences performed (showers; a batch of n counts n)"),
    _Family("nv_inference_exec_count", "counter", "Number of model executions performed (batches)"),
    _Family("nv_inference_request_duration_us", "counter", "Cumulative inference request duration in microseconds"),
    _Family("nv_inference_queue_duration_us", "counter", "Cumulative inference queuing duration in microseconds"),
    _Family(
        "nv_inference_compute_infer_duration_us", "counter", "Cumulative compute inference duration in microseconds"
    ),
    _Family(
        "nv_inference_pending_request_count", "gauge", "Instantaneous number of pending requests awaiting execution"
    ),
)


class _TritonFamilies:
    """Triton's families, rendered as Triton renders them (prometheus_client would add ``_total`` to counters)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {f.name: {} for f in _TRITON_FAMILIES}

    def add(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0.0) + float(value)

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[name][tuple(sorted(labels.items()))] = float(value)

    def touch(self, model: str, version: str) -> None:
        """Create every per-model series at 0, as Triton does when it loads a model."""
        for family in _TRITON_FAMILIES:
            if family.name != "nv_inference_request_failure":
                self.add(family.name, 0.0, model=model, version=version)
        for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
            self.add("nv_inference_request_failure", 0.0, model=model, version=version, reason=reason)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for family in _TRITON_FAMILIES:
                lines += [f"# HELP {family.name} {family.help}", f"# TYPE {family.name} {family.kind}"]
                lines += [_sample(family.name, key, value) for key, value in sorted(self._values[family.name].items())]
        return "\n".join(lines) + "\n"


def _sample(name: str, labels: tuple[tuple[str, str], ...], value: float) -> str:
    text = ",".join(f'{key}="{_escape(label)}"' for key, label in labels)
    return f"{name}{{{text}}} {_format(value)}" if text else f"{name} {_format(value)}"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _format(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


class _ModelObserver:
    """The ``BatcherObserver`` of one model version."""

    def __init__(self, metrics: ServerMetrics, model: str, version: str, shower_labels: dict[str, str]) -> None:
        self._metrics = metrics
        self._labels = {"model": model, "version": version}
        self._shower_labels = shower_labels

    def on_batch(self, stats: BatchStats) -> None:
        metrics, labels = self._metrics, self._labels
        metrics.triton.add("nv_inference_exec_count", 1, **labels)
        metrics.triton.add("nv_inference_count", stats.batch_showers, **labels)
        metrics.batch_size.labels(**labels).observe(stats.batch_showers)
        metrics.queue_duration.labels(**labels).observe(stats.queue_seconds)
        metrics.compute_duration.labels(**labels).observe(stats.compute_seconds)

    def on_queue(self, pending_showers: int, pending_requests: int) -> None:
        self._metrics.pending_showers.labels(**self._labels).set(pending_showers)
        self._metrics.triton.set("nv_inference_pending_request_count", pending_requests, **self._labels)

    def on_request_finished(self, stats: RequestStats) -> None:
        metrics, labels = self._metrics, self._labels
        if stats.status == "ok":
            metrics.triton.add("nv_inference_request_success", 1, **labels)
        else:
            reason = "CANCELED" if stats.status == "cancelled" else "BACKEND"
            metrics.triton.add("nv_inference_request_failure", 1, reason=reason, **labels)
        metrics.triton.add("nv_inference_queue_duration_us", stats.queue_seconds * _US, **labels)
        metrics.triton.add("nv_inference_compute_infer_duration_us", stats.compute_seconds * _US, **labels)
        metrics.showers_generated.labels(**self._shower_labels, **labels).inc(stats.delivered)


class ServerMetrics:
    """Every metric of one server process, in its own registry; also a ``RequestObserver``.

    ``cuda_memory``: a function returning ``{gpu: (allocated, reserved)}`` bytes, read at each scrape
    (``cuda_memory_by_device`` on a CUDA host); ``gpu_stats``: NVML's whole-device figures (``nvml_gpu_stats``);
    None leaves those gauges out.
    """

    def __init__(
        self, *, cuda_memory: Callable[[], dict[str, tuple[int, int]]] | None = None, gpu_stats: GpuStats | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.triton = _TritonFamilies()
        model = ("model", "version")
        self.request_duration = self._histogram(
            "calo_request_duration_seconds", "End-to-end request duration", (*model, "protocol"), _LATENCY_BUCKETS
        )
        self.first_chunk = self._histogram(
            "calo_time_to_first_chunk_seconds", "Request start to first shower chunk sent", (*model, "protocol"),
            _LATENCY_BUCKETS,
        )  # fmt: skip
        self.queue_duration = self._histogram(
            "calo_queue_duration_seconds", "Longest wait of the showers of a batch before it ran", model, _FAST_BUCKETS
        )
        self.compute_duration = self._histogram(
            "calo_compute_duration_seconds", "Model execution time of a batch (inputs, run, checks)", model,
            _FAST_BUCKETS,
        )  # fmt: skip
        self.batch_size = self._histogram(
            "calo_batch_size_showers", "Showers in a model batch (without padding)", model, _BATCH_BUCKETS
        )
        self.requests = Counter(
            "calo_requests", "Requests by outcome", ("protocol", "status"), registry=self.registry
        )  # exposed as calo_requests_total
        self.failures = Counter(
            "calo_request_failures", "Failed or refused requests by reason", (*model, "protocol", "reason"),
            registry=self.registry,
        )  # fmt: skip
        self.showers_generated = Counter(
            "calo_showers_generated",
            "Showers delivered to clients, by dataset, particle and the precision mode that computed them",
            (*model, "dataset", "particle", "precision"),
            registry=self.registry,
        )
        self.pending_showers = Gauge(
            "calo_pending_showers", "Admitted showers not yet computed", model, registry=self.registry
        )
        self.active_streams = Gauge(
            "calo_active_streams", "Open response streams", ("protocol",), registry=self.registry
        )
        self.model_loaded = Gauge(
            "calo_model_loaded", "1 for the state each model version is in", (*model, "state"), registry=self.registry
        )
        self.model_load_duration = self._histogram(
            "calo_model_load_duration_seconds", "Verify, load and warm up one model version", model, _LATENCY_BUCKETS
        )
        self.draining = Gauge("calo_draining", "1 while the server is shutting down", registry=self.registry)
        self.build_info = Gauge(
            "calo_build_info", "Versions of this server build", tuple(_build_labels()), registry=self.registry
        )
        self.build_info.labels(**_build_labels()).set(1)
        if cuda_memory is not None:
            self.registry.register(_CudaMemoryCollector(cuda_memory))
        if gpu_stats is not None:
            self.registry.register(_NvmlCollector(gpu_stats))

    def _histogram(self, name: str, doc: str, labels: Iterable[str], buckets: Iterable[float]) -> Histogram:
        return Histogram(name, doc, tuple(labels), registry=self.registry, buckets=tuple(buckets))

    # ------------------------------------------------------------------------------- observers
    def observer_for(self, loaded: LoadedModel, precision: str = DEFAULT_PRECISION) -> BatcherObserver:
        """The batcher observer of one model version in one precision mode (``GenerationService``'s
        ``observer_for``); ``calo_showers_generated_total`` carries the ``dataset``, ``particle`` and ``precision``
        labels."""
        version = str(loaded.version)
        manifest = loaded.manifest
        shower_labels = {"dataset": manifest.dataset, "particle": manifest.particle, "precision": precision}
        self.triton.touch(loaded.model, version)
        self._touch(loaded.model, version, shower_labels)
        return _ModelObserver(self, loaded.model, version, shower_labels)

    def _touch(self, model: str, version: str, shower_labels: dict[str, str]) -> None:
        """Create the model version's series at zero, so that ``rate()`` counts its very first request too."""
        labels = {"model": model, "version": version}
        for histogram in (self.queue_duration, self.compute_duration, self.batch_size):
            histogram.labels(**labels)
        for protocol in _PROTOCOLS:
            self.request_duration.labels(protocol=protocol, **labels)
            self.first_chunk.labels(protocol=protocol, **labels)
            self.requests.labels(protocol=protocol, status="ok")
        self.showers_generated.labels(**shower_labels, **labels)
        self.pending_showers.labels(**labels)

    def stream_opened(self, protocol: str) -> None:
        self.active_streams.labels(protocol=protocol).inc()

    def stream_closed(self, protocol: str) -> None:
        self.active_streams.labels(protocol=protocol).dec()

    def request_rejected(self, protocol: str, reason: str, model: str = "", version: str = "") -> None:
        self.requests.labels(protocol=protocol, status=reason).inc()
        self.failures.labels(model=model, version=version, protocol=protocol, reason=reason).inc()
        if model:
            triton_reason = _TRITON_REASON.get(reason, "OTHER")
            self.triton.add("nv_inference_request_failure", 1, model=model, version=version, reason=triton_reason)

    def request_completed(
        self,
        protocol: str,
        model: str,
        version: str,
        status: str,
        duration_seconds: float,
        first_chunk_seconds: float | None,
    ) -> None:
        labels = {"model": model, "version": version}
        self.requests.labels(protocol=protocol, status=status).inc()
        if status != "ok":
            self.failures.labels(protocol=protocol, reason=status, **labels).inc()
        self.request_duration.labels(protocol=protocol, **labels).observe(duration_seconds)
        self.triton.add("nv_inference_request_duration_us", duration_seconds * _US, **labels)
        if first_chunk_seconds is not None:
            self.first_chunk.labels(protocol=protocol, **labels).observe(first_chunk_seconds)

    # ------------------------------------------------------------------------------- the gRPC adapter's hooks
    def on_stream_open(self, protocol: str) -> None:
        self.stream_opened(protocol)

    def on_stream_close(self, protocol: str) -> None:
        self.stream_closed(protocol)

    def on_request(self, record: GrpcRecord) -> None:
        """A finished gRPC request (``grpc_common.GrpcRequestRecord``): no model means refused before admission."""
        status = "ok" if record.code == "OK" else record.reason or "other"
        if record.model is None or record.version is None:
            self.request_rejected(record.protocol, status)
        else:
            self.request_completed(
                record.protocol,
                record.model,
                str(record.version),
                status,
                record.duration_seconds,
                record.first_chunk_seconds,
            )

    # ------------------------------------------------------------------------------- server state
    def model_state(self, model: str, version: int, state: str, load_seconds: float | None = None) -> None:
        """Mark ``model@version`` as in ``state`` (one of ``MODEL_STATES``) and no other."""
        if state not in MODEL_STATES:
            raise ValueError(f"state must be one of {MODEL_STATES}, got {state!r}")
        for name in MODEL_STATES:
            self.model_loaded.labels(model=model, version=str(version), state=name).set(1 if name == state else 0)
        if load_seconds is not None:
            self.model_load_duration.labels(model=model, version=str(version)).observe(load_seconds)

    def set_draining(self, draining: bool) -> None:
        self.draining.set(1 if draining else 0)

    # ------------------------------------------------------------------------------- exposition
    def render(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of every family."""
        return self.triton.render().encode() + generate_latest(self.registry)

    def asgi_app(self) -> ASGIApp:
        """A minimal ASGI app: ``GET /metrics`` (and ``/``) returns ``render()``; anything else is 404."""

        async def app(
            scope: MutableMapping[str, Any],
            receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
            send: Callable[..., Awaitable[None]],
        ) -> None:
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
                return
            if scope["type"] != "http":
                return
            if scope["path"] not in ("/metrics", "/"):
                await _respond(send, 404, b"not found: the metrics are at /metrics\n", "text/plain; charset=utf-8")
            elif scope["method"] not in ("GET", "HEAD"):
                await _respond(send, 405, b"method not allowed\n", "text/plain; charset=utf-8")
            else:
                body = b"" if scope["method"] == "HEAD" else self.render()
                await _respond(send, 200, body, CONTENT_TYPE)

        return app


async def _respond(send: Callable[..., Awaitable[None]], status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]], send: Callable[..., Awaitable[None]]
) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class _CudaMemoryCollector:
    def __init__(self, read: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        allocated = GaugeMetricFamily(
            "calo_gpu_memory_allocated_bytes", "Device memory held by tensors (torch allocator)", labels=["gpu"]
        )
        reserved = GaugeMetricFamily(
            "calo_gpu_memory_reserved_bytes", "Device memory reserved by the torch caching allocator", labels=["gpu"]
        )
        for gpu, (used, held) in self._read().items():
            allocated.add_metric([gpu], used)
            reserved.add_metric([gpu], held)
        yield allocated
        yield reserved

    def describe(self) -> Iterator[Metric]:
        return iter(())


GpuStats = Callable[[], dict[str, tuple[int, int, float]]]
"""``{gpu_uuid: (used bytes, total bytes, utilisation 0..1)}`` of every visible GPU, read at each scrape."""


class _NvmlCollector:
    """Triton's GPU gauges (``nv_gpu_memory_used_bytes``, ``nv_gpu_memory_total_bytes``, ``nv_gpu_utilization``):
    the whole device as the driver sees it, ONNX Runtime's arenas included, which torch's allocator does not
    know about."""

    def __init__(self, read: GpuStats) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        label = ["gpu_uuid"]
        used = GaugeMetricFamily("nv_gpu_memory_used_bytes", "GPU used memory, in bytes (NVML)", labels=label)
        total = GaugeMetricFamily("nv_gpu_memory_total_bytes", "GPU total memory, in bytes (NVML)", labels=label)
        busy = GaugeMetricFamily("nv_gpu_utilization", "GPU utilization rate, 0.0 - 1.0 (NVML)", labels=label)
        for uuid, (used_bytes, total_bytes, utilization) in self._read().items():
            used.add_metric([uuid], used_bytes)
            total.add_metric([uuid], total_bytes)
            busy.add_metric([uuid], utilization)
        yield from (used, total, busy)

    def describe(self) -> Iterator[Metric]:
        return iter(())


def nvml_gpu_stats() -> GpuStats | None:
    """A ``GpuStats`` reader backed by NVML (``nvidia-ml-py``), or None where there is no NVIDIA driver."""
    try:
        import pynvml  # type: ignore[import-untyped]

        pynvml.nvmlInit()
    except Exception as exc:  # no package, no driver, no device: the GPU gauges are left out
        logger.info("NVML unavailable (%s): no nv_gpu_* metrics", exc)
        return None

    def read() -> dict[str, tuple[int, int, float]]:
        stats: dict[str, tuple[int, int, float]] = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            utilization = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0
            stats[str(pynvml.nvmlDeviceGetUUID(handle))] = (int(memory.used), int(memory.total), utilization)
        return stats

    return read


def cuda_memory_by_device() -> dict[str, tuple[int, int]]:
    """``{index: (allocated, reserved)}`` bytes of every visible CUDA device, from torch's allocator."""
    import torch

    return {
        str(index): (torch.cuda.memory_allocated(index), torch.cuda.memory_reserved(index))
        for index in range(torch.cuda.device_count())
    }


def _build_labels() -> dict[str, str]:
    labels = {"python": platform.python_version()}
    for label, distribution in (("version", "caloflow-serve"), ("torch", "torch"), ("onnxruntime", "onnxruntime")):
        try:
            labels[label] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            labels[label] = "unknown"
    return labels
