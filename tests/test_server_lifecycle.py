"""The server process: settings from flags and environment, and a real ``python -m caloflow_server.main`` on
ephemeral loopback ports with the tiny repository: ready only once loaded, SIGTERM turns readiness 503 at once,
in-flight streams finish (or end with a resumable status after the drain timeout), and the process exits 0."""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
import tritonclient.grpc as triton_grpc
from pydantic import ValidationError
from server_process import ServerProcess, server_process
from test_server_metrics import parse, value
from test_server_support import N_VOXELS, make_repository

from caloflow.cli import serve as serve_cli
from caloflow_server.http_framing import decode_framed
from caloflow_server.main import parse_model_specs, settings_from_args
from caloflow_server.settings import Settings


def test_settings_from_environment_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALOFLOW_HTTP_PORT", "9100")
    monkeypatch.setenv("CALOFLOW_MODELS", "caloflow_photon, caloflow_pion@3")
    monkeypatch.setenv("CALOFLOW_ADMIN_TOKEN", "secret")
    monkeypatch.setenv("CALOFLOW_DETERMINISTIC", "true")
    settings = settings_from_args(["--http-port", "9200", "--drain-timeout-s", "5", "--warmup-batch-sizes", "1,64"])
    assert settings.http_port == 9200 and settings.grpc_port == 8001 and settings.metrics_port == 8002
    assert settings.models == ["caloflow_photon", "caloflow_pion@3"] and settings.deterministic
    assert settings.drain_timeout_s == 5.0 and settings.warmup_batch_sizes == [1, 64]
    assert settings.admin_token_value == "secret" and "secret" not in repr(settings)
    assert parse_model_specs(settings.models) == [("caloflow_photon", None), ("caloflow_pion", 3)]
    with pytest.raises(ValueError, match="NAME@VERSION"):
        parse_model_specs(["a@b"])
    with pytest.raises(ValidationError, match="tls_cert and tls_key"):
        Settings(tls_cert=Path("cert.pem"))
    with pytest.raises(ValidationError, match="max_queue_showers"):
        Settings(max_count=10, max_queue_showers=5)
    with pytest.raises(ValidationError):
        Settings(http_port=70000)


def test_batching_defaults_follow_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    cpu = Settings()
    assert cpu.deterministic and cpu.batch_showers == 64 and cpu.batcher_options["max_batch_showers"] == 64
    assert cpu.concurrent_batches == 4 and cpu.op_threads == 1  # one single-threaded model call per core
    assert Settings(max_concurrent_batches=2).op_threads == 2
    assert Settings(max_batch_showers=500, intra_op_threads=3).batcher_options["max_batch_showers"] == 500
    cuda = Settings(device="cuda")
    assert cuda.batch_showers == 8192 and cuda.concurrent_batches == 2 and cuda.op_threads is None
    assert not Settings(deterministic=False).batcher_options["deterministic"]
    assert Settings(admin_token="").admin_token_value is None  # an empty token is no token: model control stays off


def test_caloflow_serve_flags_map_onto_settings() -> None:
    parser = argparse.ArgumentParser()
    serve_cli.register(parser.add_subparsers())
    args = parser.parse_args(
        ["serve", "--repo", "r", "--http-port", "0", "--grpc-port", "1", "--metrics-port", "2", "--device", "cpu",
         "--backend", "onnx", "--drain-timeout", "3", "--deterministic", "--models", "a,b@2"]
    )  # fmt: skip
    values = serve_cli.settings_values(args)
    assert values == {
        "repo": Path("r"),
        "http_port": 0,
        "grpc_port": 1,
        "metrics_port": 2,
        "device": "cpu",
        "backend": "onnx",
        "drain_timeout_s": 3.0,
        "deterministic": True,
        "models": "a,b@2",
    }
    settings = Settings(**values)
    assert settings.models == ["a", "b@2"] and settings.http_port == 0
    assert serve_cli.settings_values(parser.parse_args(["serve"])) == {}  # the environment decides
    assert serve_cli.settings_values(parser.parse_args(["serve", "--no-deterministic"])) == {"deterministic": False}


# ------------------------------------------------------------------------------------------ the process
@pytest.fixture()
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    torch.set_num_threads(1)
    repository = make_repository(tmp_path)
    env = {"CALOFLOW_DRAIN_TIMEOUT_S": "4", "CALOFLOW_MAX_BATCH_SHOWERS": "256", "CALOFLOW_MODELS": "tiny_photon"}
    with server_process(repository.root, tmp_path / "server.log", env, ("--deterministic", "true")) as running:
        yield running


class Reader(threading.Thread):
    """Reads a streamed /generate answer; ``pause`` holds it (so the server's send buffer fills) until set."""

    def __init__(self, url: str, body: dict[str, object], pause: threading.Event | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.body, self.pause = url, body, pause
        self.data = bytearray()
        self.first_bytes = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=120) as client, client.stream("POST", self.url, json=self.body) as response:
                assert response.status_code == 200, response.read()
                for piece in response.iter_raw(65536):
                    self.data += piece
                    self.first_bytes.set()
                    if self.pause is not None:
                        self.pause.wait()
        except BaseException as exc:
            self.error = exc
        finally:
            self.first_bytes.set()


def test_sigterm_drains_in_flight_streams_then_exits_zero(server: ServerProcess) -> None:
    server.wait_ready()
    assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
    grpc_client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{server.grpc}")
    assert grpc_client.is_server_live() and grpc_client.is_server_ready()  # gRPC shares the process and the loop
    generate = f"{server.url}/generate"
    hold = threading.Event()
    stalled = Reader(generate, {"particle": "photon", "energy_mev": 1e3, "count": 1_000_000, "seed": 4}, pause=hold)
    finishing = Reader(generate, {"particle": "photon", "energy_mev": 2e3, "count": 40_000, "seed": 5})
    stalled.start()
    assert stalled.first_bytes.wait(30)
    samples = parse(httpx.get(f"http://127.0.0.1:{server.metrics}/metrics", timeout=10).text)[1]
    assert value(samples, "calo_model_loaded", model="tiny_photon", version="1", state="ready") == 1
    assert value(samples, "calo_draining") == 0

    finishing.start()
    assert finishing.first_bytes.wait(30)
    server.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    while httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code != 503:
        assert time.monotonic() - signalled < 2, "readiness did not turn 503 at once"
        time.sleep(0.02)
    refused = httpx.post(generate, json={"particle": "photon", "energy_mev": 1e3, "count": 1}, timeout=10)
    assert refused.status_code == 503 and refused.json()["code"] == "UNAVAILABLE"
    assert httpx.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200
    assert grpc_client.is_server_live() and not grpc_client.is_server_ready()
    grpc_client.close()

    finishing.join(60)
    time.sleep(5)  # past the drain timeout (4 s) with the stalled reader still holding
    hold.set()
    stalled.join(60)
    assert server.process.wait(60) == 0, server.log.read_text()
    assert finishing.error is None and stalled.error is None

    done = decode_framed(bytes(finishing.data))
    assert done.status is not None and done.status["status"] == "ok" and done.showers.shape == (40_000, N_VOXELS)
    cut = decode_framed(bytes(stalled.data))
    status = cut.status
    assert status is not None and status["status"] == "error" and status["code"] == "UNAVAILABLE"
    assert 0 < status["next_index"] == status["showers_sent"] == len(cut.showers) < 1_000_000
    assert status["sha256"] == hashlib.sha256(cut.showers.tobytes()).hexdigest()
    assert "resume" in status["error"]
    log = server.log.read_text()
    assert "SIGTERM: shutting down" in log and "stopped" in log
