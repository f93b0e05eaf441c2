"""The HTTP app through a real uvicorn on loopback: the real ``tritonclient.http`` package, seeded OIP answers equal
to native ``/generate`` bit for bit, a client disconnect stopping generation, TLS, and streaming backpressure."""

from __future__ import annotations

import gc
import io
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as triton_http
from test_server_http_support import ADMIN_TOKEN, LiveServer, Served, build_served
from test_server_support import N_VOXELS, make_repository
from tritonclient.utils import InferenceServerException

from caloflow_repo import ModelRepository
from caloflow_server import LoadedModel, load_runtime
from caloflow_server.http_framing import decode_framed
from caloflow_server.http_server import HttpServer


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    torch.set_num_threads(1)
    return make_repository(tmp_path_factory.mktemp("live"))


@pytest.fixture(scope="module")
def loaded(repository: ModelRepository) -> list[LoadedModel]:
    return [load_runtime(repository, model, 1, intra_op_threads=1) for model in ("tiny_photon", "tiny_pion")]


@pytest.fixture(scope="module")
def live(repository: ModelRepository, loaded: list[LoadedModel]) -> Iterator[LiveServer]:
    served = build_served(repository, loaded, admin_token=ADMIN_TOKEN, max_count=1_000_000, max_queue_showers=2_000_000)
    with LiveServer(served) as server:
        yield server


@pytest.fixture()
def triton(live: LiveServer) -> Iterator[triton_http.InferenceServerClient]:
    client = triton_http.InferenceServerClient(url=live.url.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()
    del client
    gc.collect()  # its __del__ closes again: let that happen here, in the gevent hub's thread, not in any thread


def test_tritonclient_health_metadata_and_config(triton: triton_http.InferenceServerClient) -> None:
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("tiny_photon") and triton.is_model_ready("tiny_photon", "1")
    assert not triton.is_model_ready("tiny_photon", "2")  # in the repository, not loaded
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
    metadata = triton.get_model_metadata("tiny_pion")
    assert metadata["versions"] == ["1"] and metadata["outputs"][0]["shape"] == [-1, N_VOXELS]
    assert triton.get_model_config("tiny_photon")["max_batch_size"] == 512
    index = {(m["name"], m["version"]): m["state"] for m in triton.get_model_repository_index()}
    assert index[("tiny_photon", "1")] == "READY" and index[("tiny_photon", "2")] == "UNAVAILABLE"
    with pytest.raises(InferenceServerException) as missing:
        triton.get_model_metadata("tiny_electron")
    assert missing.value.status() == "404" and "tiny_electron" in missing.value.message()


def _inputs(energies: np.ndarray, seed: int | None, binary: bool) -> list[triton_http.InferInput]:
    energy = triton_http.InferInput("INCIDENT_ENERGY", [len(energies), 1], "FP32")
    energy.set_data_from_numpy(energies.reshape(-1, 1), binary_data=binary)
    inputs = [energy]
    if seed is not None:
        seed_input = triton_http.InferInput("SEED", [1], "UINT64")
        seed_input.set_data_from_numpy(np.array([seed], dtype=np.uint64), binary_data=binary)
        inputs.append(seed_input)
    return inputs


def test_tritonclient_infer_equals_native_generate_bit_for_bit(
    live: LiveServer, triton: triton_http.InferenceServerClient
) -> None:
    energies = np.geomspace(300.0, 3e6, 200).astype(np.float32)
    seed = 2**63 + 12345
    binary = triton.infer("tiny_photon", _inputs(energies, seed, binary=True)).as_numpy("SHOWERS")
    as_json = triton.infer(
        "tiny_photon",
        _inputs(energies, seed, binary=False),
        outputs=[triton_http.InferRequestedOutput("SHOWERS", binary_data=False)],
        model_version="1",
    ).as_numpy("SHOWERS")
    native = httpx.post(
        f"{live.url}/generate",
        json={"model": "tiny_photon", "energies_mev": energies.tolist(), "seed": seed, "format": "npy"},
        timeout=60,
    )
    assert native.status_code == 200
    showers = np.load(io.BytesIO(native.content))
    assert binary.shape == as_json.shape == showers.shape == (200, N_VOXELS) and binary.dtype == np.float32
    np.testing.assert_array_equal(binary, showers)
    np.testing.assert_array_equal(as_json, showers)
    unseeded = triton.infer("tiny_photon", _inputs(energies[:3], None, binary=True))
    drawn = unseeded.get_response()["parameters"]["seed"]
    again = triton.infer("tiny_photon", _inputs(energies[:3], drawn, binary=True)).as_numpy("SHOWERS")
    np.testing.assert_array_equal(unseeded.as_numpy("SHOWERS"), again)


def test_tritonclient_errors_and_model_control(live: LiveServer, triton: triton_http.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as out_of_range:
        triton.infer("tiny_photon", _inputs(np.array([1000.0, 1.0], np.float32), 1, binary=True))
    assert out_of_range.value.status() == "400" and "INCIDENT_ENERGY[1]" in out_of_range.value.message()
    with pytest.raises(InferenceServerException) as refused:
        triton.unload_model("tiny_pion")
    assert refused.value.status() == "401"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    triton.unload_model("tiny_pion", headers=auth)
    assert not triton.is_model_ready("tiny_pion")
    triton.load_model("tiny_pion", headers=auth)
    assert triton.is_model_ready("tiny_pion")
    pion = triton.infer("tiny_pion", _inputs(np.array([5000.0], np.float32), 3, binary=True)).as_numpy("SHOWERS")
    assert pion.shape == (1, N_VOXELS)


def test_client_disconnect_stops_generation_within_a_couple_of_batches(live: LiveServer) -> None:
    served: Served = live.served
    batcher = served.service.batcher("tiny_photon", 1)
    body = {"particle": "photon", "energy_mev": 1000.0, "count": 1_000_000, "seed": 3, "chunk_showers": 64}
    finished_before = len(served.recorder.finished)
    with httpx.Client(timeout=60) as client, client.stream("POST", f"{live.url}/generate", json=body) as response:
        assert response.status_code == 200
        received = 0
        for piece in response.iter_raw(4096):
            received += len(piece)
            if received > 64 * 1024:
                break
        closed_at = time.monotonic()
    deadline = time.monotonic() + 10
    while len(served.recorder.finished) == finished_before and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = served.recorder.finished[-1]
    assert stats.status == "cancelled" and stats.delivered < 1_000_000
    assert batcher.pending_requests == 0 and batcher.pending_showers == 0
    after = [b for t, b in served.recorder.batches if t > closed_at and stats.request_id in b.request_ids]
    assert len(after) <= 2, f"{len(after)} batches ran for the request after the client left"
    assert stats.batches * 64 <= stats.delivered + 3 * 64  # computed ahead by at most the stream's buffer


def test_streams_are_backpressured_and_complete(live: LiveServer) -> None:
    """A slow reader gets every shower: the server computes ahead only its buffer, then waits for the reader."""
    body = {"particle": "pion", "energy_mev": 2000.0, "count": 5000, "seed": 8, "chunk_showers": 100}
    with httpx.Client(timeout=60) as client, client.stream("POST", f"{live.url}/generate", json=body) as response:
        chunks = []
        for index, piece in enumerate(response.iter_raw(1024)):
            chunks.append(piece)
            if index == 2:
                time.sleep(0.3)
    stream = decode_framed(b"".join(chunks))
    assert stream.status is not None and stream.status["status"] == "ok"
    assert stream.showers.shape == (5000, N_VOXELS)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_is_one_setting_away(
    repository: ModelRepository, loaded: list[LoadedModel], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    served = build_served(repository, loaded)
    live = LiveServer(served)
    live.http = HttpServer(served.app, host="127.0.0.1", port=0, tls_cert=cert, tls_key=key)
    with live:
        assert live.http.tls
        url = f"https://127.0.0.1:{live.http.port}"
        response = httpx.post(
            f"{url}/generate",
            json={"particle": "photon", "energy_mev": 1e3, "count": 4},
            verify=ssl.create_default_context(cafile=str(cert)),
        )
        assert response.status_code == 200 and decode_framed(response.content).showers.shape == (4, N_VOXELS)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{live.http.port}/v2/health/live", timeout=5)
