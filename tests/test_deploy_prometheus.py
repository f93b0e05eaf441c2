"""A real Prometheus (Debian's ``/usr/bin/prometheus``, installed by ``docker/install-test-deps.sh``) scrapes a real
server process with the compose stack's own ``docker/prometheus/prometheus.yml`` - only the target swapped for
the local server and the interval shortened - and answers the Grafana dashboard's own request-rate and p99
latency queries (read from the dashboard JSON, not copied) with data. Also: every dashboard query evaluates
without error on a real Prometheus, and the images' healthcheck script reports the live server ready."""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from server_process import ServerProcess, server_process
from test_deploy_support import HEALTHCHECK, PROMETHEUS_CONFIG, dashboard_expr, dashboard_targets, load_dashboard
from test_server_support import make_repository

REQUEST_RATE = ("Request rate", "A")
LATENCY_P99 = ("Request latency p50 / p99", "p99")
SCRAPE_INTERVAL = "1s"
_WAIT_S = 45.0
_INSTALL_HINT = "no prometheus binary: run `sh docker/install-test-deps.sh` (make setup does)"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("deploy-server")
    repository = make_repository(root)
    with server_process(repository.root, root / "server.log") as server:
        yield server.wait_ready()


@pytest.fixture(scope="module")
def prometheus(live: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a Prometheus scraping ``live`` with the compose stack's configuration."""
    binary = shutil.which("prometheus")
    assert binary is not None, _INSTALL_HINT
    root = tmp_path_factory.mktemp("prometheus")
    config = root / "prometheus.yml"
    config.write_text(yaml.safe_dump(_local_config(live.metrics)))
    port = _free_port()
    log = root / "prometheus.log"
    command = [binary, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def test_the_dashboard_request_rate_and_p99_latency_have_data(live: ServerProcess, prometheus: str) -> None:
    # A series' first sample is never an increase to rate(), and the server creates a labelled series at its
    # first request: one request of each outcome first, scraped, then the traffic the queries measure.
    _send_traffic(live.url, rounds=1)
    for series in ('calo_requests_total{status="ok"}', 'calo_requests_total{status="invalid"}',
                   "calo_request_duration_seconds_count"):  # fmt: skip
        _wait_for_data(prometheus, series)
    _send_traffic(live.url, rounds=3)
    dashboard = load_dashboard()
    rate = _wait_for_data(prometheus, dashboard_expr(dashboard, *REQUEST_RATE))
    by_outcome = {(s["metric"]["protocol"], s["metric"]["status"]): float(s["value"][1]) for s in rate}
    assert by_outcome[("http", "ok")] > 0 and by_outcome[("http", "invalid")] > 0
    assert all(math.isfinite(value) and value >= 0 for value in by_outcome.values())
    p99 = _wait_for_data(prometheus, dashboard_expr(dashboard, *LATENCY_P99))
    seconds = {s["metric"]["model"]: float(s["value"][1]) for s in p99}
    assert "tiny_photon" in seconds, seconds
    assert 0 < seconds["tiny_photon"] <= 60, "p99 must lie inside the histogram's finite buckets"
    p50 = _wait_for_data(prometheus, dashboard_expr(dashboard, LATENCY_P99[0], "p50"))
    assert 0 < {s["metric"]["model"]: float(s["value"][1]) for s in p50}["tiny_photon"] <= seconds["tiny_photon"]


def test_the_scrape_target_is_up_under_the_compose_job_name(live: ServerProcess, prometheus: str) -> None:
    (job,) = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    targets = _api(prometheus, "targets")["activeTargets"]
    (target,) = [t for t in targets if t["labels"]["job"] == job["job_name"]]
    assert target["scrapeUrl"] == f"http://127.0.0.1:{live.metrics}/metrics"
    _wait_for_data(prometheus, f'up{{job="{job["job_name"]}"}} == 1')


def test_every_dashboard_query_evaluates_on_a_real_prometheus(live: ServerProcess, prometheus: str) -> None:
    with httpx.Client(base_url=prometheus, timeout=10) as client:
        for panel, target in dashboard_targets(load_dashboard()):
            result = client.get("/api/v1/query", params={"query": target["expr"]}).json()
            assert result["status"] == "success", (panel["title"], target["refId"], result)


def test_the_image_healthcheck_sees_the_live_server_ready(live: ServerProcess) -> None:
    check = [sys.executable, str(HEALTHCHECK)]
    assert subprocess.run([*check, f"{live.url}/v2/health/ready"], capture_output=True, timeout=30).returncode == 0
    closed = subprocess.run([*check, f"http://127.0.0.1:{_free_port()}/v2/health/ready"], capture_output=True,
                            text=True, timeout=30)  # fmt: skip
    assert closed.returncode == 1 and "not ready" in closed.stderr


# ----------------------------------------------------------------------------------------------- helpers


def _local_config(metrics_port: int) -> dict[str, Any]:
    """docker/prometheus/prometheus.yml with its one target pointed at the local server, scraping every second."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    (static,) = job["static_configs"]
    assert len(static["targets"]) == 1, "the compose config scrapes one server target"
    static["targets"] = [f"127.0.0.1:{metrics_port}"]
    config["global"].update(scrape_interval=SCRAPE_INTERVAL, scrape_timeout=SCRAPE_INTERVAL)
    return config


def _send_traffic(url: str, rounds: int) -> None:
    """Finished requests of several sizes, and refused ones, so that rates and quantiles have data."""
    with httpx.Client(base_url=url, timeout=60) as client:
        for count in (1, 64, 8, 200) * rounds:
            body = {"model": "tiny_photon", "energy_mev": 4096.0, "count": count, "seed": count, "format": "npy"}
            assert client.post("/generate", json=body).status_code == 200
        for _ in range(rounds):
            refused = client.post("/generate", json={"model": "tiny_photon", "energy_mev": -1.0, "count": 1})
            assert refused.status_code in (400, 422)


def _wait_for_data(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """The query's samples once it returns some (Prometheus needs two scrapes after the traffic for a rate)."""
    deadline = time.monotonic() + _WAIT_S
    while True:
        data = _api(prometheus, "query", query=expr)
        samples: list[dict[str, Any]] = [s for s in data["result"] if math.isfinite(float(s["value"][1]))]
        if samples and any(float(s["value"][1]) > 0 for s in samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"no data for {expr!r} within {_WAIT_S} s: {data}")
        time.sleep(0.5)


def _api(prometheus: str, endpoint: str, **params: str) -> Any:
    response = httpx.get(f"{prometheus}/api/v1/{endpoint}", params=params, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", body
    return body["data"]


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"prometheus did not become ready:\n{log.read_text()}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
