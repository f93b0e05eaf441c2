"""Precision modes through the real server process: the default is fp32-strict and every response says which mode
ran (X-Precision, the gRPC header, the OIP parameter, the metrics label); a gated mode runs; a mode that is
ungated, failed, or gated on another device class is refused (422 / INVALID_ARGUMENT) naming the enabled modes."""

from __future__ import annotations

import io
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
import torch
from precision_support import make_spread_repository
from server_process import ServerProcess, server_process

from caloflow_server.gen_protos import ensure_protos

MODEL = "tiny_spread"
ENABLED = "enabled: fp32-strict, int8"


def _record(device_class: str, verdict: str, sha256: str) -> dict[str, str]:
    return {"device_class": device_class, "verdict": verdict, "timestamp_utc": "2026-12-07T00:00:00Z",
            "artifact_sha256": sha256}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("precision")
    repository = make_spread_repository(root, MODEL)
    sha256 = repository.verify(MODEL).artifacts[0].sha256
    repository.record_precision_gate(MODEL, 1, "int8", _record("cpu", "pass", sha256))  # enabled here
    repository.record_precision_gate(MODEL, 1, "fp16", _record("gpu:NVIDIA H100 80GB HBM3", "pass", sha256))
    repository.record_precision_gate(MODEL, 1, "bf16", _record("cpu", "fail", sha256))  # failed; tf32: ungated
    with server_process(repository.root, root / "server.log", {"CALOFLOW_MODELS": MODEL}) as running:
        yield running.wait_ready()


def _generate(server: ServerProcess, **extra: object) -> httpx.Response:
    body = {"model": MODEL, "energy_mev": 65536.0, "count": 16, "seed": 7, "format": "npy", **extra}
    return httpx.post(f"{server.url}/generate", json=body, timeout=60)


def test_http_default_is_fp32_strict_and_int8_runs_when_gated(server: ServerProcess) -> None:
    default = _generate(server)
    assert default.status_code == 200 and default.headers["X-Precision"] == "fp32-strict"
    int8 = _generate(server, precision="int8")
    assert int8.status_code == 200 and int8.headers["X-Precision"] == "int8"
    fp32_showers, int8_showers = (np.load(io.BytesIO(r.content)) for r in (default, int8))
    assert not np.array_equal(fp32_showers, int8_showers)  # a different graph computed them ...
    np.testing.assert_allclose(int8_showers.sum(axis=1), fp32_showers.sum(axis=1), rtol=0.1)  # ... of one model


@pytest.mark.parametrize(
    "mode", ["fp16", "bf16", "tf32", "fp64"], ids=["foreign-device", "failed", "ungated", "unknown"]
)
def test_http_refuses_a_mode_that_is_not_enabled(server: ServerProcess, mode: str) -> None:
    response = _generate(server, precision=mode)
    assert response.status_code == 422, response.text
    assert ENABLED in response.text and "precision" in response.text


def test_oip_parameter_in_and_out(server: ServerProcess) -> None:
    body = {"inputs": [{"name": "INCIDENT_ENERGY", "datatype": "FP32", "shape": [2, 1], "data": [1e3, 1e4]}]}
    url = f"{server.url}/v2/models/{MODEL}/infer"
    ok = httpx.post(url, json={**body, "parameters": {"seed": 1, "precision": "int8"}}, timeout=60)
    assert ok.status_code == 200 and ok.json()["parameters"]["precision"] == "int8"
    refused = httpx.post(url, json={**body, "parameters": {"precision": "fp16"}}, timeout=60)
    assert refused.status_code == 422 and ENABLED in refused.text


def test_grpc_field_in_and_out(server: ServerProcess) -> None:
    ensure_protos()
    from caloflow_server._proto.caloflow.v1 import showers_pb2 as pb
    from caloflow_server._proto.caloflow.v1 import showers_pb2_grpc as pb_grpc

    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.ShowerServiceStub(channel)
        chunks = list(stub.Generate(pb.GenerateRequest(model=MODEL, energy_mev=1e4, count=3, precision="int8")))
        assert chunks[0].header.precision == "int8"
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.Generate(pb.GenerateRequest(model=MODEL, energy_mev=1e4, count=3, precision="fp16")))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ENABLED in (refused.value.details() or "")


def test_metrics_label_the_precision(server: ServerProcess) -> None:
    _generate(server, precision="int8")
    text = httpx.get(server.metrics_url, timeout=30).text
    lines = [line for line in text.splitlines() if line.startswith("calo_showers_generated_total{")]
    assert any('precision="int8"' in line and not line.endswith(" 0.0") for line in lines), lines
    assert any('precision="fp32-strict"' in line for line in lines), lines
