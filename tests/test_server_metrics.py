"""Metrics: Triton-compatible and native families from the observer hooks, one module importing prometheus_client,
and a real Prometheus scrape of the metrics port after requests through the HTTP server."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from test_server_http_support import LiveServer, build_served
from test_server_support import make_repository

import caloflow_server
from caloflow_repo import ModelRepository
from caloflow_server import BatchStats, LoadedModel, RequestStats, load_runtime
from caloflow_server.metrics import CONTENT_TYPE, ServerMetrics, nvml_gpu_stats

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
SHOWER_LABELS = {"dataset": "ds1-photon", "particle": "photon", "precision": "fp32-strict"}
"""``calo_showers_generated_total``'s labels besides model and version, for the photon test model."""


def parse(text: str) -> tuple[dict[str, str], dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    """(family -> TYPE, (sample name, labels) -> value) of a text exposition."""
    types: dict[str, str] = {}
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match, line
            labels = frozenset(_LABEL.findall(match.group(2) or ""))
            samples[(match.group(1), labels)] = float(match.group(3))
    return types, samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    torch.set_num_threads(1)
    return make_repository(tmp_path_factory.mktemp("metrics"))


@pytest.fixture(scope="module")
def photon(repository: ModelRepository) -> LoadedModel:
    return load_runtime(repository, "tiny_photon", 1, intra_op_threads=1)


def test_observer_hooks_feed_triton_and_native_families(photon: LoadedModel) -> None:
    metrics = ServerMetrics(cuda_memory=lambda: {"0": (1024, 4096)})
    observer = metrics.observer_for(photon)
    observer.on_batch(BatchStats(48, 64, (0, 1), queue_seconds=0.002, compute_seconds=0.010, ok=True))
    observer.on_batch(BatchStats(16, 64, (1,), queue_seconds=0.001, compute_seconds=0.004, ok=True))
    observer.on_queue(pending_showers=100, pending_requests=2)
    observer.on_request_finished(RequestStats(0, 40, 40, 1, queue_seconds=0.002, compute_seconds=0.01, status="ok"))
    observer.on_request_finished(
        RequestStats(1, 90, 24, 2, queue_seconds=0.003, compute_seconds=0.014, status="cancelled")
    )
    metrics.request_completed("http", "tiny_photon", "1", "ok", 0.25, 0.01)
    metrics.request_rejected("grpc", "rejected", "tiny_photon", "1")
    metrics.request_rejected("http", "invalid")
    metrics.model_state("tiny_photon", 1, "loading")
    metrics.model_state("tiny_photon", 1, "ready", load_seconds=1.5)
    metrics.set_draining(True)
    metrics.stream_opened("http")
    types, samples = parse(metrics.render().decode())
    model = {"model": "tiny_photon", "version": "1"}

    for name in ("nv_inference_request_success", "nv_inference_count", "nv_inference_exec_count",
                 "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
                 "nv_inference_compute_infer_duration_us"):  # fmt: skip
        assert types[name] == "counter"  # Triton's names: no _total suffix
    assert types["nv_inference_pending_request_count"] == "gauge"
    assert value(samples, "nv_inference_exec_count", **model) == 2
    assert value(samples, "nv_inference_count", **model) == 64
    assert value(samples, "nv_inference_request_success", **model) == 1
    assert value(samples, "nv_inference_request_failure", reason="CANCELED", **model) == 1
    assert value(samples, "nv_inference_request_failure", reason="REJECTED", **model) == 1
    assert value(samples, "nv_inference_request_failure", reason="BACKEND", **model) == 0
    assert value(samples, "nv_inference_pending_request_count", **model) == 2
    assert value(samples, "nv_inference_queue_duration_us", **model) == pytest.approx(5000)
    assert value(samples, "nv_inference_compute_infer_duration_us", **model) == pytest.approx(24000)
    assert value(samples, "nv_inference_request_duration_us", **model) == pytest.approx(250000)

    assert types["calo_request_duration_seconds"] == "histogram"
    assert value(samples, "calo_request_duration_seconds_count", protocol="http", **model) == 1
    assert value(samples, "calo_request_duration_seconds_bucket", protocol="http", le="0.25", **model) == 1
    assert value(samples, "calo_request_duration_seconds_bucket", protocol="http", le="0.1", **model) == 0
    assert value(samples, "calo_time_to_first_chunk_seconds_sum", protocol="http", **model) == pytest.approx(0.01)
    assert value(samples, "calo_batch_size_showers_sum", **model) == 64
    assert value(samples, "calo_queue_duration_seconds_count", **model) == 2
    assert value(samples, "calo_compute_duration_seconds_sum", **model) == pytest.approx(0.014)
    assert value(samples, "calo_showers_generated_total", **SHOWER_LABELS, **model) == 64
    assert value(samples, "calo_pending_showers", **model) == 100
    assert value(samples, "calo_request_failures_total", protocol="grpc", reason="rejected", **model) == 1
    assert value(samples, "calo_request_failures_total", protocol="http", reason="invalid", model="", version="") == 1
    assert value(samples, "calo_requests_total", protocol="http", status="ok") == 1
    assert value(samples, "calo_model_loaded", state="ready", **model) == 1
    assert value(samples, "calo_model_loaded", state="loading", **model) == 0
    assert value(samples, "calo_model_load_duration_seconds_count", **model) == 1
    assert value(samples, "calo_draining") == 1
    assert value(samples, "calo_active_streams", protocol="http") == 1
    assert value(samples, "calo_gpu_memory_allocated_bytes", gpu="0") == 1024
    assert value(samples, "calo_gpu_memory_reserved_bytes", gpu="0") == 4096
    build = [labels for (name, labels), v in samples.items() if name == "calo_build_info" and v == 1]
    assert len(build) == 1 and {"version", "torch", "onnxruntime", "python"} <= {k for k, _ in build[0]}


def test_a_loaded_model_has_its_series_at_zero_before_its_first_request(photon: LoadedModel) -> None:
    metrics = ServerMetrics()
    metrics.observer_for(photon)
    samples = parse(metrics.render().decode())[1]
    model = {"model": "tiny_photon", "version": "1"}
    for protocol in ("http", "oip", "grpc", "grpc_oip"):  # so that rate() over the first request is not lost
        assert value(samples, "calo_request_duration_seconds_count", protocol=protocol, **model) == 0
        assert value(samples, "calo_requests_total", protocol=protocol, status="ok") == 0
    assert value(samples, "calo_batch_size_showers_count", **model) == 0
    assert value(samples, "calo_showers_generated_total", **SHOWER_LABELS, **model) == 0
    assert value(samples, "calo_pending_showers", **model) == 0


def test_gpu_gauges_keep_tritons_names() -> None:
    metrics = ServerMetrics(gpu_stats=lambda: {"GPU-1234": (3 << 30, 80 << 30, 0.5)})
    types, samples = parse(metrics.render().decode())
    assert types["nv_gpu_memory_used_bytes"] == types["nv_gpu_memory_total_bytes"] == "gauge"
    assert value(samples, "nv_gpu_memory_used_bytes", gpu_uuid="GPU-1234") == 3 << 30
    assert value(samples, "nv_gpu_memory_total_bytes", gpu_uuid="GPU-1234") == 80 << 30
    assert value(samples, "nv_gpu_utilization", gpu_uuid="GPU-1234") == 0.5
    assert "nv_gpu_memory_used_bytes" not in ServerMetrics().render().decode()  # no GPU: no gauge
    reader = nvml_gpu_stats()  # None without an NVIDIA driver (CI); real figures on a GPU host
    assert reader is None or all(0 < used <= total for used, total, _ in reader().values())


def test_each_instance_has_its_own_registry(photon: LoadedModel) -> None:
    first, second = ServerMetrics(), ServerMetrics()  # the global registry would refuse the second
    first.observer_for(photon).on_batch(BatchStats(8, 8, (0,), 0.0, 0.001, True))
    assert value(parse(first.render().decode())[1], "nv_inference_exec_count", model="tiny_photon", version="1") == 1
    assert ("nv_inference_exec_count", frozenset({("model", "tiny_photon"), ("version", "1")})) not in parse(
        second.render().decode()
    )[1]
    assert "calo_gpu_memory_allocated_bytes" not in first.render().decode()  # no CUDA reader given


def test_grpc_records_are_counted_by_protocol() -> None:
    class Record:
        protocol, model, version, code, reason = "grpc", "tiny_photon", 1, "OK", None
        duration_seconds, first_chunk_seconds = 0.5, 0.05

    class Refused(Record):
        model, version, code, reason = None, None, "RESOURCE_EXHAUSTED", "rejected"

    metrics = ServerMetrics()
    metrics.on_stream_open("grpc")
    metrics.on_request(Record())
    metrics.on_request(Refused())
    metrics.on_stream_close("grpc")
    samples = parse(metrics.render().decode())[1]
    model = {"model": "tiny_photon", "version": "1"}
    assert value(samples, "calo_request_duration_seconds_count", protocol="grpc", **model) == 1
    assert value(samples, "calo_time_to_first_chunk_seconds_count", protocol="grpc", **model) == 1
    assert value(samples, "calo_requests_total", protocol="grpc", status="rejected") == 1
    assert value(samples, "calo_active_streams", protocol="grpc") == 0


def test_only_the_metrics_module_imports_prometheus_client() -> None:
    package = Path(caloflow_server.__file__).parent
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(name.split(".")[0] == "prometheus_client" for name in names):
                importers.add(path.name)
    assert importers == {"metrics.py"}


@pytest.fixture(scope="module")
def live(repository: ModelRepository, photon: LoadedModel) -> Iterator[LiveServer]:
    with LiveServer(build_served(repository, [photon])) as server:
        yield server


def test_scrape_after_requests(live: LiveServer) -> None:
    counts = [10, 100, 250]
    for count in counts:
        response = httpx.post(
            f"{live.url}/generate", json={"particle": "photon", "energy_mev": 4096.0, "count": count}, timeout=60
        )
        assert response.status_code == 200
    assert httpx.post(f"{live.url}/generate", json={"particle": "photon", "count": 1}, timeout=60).status_code == 400
    scrape = httpx.get(live.metrics_url, timeout=30)
    assert scrape.status_code == 200 and scrape.headers["content-type"] == CONTENT_TYPE
    types, samples = parse(scrape.text)
    model = {"model": "tiny_photon", "version": "1"}
    showers = sum(counts)
    assert value(samples, "nv_inference_request_success", **model) == 3
    assert value(samples, "nv_inference_request_failure", reason="OTHER", **model) == 1  # the invalid request
    assert value(samples, "nv_inference_count", **model) == showers
    executions = value(samples, "nv_inference_exec_count", **model)
    assert sum(-(-c // 64) for c in counts) <= executions <= showers  # batches of at most 64
    assert value(samples, "calo_batch_size_showers_count", **model) == executions
    assert value(samples, "calo_batch_size_showers_sum", **model) == showers
    assert value(samples, "calo_showers_generated_total", **SHOWER_LABELS, **model) == showers
    assert value(samples, "calo_request_duration_seconds_count", protocol="http", **model) == 3
    assert 0 < value(samples, "calo_request_duration_seconds_sum", protocol="http", **model) < 60
    assert value(samples, "calo_time_to_first_chunk_seconds_count", protocol="http", **model) == 3
    assert value(samples, "nv_inference_request_duration_us", **model) >= value(
        samples, "nv_inference_compute_infer_duration_us", **model
    )
    assert value(samples, "calo_active_streams", protocol="http") == 0
    assert value(samples, "calo_pending_showers", **model) == 0
    assert value(samples, "calo_draining") == 0
    assert types["nv_inference_queue_duration_us"] == "counter"
    assert httpx.get(live.metrics_url.replace("/metrics", "/other"), timeout=30).status_code == 404
