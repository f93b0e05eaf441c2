"""The gRPC adapter through a real grpc.aio server on loopback: the native streaming API with a sync gRPC client,
the Open Inference Protocol with the real ``tritonclient.grpc`` package, health, errors, cancellation, draining.

The server runs on its own event loop in a background thread (as under uvicorn), so the blocking clients of
the tests talk to it exactly as a remote client would.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest
import torch
import tritonclient.grpc as triton
from test_server_support import ENERGY_RANGE_MEV, N_VOXELS, NOISE_DIM, POISON_MEV, make_repository, reference_showers
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.grpc import service_pb2_grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from caloflow_repo import ModelRepository
from caloflow_server import BatchStats, GenerationService, LoadedModel, RequestStats, load_runtime, shower_noise
from caloflow_server.gen_protos import ensure_protos

ensure_protos()

from caloflow_server._proto.caloflow.v1 import showers_pb2 as pb  # noqa: E402
from caloflow_server._proto.caloflow.v1 import showers_pb2_grpc as pb_grpc  # noqa: E402
from caloflow_server.grpc_server import GrpcRequestRecord, bound_port, build_grpc_server  # noqa: E402

T = TypeVar("T")
MAX_COUNT = 10_000
MAX_BATCH = 64
INFER_LIMIT_BYTES = 64 * 1024  # 2048 showers of 8 voxels per ModelInfer
CLIENT_OPTIONS = [("grpc.http2.bdp_probe", 0), ("grpc.max_receive_message_length", 64 * 1024 * 1024)]


class Recorder:
    """Batcher observer (every batch, finished requests) and gRPC request observer, all in one."""

    def __init__(self) -> None:
        self.batches: list[BatchStats] = []
        self.finished: list[tuple[RequestStats, int]] = []
        self.records: list[GrpcRequestRecord] = []
        self.streams = 0

    def on_batch(self, stats: BatchStats) -> None:
        self.batches.append(stats)

    def on_queue(self, pending_showers: int, pending_requests: int) -> None:
        pass

    def on_request_finished(self, stats: RequestStats) -> None:
        self.finished.append((stats, len(self.batches)))

    def on_stream_open(self, protocol: str) -> None:
        self.streams += 1

    def on_stream_close(self, protocol: str) -> None:
        self.streams -= 1

    def on_request(self, record: GrpcRequestRecord) -> None:
        self.records.append(record)


class ServerThread:
    """A GenerationService (deterministic) and its gRPC server on an event loop in a background thread."""

    def __init__(
        self,
        repository: ModelRepository,
        loaded: list[LoadedModel],
        grpc_options: dict[str, Any] | None = None,
        **service_options: Any,
    ) -> None:
        self.recorder = Recorder()
        self.ready = True
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="grpc-test-server", daemon=True)
        self.thread.start()
        options = {
            "max_count": MAX_COUNT,
            "max_queue_showers": MAX_COUNT,
            "max_batch_showers": MAX_BATCH,
            "deterministic": True,
            **service_options,
        }
        self.service, self.server = self.call(self._start(repository, loaded, options, grpc_options or {}))
        self.address = f"127.0.0.1:{bound_port(self.server)}"

    async def _start(
        self,
        repository: ModelRepository,
        loaded: list[LoadedModel],
        options: dict[str, Any],
        grpc_options: dict[str, Any],
    ) -> tuple[GenerationService, Any]:
        service = GenerationService(repository, loaded, observer_for=lambda *_: self.recorder, **options)
        server = build_grpc_server(
            service,
            host="127.0.0.1",
            port=0,
            readiness=lambda: self.ready,
            max_infer_response_bytes=INFER_LIMIT_BYTES,
            observer=self.recorder,
            **grpc_options,
        )
        await server.start()
        return service, server

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def pending_requests(self) -> int:
        return sum(self.service.batcher(m.model, m.version).pending_requests for m in self.service.loaded_models)

    def stop(self) -> None:
        async def stop() -> None:
            await self.service.aclose()
            await self.server.stop(None)

        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    torch.set_num_threads(1)
    return make_repository(tmp_path_factory.mktemp("grpc"))


@pytest.fixture(scope="module")
def loaded(repository: ModelRepository) -> list[LoadedModel]:
    return [
        load_runtime(repository, model, version, intra_op_threads=1)
        for model, version in (("tiny_photon", 1), ("tiny_photon", 2), ("tiny_pion", 1))
    ]


@pytest.fixture(scope="module")
def server(repository: ModelRepository, loaded: list[LoadedModel]) -> Iterator[ServerThread]:
    thread = ServerThread(repository, loaded)
    yield thread
    thread.stop()


@pytest.fixture
def stub(server: ServerThread) -> Iterator[pb_grpc.ShowerServiceStub]:
    with grpc.insecure_channel(server.address, options=CLIENT_OPTIONS) as channel:
        yield native_stub(channel)


@pytest.fixture
def client(server: ServerThread) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.address)
    yield client
    client.close()


def native_stub(channel: grpc.Channel) -> pb_grpc.ShowerServiceStub:
    return pb_grpc.ShowerServiceStub(channel)  # type: ignore[no-untyped-call]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def split(messages: list[pb.ShowerChunk]) -> tuple[pb.StreamHeader, list[pb.ShowerChunk], pb.StreamTrailer]:
    """Header, data chunks, trailer; fails unless the header is first, the trailer last, data in between."""
    kinds = [message.WhichOneof("marker") for message in messages]
    assert kinds[0] == "header" and kinds[-1] == "trailer" and set(kinds[1:-1]) <= {None}, kinds
    return messages[0].header, messages[1:-1], messages[-1].trailer


def showers_of(chunks: list[pb.ShowerChunk]) -> np.ndarray:
    return np.frombuffer(b"".join(chunk.data for chunk in chunks), dtype="<f4").reshape(-1, N_VOXELS)


def generate(stub: pb_grpc.ShowerServiceStub, **fields: Any) -> list[pb.ShowerChunk]:
    return list(stub.Generate(pb.GenerateRequest(**fields), timeout=30))


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def trailing(error: grpc.RpcError) -> dict[str, str]:
    return dict(error.trailing_metadata() or ())


# ------------------------------------------------------------------------------------------ native API
def test_generate_streams_header_chunks_and_trailer(
    server: ServerThread, stub: pb_grpc.ShowerServiceStub, repository: ModelRepository
) -> None:
    energies = np.geomspace(300.0, 4e6, 300).astype(np.float32)
    seed = 2**63 + 1
    messages = generate(stub, particle="photon", energies_mev=energies.tolist(), seed=seed, chunk_showers=64)
    header, chunks, trailer = split(messages)

    assert (header.model, header.version, header.particle, header.n_voxels) == ("tiny_photon", 1, "photon", N_VOXELS)
    assert header.artifact_sha256 == repository.manifest("tiny_photon", 1).artifact("model.onnx").sha256
    assert (header.seed, header.seed_drawn, header.start_index, header.count) == (seed, False, 0, 300)
    assert header.dtype == "float32-le" and header.deterministic and header.standin and header.chunk_showers == 64
    assert not header.HasField("energy_mev") and not header.extrapolated
    assert [c.start_index for c in chunks] == [0, 64, 128, 192, 256]
    assert [c.n_showers for c in chunks] == [64, 64, 64, 64, 44]
    assert all(len(c.data) == c.n_showers * N_VOXELS * 4 for c in chunks)
    np.testing.assert_array_equal(
        np.concatenate([np.array(c.incident_energy_mev, np.float32) for c in chunks]), energies
    )
    showers = showers_of(chunks)
    expected = reference_showers(energies, shower_noise(seed, 0, 300, NOISE_DIM).numpy())
    np.testing.assert_allclose(showers, expected, rtol=1e-5, atol=1e-6)
    assert (trailer.status, trailer.showers_sent, trailer.next_index) == ("ok", 300, 300)
    assert trailer.sha256 == hashlib.sha256(b"".join(c.data for c in chunks)).hexdigest()
    assert (trailer.error_code, trailer.error_message) == ("", "")
    record = server.recorder.records[-1]
    assert (record.protocol, record.method, record.code, record.showers) == ("grpc", "Generate", "OK", 300)
    assert record.response_bytes == 300 * N_VOXELS * 4 and record.first_chunk_seconds is not None


def test_resume_with_start_index_reproduces_the_rows(stub: pb_grpc.ShowerServiceStub) -> None:
    _, full_chunks, _ = split(
        generate(stub, model="tiny_photon", energy_mev=5000.0, count=500, seed=7, chunk_showers=100)
    )
    header, tail_chunks, trailer = split(
        generate(stub, particle="photon", energy_mev=5000.0, count=200, seed=7, start_index=300, chunk_showers=33)
    )
    full = showers_of(full_chunks)
    assert full.shape == (500, N_VOXELS) and header.energy_mev == 5000.0 and header.start_index == 300
    assert tail_chunks[0].start_index == 300 and trailer.next_index == 500
    np.testing.assert_array_equal(showers_of(tail_chunks), full[300:])


def test_drawn_seed_is_reported_and_reproduces(stub: pb_grpc.ShowerServiceStub) -> None:
    header, chunks, _ = split(generate(stub, model="tiny_photon", model_version="2", energy_mev=3000.0, count=50))
    assert header.seed_drawn and header.version == 2
    _, again, _ = split(
        generate(stub, model="tiny_photon", model_version="2", energy_mev=3000.0, count=50, seed=header.seed)
    )
    np.testing.assert_array_equal(showers_of(chunks), showers_of(again))


@pytest.mark.parametrize("how", ["cancel", "deadline"])
def test_cancel_or_deadline_stops_generation_within_a_batch(server: ServerThread, how: str) -> None:
    recorder = server.recorder
    finished_before = len(recorder.finished)
    request = pb.GenerateRequest(particle="photon", energy_mev=1000.0, count=MAX_COUNT, seed=3, chunk_showers=MAX_BATCH)
    with grpc.insecure_channel(server.address, options=CLIENT_OPTIONS) as channel:
        stub = native_stub(channel)
        if how == "cancel":  # cancelled while the client reads as fast as it can: generation is running
            call = stub.Generate(request, timeout=30)
            for _ in range(6):
                next(call)
            call.cancel()
            expected_code = grpc.StatusCode.CANCELLED
        else:  # the client stops reading; the deadline ends the call
            call = stub.Generate(request, timeout=0.5)
            next(call)
            time.sleep(0.8)
            expected_code = grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(grpc.RpcError) as info:
            for _ in call:
                pass
        assert info.value.code() == expected_code

    wait_for(lambda: len(recorder.finished) > finished_before and server.pending_requests() == 0)
    stats, batches_at_close = recorder.finished[-1]
    assert stats.status == "cancelled" and 0 < stats.delivered < MAX_COUNT
    time.sleep(0.3)
    later = [batch for batch in recorder.batches[batches_at_close:] if stats.request_id in batch.request_ids]
    assert len(later) <= 1  # at most the batch that was already running when the stream closed
    assert sum(stats.request_id in batch.request_ids for batch in recorder.batches) < MAX_COUNT // MAX_BATCH
    wait_for(lambda: recorder.records[-1].code in ("CANCELLED",) and recorder.streams == 0)


@pytest.mark.parametrize(
    ("fields", "code", "field", "text"),
    [
        ({"model": "tiny_electron", "energy_mev": 1000.0, "count": 1}, grpc.StatusCode.NOT_FOUND, "model", "served"),
        ({"model": "tiny_photon", "model_version": "9", "energy_mev": 1000.0, "count": 1}, grpc.StatusCode.NOT_FOUND,
         "model_version", "no version 9"),
        ({"model": "tiny_photon", "model_version": "v1", "energy_mev": 1e3, "count": 1},
         grpc.StatusCode.INVALID_ARGUMENT, "model_version", ""),
        ({"particle": "photon", "energy_mev": -5.0, "count": 1}, grpc.StatusCode.INVALID_ARGUMENT, "energy_mev",
         "positive"),
        ({"particle": "photon", "energy_mev": 100.0, "count": 1}, grpc.StatusCode.INVALID_ARGUMENT, "energy_mev",
         "allow_extrapolation"),
        ({"particle": "photon", "energy_mev": 1000.0}, grpc.StatusCode.INVALID_ARGUMENT, "count", "required"),
        ({"particle": "photon", "energy_mev": 1000.0, "count": 0}, grpc.StatusCode.INVALID_ARGUMENT, "count", "[1,"),
        ({"particle": "photon", "energies_mev": [1000.0, 2000.0, 50.0]}, grpc.StatusCode.INVALID_ARGUMENT,
         "energies_mev[2]", "range"),
        ({"particle": "electron", "energy_mev": 1000.0, "count": 1}, grpc.StatusCode.INVALID_ARGUMENT, "particle", ""),
        ({"energy_mev": 1000.0, "count": 1}, grpc.StatusCode.INVALID_ARGUMENT, "model", "particle"),
    ],
)  # fmt: skip
def test_errors_before_the_first_message_name_the_field(
    stub: pb_grpc.ShowerServiceStub, fields: dict[str, Any], code: grpc.StatusCode, field: str, text: str
) -> None:
    error = rpc_error(lambda: generate(stub, **fields))
    assert error.code() == code
    assert error.details().startswith(f"{field}: ") and text in error.details()
    assert trailing(error)["caloflow-error-field"] == field


def test_extrapolation_is_allowed_when_asked(stub: pb_grpc.ShowerServiceStub) -> None:
    header, chunks, trailer = split(
        generate(stub, particle="photon", energy_mev=100.0, count=3, seed=1, allow_extrapolation=True)
    )
    assert header.extrapolated and trailer.showers_sent == 3 and showers_of(chunks).shape == (3, N_VOXELS)


def test_queue_overflow_is_resource_exhausted(server: ServerThread, stub: pb_grpc.ShowerServiceStub) -> None:
    first = stub.Generate(
        pb.GenerateRequest(particle="photon", energy_mev=1000.0, count=9_000, seed=1, chunk_showers=16), timeout=30
    )
    assert next(first).WhichOneof("marker") == "header"  # admitted; the unread stream holds the queue
    error = rpc_error(lambda: generate(stub, particle="photon", energy_mev=1000.0, count=9_000))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit is 10000" in error.details()
    first.cancel()
    wait_for(lambda: server.pending_requests() == 0)


def test_error_after_the_first_chunk_sends_the_chunks_then_a_resumable_status(stub: pb_grpc.ShowerServiceStub) -> None:
    energies = [1000.0] * 300
    energies[200] = POISON_MEV
    call = stub.Generate(pb.GenerateRequest(particle="photon", energies_mev=energies, seed=1, chunk_showers=50))
    received: list[pb.ShowerChunk] = []
    with pytest.raises(grpc.RpcError) as info:
        for message in call:
            received.append(message)
    header, chunks, trailer = split(received)
    sent = sum(chunk.n_showers for chunk in chunks)
    assert header.count == 300 and 0 < sent <= 200
    assert (trailer.status, trailer.error_code, trailer.showers_sent, trailer.next_index) == (
        "error",
        "INTERNAL",
        sent,
        sent,
    )
    assert "non-finite" in trailer.error_message
    assert trailer.sha256 == hashlib.sha256(b"".join(chunk.data for chunk in chunks)).hexdigest()
    assert info.value.code() == grpc.StatusCode.INTERNAL and "non-finite" in info.value.details()
    assert trailing(info.value)["caloflow-next-index"] == str(sent)


def test_list_models(stub: pb_grpc.ShowerServiceStub) -> None:
    models = {model.name: model for model in stub.ListModels(pb.ListModelsRequest(), timeout=10).models}
    assert sorted(models) == ["tiny_photon", "tiny_pion"]
    photon = models["tiny_photon"]
    assert (photon.particle, photon.default_version, photon.particle_default) == ("photon", 1, True)
    assert [v.version for v in photon.versions] == [1, 2]
    version = photon.versions[0]
    assert (version.n_voxels, version.noise_dim, version.backend, version.device) == (
        N_VOXELS,
        NOISE_DIM,
        "onnx",
        "cpu",
    )
    assert (version.energy_min_mev, version.energy_max_mev) == ENERGY_RANGE_MEV
    assert version.standin and version.deterministic and version.max_count == MAX_COUNT
    assert len(version.artifact_sha256) == 64 and models["tiny_pion"].particle == "pion"


def test_draining_ends_open_streams_with_a_resumable_unavailable(
    repository: ModelRepository, loaded: list[LoadedModel]
) -> None:
    server = ServerThread(repository, loaded)
    try:
        with grpc.insecure_channel(server.address, options=CLIENT_OPTIONS) as channel:
            stub = native_stub(channel)
            request = pb.GenerateRequest(
                particle="photon", energy_mev=1000.0, count=MAX_COUNT, seed=5, chunk_showers=10
            )
            call = stub.Generate(request, timeout=30)
            received = [next(call), next(call)]
            server.call(server.service.aclose(0.0))
            with pytest.raises(grpc.RpcError) as info:
                for message in call:
                    received.append(message)
            _, chunks, trailer = split(received)
            sent = sum(chunk.n_showers for chunk in chunks)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert trailing(info.value)["caloflow-next-index"] == str(trailer.next_index) == str(sent)
            assert trailer.status == "error" and trailer.error_code == "UNAVAILABLE" and 0 < sent < MAX_COUNT
            inference = triton.InferenceServerClient(server.address)
            assert inference.is_server_live() and not inference.is_server_ready()
            assert not inference.is_model_ready("tiny_photon")
            inference.close()
            error = rpc_error(lambda: generate(stub, particle="photon", energy_mev=1000.0, count=1))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls(repository: ModelRepository, loaded: list[LoadedModel], tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = ServerThread(repository, loaded[:1], grpc_options={"tls_cert": str(cert), "tls_key": str(key)})
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(server.address, credentials) as channel:
            models = native_stub(channel).ListModels(pb.ListModelsRequest(), timeout=10).models
        assert [model.name for model in models] == ["tiny_photon"]
        with grpc.insecure_channel(server.address) as channel:
            error = rpc_error(lambda: native_stub(channel).ListModels(pb.ListModelsRequest(), timeout=2))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()
    with pytest.raises(ValueError, match="both"):
        build_grpc_server(server.service, host="127.0.0.1", port=0, readiness=lambda: True, tls_cert=str(cert))


def test_health_follows_readiness(server: ServerThread) -> None:
    health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
    health_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")
    with grpc.insecure_channel(server.address) as channel:
        health = health_grpc.HealthStub(channel)
        check = health.Check
        serving = health_pb2.HealthCheckResponse.SERVING
        assert check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == serving
        assert (
            check(health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"), timeout=5).status == serving
        )
        server.ready = False
        try:
            status = check(health_pb2.HealthCheckRequest(service="caloflow.v1.ShowerService"), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            server.ready = True
        error = rpc_error(lambda: check(health_pb2.HealthCheckRequest(service="nope"), timeout=5))
        assert error.code() == grpc.StatusCode.NOT_FOUND


# ---------------------------------------------------------------------------------- OIP / tritonclient
def energy_input(energies: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("INCIDENT_ENERGY", [len(energies), 1], "FP32")
    tensor.set_data_from_numpy(np.asarray(energies, dtype=np.float32).reshape(-1, 1))
    return tensor


def seed_input(seed: int, n: int = 1) -> triton.InferInput:
    tensor = triton.InferInput("SEED", [n, 1], "UINT64")
    tensor.set_data_from_numpy(np.full((n, 1), seed, dtype=np.uint64))
    return tensor


def triton_error(call: Callable[[], object]) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def test_tritonclient_health_and_metadata(server: ServerThread, client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny_photon") and client.is_model_ready("tiny_photon", "2")
    assert not client.is_model_ready("tiny_electron") and not client.is_model_ready("tiny_photon", "7")
    server.ready = False
    try:
        assert not client.is_server_ready() and not client.is_model_ready("tiny_photon")
    finally:
        server.ready = True
    metadata = client.get_server_metadata()
    assert metadata.name == "caloflow-serve" and "model_configuration" in metadata.extensions
    model = client.get_model_metadata("tiny_photon")
    assert (model.name, list(model.versions), model.platform) == ("tiny_photon", ["1", "2"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [
        ("INCIDENT_ENERGY", "FP32", [-1, 1]),
        ("SEED", "UINT64", [-1, 1]),
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in model.outputs] == [("SHOWERS", "FP32", [-1, N_VOXELS])]
    assert list(client.get_model_metadata("tiny_photon", "2").versions) == ["2"]
    error = triton_error(lambda: client.get_model_metadata("tiny_electron"))
    assert error.status() == "StatusCode.NOT_FOUND" and "tiny_electron" in error.message()


def test_tritonclient_model_config_and_repository_index(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("tiny_photon").config
    assert config.name == "tiny_photon" and config.max_batch_size == INFER_LIMIT_BYTES // (4 * N_VOXELS)
    assert [(i.name, i.data_type, list(i.dims), i.optional) for i in config.input] == [
        ("INCIDENT_ENERGY", triton.model_config_pb2.TYPE_FP32, [1], False),
        ("SEED", triton.model_config_pb2.TYPE_UINT64, [1], True),
    ]
    assert [(o.name, list(o.dims)) for o in config.output] == [("SHOWERS", [N_VOXELS])]
    assert list(config.dynamic_batching.preferred_batch_size) == [MAX_BATCH]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert list(config.version_policy.specific.versions) == [1, 2]
    assert config.instance_group[0].kind == triton.model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert config.parameters["deterministic"].string_value == "true"
    assert config.parameters["particle"].string_value == "photon"
    index = client.get_model_repository_index()
    entries = {(m.name, m.version, m.state) for m in index.models}
    assert entries == {("tiny_photon", "1", "READY"), ("tiny_photon", "2", "READY"), ("tiny_pion", "1", "READY")}


def test_tritonclient_infer_matches_native_generate_bit_for_bit(
    stub: pb_grpc.ShowerServiceStub, client: triton.InferenceServerClient
) -> None:
    energies = np.geomspace(300.0, 4e6, 250).astype(np.float32)
    seed = 2**64 - 5
    _, chunks, _ = split(
        generate(stub, model="tiny_photon", energies_mev=energies.tolist(), seed=seed, chunk_showers=37)
    )
    native = showers_of(chunks)

    result = client.infer(
        "tiny_photon", [energy_input(energies), seed_input(seed)], outputs=[triton.InferRequestedOutput("SHOWERS")]
    )
    showers = result.as_numpy("SHOWERS")
    assert showers.dtype == np.float32 and showers.shape == (250, N_VOXELS)
    np.testing.assert_array_equal(showers, native)
    response = result.get_response()
    assert (response.model_name, response.model_version) == ("tiny_photon", "1")
    assert response.parameters["seed"].uint64_param == seed
    assert response.parameters["showers_sha256"].string_param == hashlib.sha256(native.tobytes()).hexdigest()
    per_row_seed = client.infer("tiny_photon", [energy_input(energies), seed_input(seed, len(energies))])
    np.testing.assert_array_equal(per_row_seed.as_numpy("SHOWERS"), native)
    by_parameter = client.infer(
        "tiny_photon", [energy_input(energies[100:])], parameters={"seed": 12345, "start_index": 100}
    )
    _, tail, _ = split(
        generate(stub, model="tiny_photon", energies_mev=energies[100:].tolist(), seed=12345, start_index=100)
    )
    np.testing.assert_array_equal(by_parameter.as_numpy("SHOWERS"), showers_of(tail))


def test_typed_contents_are_accepted(server: ServerThread) -> None:
    energies = [1000.0, 2000.0, 4000.0]
    request = triton_pb.ModelInferRequest(model_name="tiny_pion", id="typed-1")
    energy = request.inputs.add(name="INCIDENT_ENERGY", datatype="FP32", shape=[3, 1])
    energy.contents.fp32_contents.extend(energies)
    seed = request.inputs.add(name="SEED", datatype="UINT64", shape=[1])
    seed.contents.uint64_contents.append(99)
    with grpc.insecure_channel(server.address) as channel:
        response = triton_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert (response.id, response.model_name, list(response.outputs[0].shape)) == (
        "typed-1",
        "tiny_pion",
        [3, N_VOXELS],
    )
    showers = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(3, N_VOXELS)
    expected = reference_showers(np.array(energies, np.float32), shower_noise(99, 0, 3, NOISE_DIM).numpy(), seed=2)
    np.testing.assert_allclose(showers, expected, rtol=1e-5, atol=1e-6)


def test_infer_errors_name_the_tensor(client: triton.InferenceServerClient) -> None:
    def infer(inputs: list[triton.InferInput], model: str = "tiny_photon", **options: Any) -> object:
        return client.infer(model, inputs, **options)

    energies = np.array([1000.0, 2000.0, 50.0], dtype=np.float32)
    cases: list[tuple[Callable[[], object], str, str]] = [
        (lambda: infer([energy_input(energies[:2])], model="tiny_electron"), "NOT_FOUND", "tiny_electron"),
        (lambda: infer([energy_input(energies)]), "INVALID_ARGUMENT", "INCIDENT_ENERGY[2]: 50.0 MeV is outside"),
        (lambda: infer([seed_input(1)]), "INVALID_ARGUMENT", "INCIDENT_ENERGY: is required"),
        (lambda: infer([energy_input(energies[:2]), seed_input(1, 3)]), "INVALID_ARGUMENT", "SEED: must hold one"),
        (
            lambda: infer([energy_input(energies[:2]), seed_input(1)], parameters={"seed": 2}),
            "INVALID_ARGUMENT",
            "SEED",
        ),
        (
            lambda: infer([energy_input(energies[:2])], outputs=[triton.InferRequestedOutput("LOGITS")]),
            "INVALID_ARGUMENT",
            "unknown output 'LOGITS'",
        ),
        (
            lambda: infer([energy_input(np.full(3000, 1000.0, np.float32))]),
            "RESOURCE_EXHAUSTED",
            f"the {INFER_LIMIT_BYTES}-byte limit of one ModelInfer response (at most 2048 showers)",
        ),
    ]
    for call, code, text in cases:
        error = triton_error(call)
        assert error.status() == f"StatusCode.{code}" and text in error.message(), error
    wrong_type = triton.InferInput("INCIDENT_ENERGY", [2, 1], "FP64")
    wrong_type.set_data_from_numpy(np.array([[1000.0], [2000.0]]))
    error = triton_error(lambda: infer([wrong_type]))
    assert (
        error.status() == "StatusCode.INVALID_ARGUMENT" and "INCIDENT_ENERGY: datatype must be FP32" in error.message()
    )
    flat = triton.InferInput("INCIDENT_ENERGY", [2], "FP32")
    flat.set_data_from_numpy(np.array([1000.0, 2000.0], dtype=np.float32))
    error = triton_error(lambda: infer([flat]))
    assert error.status() == "StatusCode.INVALID_ARGUMENT" and "shape must be [n, 1]" in error.message()
    extra = triton.InferInput("NOISE", [2, 16], "FP32")
    extra.set_data_from_numpy(np.zeros((2, 16), np.float32))
    error = triton_error(lambda: infer([energy_input(energies[:2]), extra]))
    assert error.status() == "StatusCode.INVALID_ARGUMENT" and "unknown input 'NOISE'" in error.message()


def test_tritonclient_statistics(server: ServerThread, client: triton.InferenceServerClient) -> None:
    before = client.get_inference_statistics("tiny_pion", "1").model_stats[0]
    client.infer("tiny_pion", [energy_input(np.full(130, 2000.0, np.float32))])
    record = server.recorder.records[-1]
    assert (record.protocol, record.method, record.model, record.version, record.code) == (
        "grpc_oip",
        "ModelInfer",
        "tiny_pion",
        1,
        "OK",
    )
    assert (record.showers, record.response_bytes) == (130, 130 * N_VOXELS * 4)
    triton_error(lambda: client.infer("tiny_pion", [energy_input(np.full(2, -1.0, np.float32))]))
    rejected = server.recorder.records[-1]
    assert (rejected.model, rejected.code, rejected.reason) == (None, "INVALID_ARGUMENT", "invalid")
    after = client.get_inference_statistics("tiny_pion", "1").model_stats[0]
    assert (after.name, after.version) == ("tiny_pion", "1")
    assert after.inference_count - before.inference_count == 130
    assert after.inference_stats.success.count - before.inference_stats.success.count == 1
    assert after.execution_count - before.execution_count >= 3  # 130 showers in batches of at most 64
    assert after.last_inference >= before.last_inference
    everything = client.get_inference_statistics().model_stats
    assert {(s.name, s.version) for s in everything} == {("tiny_photon", "1"), ("tiny_photon", "2"), ("tiny_pion", "1")}
