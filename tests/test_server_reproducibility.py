"""The reproducibility promise, end to end: one seeded request gives the same bits through native HTTP (npy and
framed), native gRPC, OIP REST and OIP gRPC, from a real server process with its default settings, whether the
server is idle or busy with other streams, and a resumed stream (``start_index``) continues it exactly."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
import torch
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from server_process import ServerProcess, server_process
from test_server_support import N_VOXELS, make_repository

from caloflow_server.http_framing import decode_framed

SEED = 2**64 - 77
ENERGIES = np.geomspace(300.0, 3e6, 150).astype(np.float32)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("repro")
    repository = make_repository(root)
    # no batching or determinism settings: the defaults are what is tested
    with server_process(repository.root, root / "server.log", {"CALOFLOW_MODELS": "tiny_photon"}) as running:
        yield running.wait_ready()


def _native_http(server: ServerProcess, fmt: str, start: int = 0) -> np.ndarray:
    body = {"model": "tiny_photon", "energies_mev": ENERGIES[start:].tolist(), "seed": SEED, "start_index": start}
    response = httpx.post(f"{server.url}/generate", json={**body, "format": fmt}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["X-Deterministic"] == "true"
    if fmt == "npy":
        return np.load(io.BytesIO(response.content))
    framed = decode_framed(response.content)
    assert framed.status is not None and framed.status["status"] == "ok"
    return framed.showers


def _native_grpc(server: ServerProcess) -> np.ndarray:
    from caloflow_server._proto.caloflow.v1 import showers_pb2 as pb
    from caloflow_server._proto.caloflow.v1 import showers_pb2_grpc as pb_grpc

    request = pb.GenerateRequest(model="tiny_photon", energies_mev=ENERGIES.tolist(), seed=SEED, chunk_showers=29)
    with grpc.insecure_channel(server.grpc_target) as channel:
        chunks = list(pb_grpc.ShowerServiceStub(channel).Generate(request, timeout=120))
    assert chunks[0].header.deterministic and chunks[-1].trailer.status == "ok"
    data = b"".join(chunk.data for chunk in chunks[1:-1])
    return np.frombuffer(data, dtype="<f4").reshape(-1, N_VOXELS)


def _oip_http(server: ServerProcess) -> np.ndarray:
    client = triton_http.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=120)
    energy = triton_http.InferInput("INCIDENT_ENERGY", [len(ENERGIES), 1], "FP32")
    energy.set_data_from_numpy(ENERGIES.reshape(-1, 1), binary_data=True)
    seed = triton_http.InferInput("SEED", [1], "UINT64")
    seed.set_data_from_numpy(np.array([SEED], dtype=np.uint64), binary_data=True)
    try:
        return np.asarray(client.infer("tiny_photon", [energy, seed]).as_numpy("SHOWERS"))
    finally:
        client.close()


def _oip_grpc(server: ServerProcess) -> np.ndarray:
    client = triton_grpc.InferenceServerClient(url=server.grpc_target)
    energy = triton_grpc.InferInput("INCIDENT_ENERGY", [len(ENERGIES), 1], "FP32")
    energy.set_data_from_numpy(ENERGIES.reshape(-1, 1))
    seed = triton_grpc.InferInput("SEED", [1], "UINT64")
    seed.set_data_from_numpy(np.array([SEED], dtype=np.uint64))
    try:
        return np.asarray(client.infer("tiny_photon", [energy, seed]).as_numpy("SHOWERS"))
    finally:
        client.close()


class _Load:
    """Other clients keeping the batcher busy: a long stream and a stream of small requests of other seeds."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._long, daemon=True), threading.Thread(target=self._small)]
        self.errors: list[BaseException] = []

    def _long(self) -> None:
        body = {"model": "tiny_photon", "energy_mev": 5e4, "count": 200_000, "seed": 1}
        try:
            with httpx.stream("POST", f"{self.url}/generate", json=body, timeout=120) as response:
                for _ in response.iter_raw(1 << 16):
                    if self.stop.is_set():
                        return
        except BaseException as exc:
            self.errors.append(exc)

    def _small(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            body = {"model": "tiny_photon", "energy_mev": 1e3 * n, "count": 1 + n % 7, "seed": n, "format": "npy"}
            response = httpx.post(f"{self.url}/generate", json=body, timeout=120)
            if response.status_code != 200:
                self.errors.append(AssertionError(response.text))

    def __enter__(self) -> _Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)
        assert not self.errors, self.errors


def test_seeded_request_is_bit_identical_across_protocols_and_load(server: ServerProcess) -> None:
    idle = _native_http(server, "npy")
    assert idle.shape == (len(ENERGIES), N_VOXELS) and idle.dtype == np.float32 and np.isfinite(idle).all()
    # one shower (the latency lane, a small verified call shape) is the same row of the 150-shower request
    np.testing.assert_array_equal(_native_http(server, "npy", start=149), idle[149:], err_msg="one shower, idle")
    with _Load(server.url):
        busy = {
            "one shower at 149": _native_http(server, "npy", start=149),
            "framed": _native_http(server, "framed"),
            "grpc": _native_grpc(server),
            "oip-http": _oip_http(server),
            "oip-grpc": _oip_grpc(server),
            "resumed at 61": _native_http(server, "npy", start=61),
        }
    for name, showers in busy.items():
        expected = idle[61:] if name.startswith("resumed") else idle[149:] if name.startswith("one") else idle
        np.testing.assert_array_equal(showers, expected, err_msg=name)
    other_seed = httpx.post(
        f"{server.url}/generate",
        json={"model": "tiny_photon", "energies_mev": ENERGIES[:5].tolist(), "seed": SEED - 1, "format": "npy"},
        timeout=60,
    )
    assert not np.array_equal(np.load(io.BytesIO(other_seed.content)), idle[:5])  # the seed does matter


def test_default_settings_are_reported(server: ServerProcess) -> None:
    log = server.log.read_text()
    assert "caloflow-serve ready" in log
    config = httpx.get(f"{server.url}/v2/models/tiny_photon/config", timeout=10).json()
    assert config["parameters"]["deterministic"]["string_value"] == "true"
    # the call shapes verified at load (which ones pass depends on the CPU's kernels), the full one always
    shapes = [int(n) for n in config["parameters"]["call_shapes"]["string_value"].split(",")]
    assert shapes[-1] == 64 and set(shapes) <= {1, 2, 4, 8, 16, 32, 64}
    assert f"call shapes of onnx on cpu: serving {shapes} rows (reference 64)" in log
