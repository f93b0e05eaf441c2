"""The Python client (``clients/python``, package ``caloflow_client``) and ``caloflow generate|models`` against the
real server process: sync and async, HTTP and gRPC, equal showers for a seed, streaming, files that ``caloflow
data check`` accepts, typed errors with the server's message, timeouts, and streams resumed after real
interruptions (a TCP connection reset mid-stream; a server drained by SIGTERM and replaced by a new process on
the same ports) that equal an uninterrupted download bit for bit. Servers run in deterministic mode.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from server_process import ServerProcess, server_process
from test_client_python_support import CuttingProxy, silent_server
from test_server_support import N_VOXELS, POISON_MEV, make_repository

from caloflow.cli import main as caloflow_main
from caloflow_client._protogen import ensure

ensure()

from caloflow_client import (  # noqa: E402
    AsyncGrpcClient,
    AsyncHttpClient,
    ClientTimeoutError,
    GenerateRequest,
    GenerationResult,
    GrpcClient,
    HttpClient,
    InternalServerError,
    InvalidArgumentError,
    InvalidRequestError,
    NotFoundError,
    ServerError,
    ShowerChunk,
)

DEMO_PHOTON = Path(__file__).resolve().parents[1] / "model_repo" / "caloflow_photon"
DEMO_VERSION = int((DEMO_PHOTON / "default").read_text())  # `make models` publishes the next number each time
DETERMINISTIC = ("--deterministic", "true")
TINY = {"model": "tiny_photon", "seed": 7}
ENERGIES = np.geomspace(300.0, 3e6, 1500)  # per-shower form, inside the tiny models' trained range


# --------------------------------------------------------------------------------------------- servers
@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test models plus the committed demo photon model (368 voxels, for CaloChallenge file checks)."""
    root = make_repository(tmp_path_factory.mktemp("client-repo")).root
    shutil.copytree(DEMO_PHOTON, root / "caloflow_photon")
    return root


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"CALOFLOW_MAX_BATCH_SHOWERS": "256"}
    with server_process(repo, tmp_path_factory.mktemp("client-log") / "server.log", env, DETERMINISTIC) as running:
        yield running.wait_ready()


@pytest.fixture(scope="module")
def reference(server: ServerProcess) -> GenerationResult:
    """An uninterrupted per-shower HTTP download: what every other path must reproduce bit for bit."""
    with HttpClient(server.url) as client:
        return client.generate(energies_mev=ENERGIES, chunk_showers=200, **TINY)


def _client(kind: str, server: ServerProcess | None, port: int | None = None, **options: Any) -> Any:
    """``sync-http``, ``sync-grpc``, ``async-http`` or ``async-grpc``, optionally through another local port."""
    mode, transport = kind.split("-")
    assert server is not None or port is not None
    if transport == "http":
        url = server.url if server is not None and port is None else f"http://127.0.0.1:{port}"
        return (HttpClient if mode == "sync" else AsyncHttpClient)(url, **options)
    target = server.grpc_target if server is not None and port is None else f"127.0.0.1:{port}"
    return (GrpcClient if mode == "sync" else AsyncGrpcClient)(target, **options)


def _collect(kind: str, client: Any, **fields: Any) -> tuple[np.ndarray, list[ShowerChunk], list[int]]:
    """Stream a request chunk by chunk (sync or async): showers, the chunks, and where it resumed."""

    async def run_async() -> tuple[list[ShowerChunk], list[int]]:
        async with client:
            stream = client.stream(**fields)
            chunks = [chunk async for chunk in stream]
            return chunks, stream.resumed_at

    if kind.startswith("async"):
        chunks, resumed = asyncio.run(run_async())
    else:
        with client:
            stream = client.stream(**fields)
            chunks = list(stream)
            resumed = stream.resumed_at
    return np.concatenate([chunk.showers for chunk in chunks]), chunks, resumed


KINDS = ["sync-http", "sync-grpc", "async-http", "async-grpc"]


# --------------------------------------------------------------------------------------------- packaging
def test_import_pulls_in_neither_torch_nor_caloflow() -> None:
    code = (
        "import sys, caloflow_client, caloflow_client.files\n"
        "from caloflow_client import AsyncGrpcClient, AsyncHttpClient, GrpcClient, HttpClient, ServerError\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    loaded = set(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    )
    assert {"caloflow_client", "grpc", "httpx", "numpy"} <= loaded
    assert not loaded & {"torch", "caloflow", "caloflow_server", "caloflow_repo", "onnxruntime"}


# --------------------------------------------------------------------------------------------- showers
@pytest.mark.parametrize("kind", KINDS)
def test_every_client_gives_the_same_showers(kind: str, server: ServerProcess, reference: GenerationResult) -> None:
    showers, chunks, resumed = _collect(kind, _client(kind, server), energies_mev=ENERGIES, chunk_showers=300, **TINY)
    assert showers.dtype == np.float32 and showers.shape == (len(ENERGIES), N_VOXELS)
    assert showers.tobytes() == reference.showers.tobytes()  # bit for bit, whatever the transport and chunking
    assert [chunk.start_index for chunk in chunks] == list(range(0, len(ENERGIES), 300)) and resumed == []
    energies = np.concatenate([chunk.incident_energy_mev for chunk in chunks])
    assert np.array_equal(energies, ENERGIES.astype(np.float32))


def test_http_and_grpc_results_carry_the_same_metadata(server: ServerProcess, reference: GenerationResult) -> None:
    with GrpcClient(server.grpc_target) as client:
        result = client.generate(energies_mev=ENERGIES, chunk_showers=200, **TINY)
    assert result.showers.tobytes() == reference.showers.tobytes()
    assert np.array_equal(result.incident_energies_mev, reference.incident_energies_mev)
    http, grpc = reference.info, result.info
    assert (http.transport, http.server, grpc.transport, grpc.server) == (
        "http",
        server.url,
        "grpc",
        server.grpc_target,
    )
    same = ("model", "version", "particle", "artifact_sha256", "seed", "start_index", "count", "n_voxels", "standin")
    assert all(getattr(http, name) == getattr(grpc, name) for name in same)
    assert (http.model, http.version, http.seed, http.count, http.n_voxels) == ("tiny_photon", 1, 7, len(ENERGIES), 8)
    assert http.standin and http.deterministic and not http.seed_drawn and http.energy_mev is None
    assert len(http.artifact_sha256) == 64


def test_a_drawn_seed_is_reported_and_reproduces_the_showers(server: ServerProcess) -> None:
    with HttpClient(server.url) as client:
        first = client.generate(model="tiny_pion", energy_mev=5000.0, count=300)
        again = client.generate(model="tiny_pion", energy_mev=5000.0, count=300, seed=first.info.seed)
    assert first.info.seed_drawn and not again.info.seed_drawn and first.info.energy_mev == 5000.0
    assert again.showers.tobytes() == first.showers.tobytes()
    assert np.all(first.incident_energies_mev == np.float32(5000.0))


@pytest.mark.parametrize("kind", ["sync-http", "sync-grpc"])
def test_stream_hands_on_chunks_before_the_request_is_done(kind: str, server: ServerProcess) -> None:
    """Three chunks of a million-shower request, then close: the server logs the request stopped far short of it."""
    with _client(kind, server) as client:
        stream = client.stream(model="tiny_pion", energy_mev=2000.0, count=1_000_000, seed=3, chunk_showers=1000)
        chunks = [next(stream) for _ in range(3)]
        assert stream.info is not None and stream.info.count == 1_000_000 and stream.info.model == "tiny_pion"
        stream.close()
    assert [chunk.start_index for chunk in chunks] == [0, 1000, 2000]
    assert all(chunk.showers.shape == (1000, N_VOXELS) for chunk in chunks)
    pattern = r"tiny_pion@1 (\d+)/1000000 showers" if kind == "sync-http" else r"tiny_pion@1 showers=(\d+) .*CANCELLED"
    sent = _wait_for_log(server, pattern)
    assert sent < 1_000_000  # the request ended early: the chunks were handed on while it was running


def _wait_for_log(server: ServerProcess, pattern: str, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = re.search(pattern, server.log.read_text())
        if match:
            return int(match.group(1))
        time.sleep(0.1)
    raise AssertionError(f"no log line matches {pattern!r}:\n{server.log.read_text()[-3000:]}")


# --------------------------------------------------------------------------------------------- files
def test_hdf5_file_is_a_calochallenge_file_with_provenance(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    energies = np.array([1024.0, 65536.0, 262144.0] * 20)
    path = tmp_path / "photons.h5"
    with HttpClient(server.url) as client:
        info = client.generate_to_file(path, model="caloflow_photon", particle="photon", energies_mev=energies, seed=5)
    assert caloflow_main(["data", "check", str(path), "--particle", "photon", "--no-progress"]) == 0
    assert f"OK: {path} is a valid ds1-photon file (60 showers)" in capsys.readouterr().out
    with h5py.File(path, "r") as h5:
        assert h5["incident_energies"].shape == (60, 1) and h5["showers"].shape == (60, 368)
        assert h5["showers"].compression == "gzip"
        showers, stored_energies, attrs = h5["showers"][:], h5["incident_energies"][:, 0], dict(h5.attrs)
    assert attrs["model"] == "caloflow_photon" and attrs["model_version"] == DEMO_VERSION and attrs["seed"] == 5
    assert attrs["artifact_sha256"] == info.artifact_sha256 and attrs["server"] == server.url
    assert attrs["standin"] == 1 and "not Geant4" in attrs["description"]
    assert np.array_equal(stored_energies, energies)
    with GrpcClient(server.grpc_target) as client:  # the same request over gRPC: the same showers
        result = client.generate(model="caloflow_photon", energies_mev=energies, seed=5)
    assert np.array_equal(showers, result.showers)


@pytest.mark.parametrize("kind", ["sync-grpc", "async-http"])
def test_npy_file_holds_the_showers(
    kind: str, server: ServerProcess, reference: GenerationResult, tmp_path: Path
) -> None:
    path = tmp_path / "showers.npy"
    client = _client(kind, server)
    fields = {"energies_mev": ENERGIES, "chunk_showers": 128, "progress": True, **TINY}
    if kind.startswith("async"):

        async def run() -> None:
            async with client:
                await client.generate_to_file(path, **fields)

        asyncio.run(run())
    else:
        with client:
            client.generate_to_file(path, **fields)
    assert np.load(path).tobytes() == reference.showers.tobytes()


def test_a_failed_download_leaves_no_file(server: ServerProcess, tmp_path: Path) -> None:
    """The server refuses NaN output after streaming 500 showers: typed error, and neither file nor temporary."""
    energies = np.full(1000, 1000.0)
    energies[700] = POISON_MEV
    with HttpClient(server.url) as client, pytest.raises(InternalServerError, match="non-finite") as failure:
        client.generate_to_file(tmp_path / "broken.h5", model="tiny_photon", energies_mev=energies, chunk_showers=100)
    assert failure.value.code == "INTERNAL" and failure.value.next_index is not None
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------- errors
ERROR_CASES = [
    ({"model": "no_such_model", "energy_mev": 1000.0, "count": 5}, NotFoundError, "model", "no model 'no_such_model'"),
    ({"model": "tiny_photon", "energy_mev": 1.0, "count": 5}, InvalidArgumentError, "energy_mev", "trained range"),
    ({"particle": "photon", "energy_mev": 1000.0, "count": 5}, InvalidArgumentError, "particle", "name the model"),
    ({"model": "tiny_photon", "energy_mev": 1000.0, "count": 10**7}, InvalidArgumentError, "count", "10000000"),
]


@pytest.mark.parametrize(("fields", "error", "field", "text"), ERROR_CASES)
def test_server_errors_are_typed_alike_over_http_and_grpc(
    fields: dict[str, Any], error: type[ServerError], field: str, text: str, server: ServerProcess
) -> None:
    messages = []
    for kind in ("sync-http", "sync-grpc"):
        with _client(kind, server, max_retries=0) as client, pytest.raises(error) as raised:
            client.generate(**fields)
        assert raised.value.field == field and text in raised.value.message
        assert raised.value.code == error.default_code
        messages.append(raised.value.message)
    assert messages[0] == messages[1]  # the server's own text, whichever transport carried it


def test_async_clients_raise_the_same_errors(server: ServerProcess) -> None:
    async def run(client: Any) -> ServerError:
        async with client:
            with pytest.raises(NotFoundError) as raised:
                await client.generate(model="no_such_model", energy_mev=1000.0, count=5)
            return raised.value

    errors = [asyncio.run(run(_client(kind, server))) for kind in ("async-http", "async-grpc")]
    assert errors[0].message == errors[1].message and errors[0].field == "model"


def test_malformed_requests_are_refused_before_sending() -> None:
    client = HttpClient("http://127.0.0.1:9")  # nothing listens there: the request must not be sent
    with pytest.raises(InvalidRequestError, match="count"):
        client.generate(particle="photon", energy_mev=1000.0)
    with pytest.raises(InvalidRequestError, match="energies_mev"):
        client.generate(particle="photon", energies_mev=[], seed=1)
    with pytest.raises(InvalidRequestError, match="seed"):
        client.generate(particle="photon", energy_mev=1000.0, count=1, seed=-1)
    with pytest.raises(InvalidRequestError, match="path"):
        client.generate_to_file("out.csv", particle="photon", energy_mev=1000.0, count=1)


@pytest.mark.parametrize("kind", ["sync-http", "sync-grpc", "async-grpc"])
def test_a_silent_server_times_out(kind: str) -> None:
    with silent_server() as port:
        client = _client(kind, None, port, timeout_s=0.3, max_retries=1, backoff_s=0.01)
        with pytest.raises(ClientTimeoutError):
            _collect(kind, client, model="tiny_photon", energy_mev=1000.0, count=5)


# --------------------------------------------------------------------------------------------- models
def test_models_are_listed_alike_over_http_and_grpc(server: ServerProcess) -> None:
    with HttpClient(server.url) as http, GrpcClient(server.grpc_target) as grpc:
        listings = [http.models(), grpc.models()]

    async def run() -> list[Any]:
        async with AsyncHttpClient(server.url) as client:
            return list(await client.models())

    listings.append(asyncio.run(run()))
    for models in listings:
        assert [model.name for model in models] == ["caloflow_photon", "tiny_photon", "tiny_pion"]
        by_name = {model.name: model for model in models}
        assert by_name["caloflow_photon"].versions[0].n_voxels == 368 and by_name["tiny_pion"].particle == "pion"
        assert [model.default_version for model in models] == [DEMO_VERSION, 1, 1]
        assert all(model.versions[0].standin for model in models)
    key = [(m.name, m.particle, [(v.version, v.artifact_sha256, v.n_voxels, v.energy_min_mev) for v in m.versions])
           for m in listings[0]]  # fmt: skip
    assert key == [
        (m.name, m.particle, [(v.version, v.artifact_sha256, v.n_voxels, v.energy_min_mev) for v in m.versions])
        for m in listings[1]
    ]
    assert listings[1][1].versions[0].device == "cpu" and listings[1][1].versions[0].max_count == 1_000_000


# --------------------------------------------------------------------------------------------- resumption
@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_cut_mid_way_resumes_to_the_same_showers(
    kind: str, server: ServerProcess, reference: GenerationResult
) -> None:
    """A proxy cuts the TCP connection after 40 KB (the HTTP header frame lists the 1500 energies: 22 KB) in the
    middle of a message; the client resumes at the next shower index."""
    proxy = CuttingProxy(server.http if kind.endswith("http") else server.grpc, cut_after_bytes=40_000)
    try:
        client = _client(kind, server, proxy.port, max_retries=3, backoff_s=0.05)
        showers, chunks, resumed = _collect(kind, client, energies_mev=ENERGIES, chunk_showers=100, **TINY)
    finally:
        proxy.close()
    assert proxy.cuts_done == 1 and len(resumed) == 1 and 0 < resumed[0] < len(ENERGIES)
    assert showers.tobytes() == reference.showers.tobytes()
    assert [chunk.start_index for chunk in chunks] == list(range(0, len(ENERGIES), 100))  # no gap, no repeat


def test_streams_resume_on_another_server_after_a_sigterm_drain(repo: Path, tmp_path: Path) -> None:
    """Two replicas behind a switching TCP proxy. SIGTERM ends the first one's in-flight HTTP and gRPC streams
    with a resumable UNAVAILABLE status (drain timeout 0); the clients retry, reach the second replica, resume at
    ``next_index``, and both downloads equal an uninterrupted one bit for bit."""
    env = {"CALOFLOW_DRAIN_TIMEOUT_S": "0", "CALOFLOW_MODELS": "tiny_photon", "CALOFLOW_MAX_BATCH_SHOWERS": "4096"}
    fields = {"model": "tiny_photon", "energy_mev": 3000.0, "count": 40_000, "seed": 11, "chunk_showers": 500}
    retry = {"max_retries": 20, "backoff_s": 0.05, "max_backoff_s": 0.5}
    hold, started = threading.Event(), {"http": threading.Event(), "grpc": threading.Event()}
    results: dict[str, Any] = {}

    def consume(name: str, client: Any) -> None:
        try:
            with client:
                stream = client.stream(**fields)
                chunks = []
                for chunk in stream:
                    chunks.append(chunk.showers)
                    if len(chunks) == 3:  # hold the stream open, a few chunks in, until the first replica is gone
                        started[name].set()
                        hold.wait(60)
                results[name] = (np.concatenate(chunks), stream.resumed_at, stream.info)
        except BaseException as exc:
            results[name] = exc
        finally:
            started[name].set()

    with (
        server_process(repo, tmp_path / "first.log", env, DETERMINISTIC) as first,
        server_process(repo, tmp_path / "second.log", env, DETERMINISTIC) as second,
    ):
        first.wait_ready(), second.wait_ready()
        http, grpc = CuttingProxy(first.http), CuttingProxy(first.grpc)
        threads = [
            threading.Thread(target=consume, args=("http", HttpClient(f"http://127.0.0.1:{http.port}", **retry))),
            threading.Thread(target=consume, args=("grpc", GrpcClient(f"127.0.0.1:{grpc.port}", **retry))),
        ]
        for thread in threads:
            thread.start()
        assert all(event.wait(60) for event in started.values()), results
        first.process.send_signal(signal.SIGTERM)
        assert first.process.wait(60) == 0, first.log.read_text()
        http.target_port, grpc.target_port = second.http, second.grpc
        hold.set()  # the clients read what the first replica sent, then resume on the second
        for thread in threads:
            thread.join(120)
        http.close(), grpc.close()
        with HttpClient(second.url) as client:
            expected = client.generate(**fields).showers
    assert re.search(r"tiny_photon@1 showers=\d+ .*code=UNAVAILABLE", first.log.read_text())  # gRPC ended by drain
    for name in ("http", "grpc"):
        assert not isinstance(results[name], BaseException), results[name]
        showers, resumed, info = results[name]
        assert len(resumed) >= 1 and 1500 <= resumed[0] < 40_000, resumed
        assert showers.tobytes() == expected.tobytes() and info.count == 40_000 and info.seed == 11


def test_resumed_request_continues_the_rest() -> None:
    request = GenerateRequest.build(particle="photon", energies_mev=[1e3, 2e3, 3e3, 4e3], start_index=10)
    rest = request.resumed_at(12, model="m", version=3, seed=9)
    assert (rest.model, rest.particle, rest.model_version, rest.seed, rest.start_index) == ("m", None, 3, 9, 12)
    assert rest.energies_mev is not None and rest.energies_mev.tolist() == [3e3, 4e3]
    homogeneous = GenerateRequest.build(model="m", energy_mev=1e3, count=100).resumed_at(
        40, model="m", version=1, seed=2
    )
    assert (homogeneous.count, homogeneous.start_index, homogeneous.total) == (60, 40, 60)


# --------------------------------------------------------------------------------------------- CLI
def test_cli_generate_writes_checked_files_and_lists_models(
    server: ServerProcess, reference: GenerationResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h5 = tmp_path / "cli.h5"
    host_port = f"127.0.0.1:{server.http}"
    common = ["--no-progress", "--seed", "2"]
    assert caloflow_main(["generate", "--server", host_port, "--model", "caloflow_photon", "--particle", "photon",
                          "--energy-mev", "65536", "--count", "40", "--out", str(h5), *common]) == 0  # fmt: skip
    assert f"40 photon showers from caloflow_photon v{DEMO_VERSION} (seed 2, stand-in model: not Geant4)" in (
        capsys.readouterr().out
    )
    assert caloflow_main(["data", "check", str(h5), "--particle", "photon", "--no-progress"]) == 0
    assert "is a valid ds1-photon file (40 showers)" in capsys.readouterr().out

    energies_file = tmp_path / "energies.txt"
    energies_file.write_text("# MeV\n" + "\n".join(repr(float(e)) for e in ENERGIES) + "\n")
    npy = tmp_path / "cli.npy"
    assert caloflow_main(["generate", "--server", f"127.0.0.1:{server.grpc}", "--grpc", "--model", "tiny_photon",
                          "--energies-file", str(energies_file), "--seed", "7", "--out", str(npy),
                          "--no-progress"]) == 0  # fmt: skip
    assert np.load(npy).tobytes() == reference.showers.tobytes()

    for args in (["--server", server.url], ["--server", server.grpc_target, "--grpc"]):
        assert caloflow_main(["models", *args]) == 0
        table = capsys.readouterr().out
        assert re.search(rf"caloflow_photon\s+photon\s+{DEMO_VERSION}\*\s+368", table)
        assert "stand-in (not Geant4)" in table


def test_cli_reports_bad_options_and_server_errors(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["generate", "--server", server.url, "--out", str(tmp_path / "x.h5"), "--no-progress"]
    assert caloflow_main([*base, "--model", "no_such_model", "--energy-mev", "1000", "--count", "3"]) == 2
    assert "NOT_FOUND: model: no model 'no_such_model'" in capsys.readouterr().err
    assert caloflow_main([*base, "--particle", "photon", "--count", "3"]) == 2
    assert "--energy-mev is missing" in capsys.readouterr().err
    assert caloflow_main([*base, "--particle", "photon", "--energies-file", str(tmp_path / "none.txt")]) == 2
    assert "--energies-file" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


# --------------------------------------------------------------------------------------------- units
def test_server_addresses() -> None:
    from caloflow_client._address import grpc_target, http_url

    assert http_url("localhost") == "http://localhost:8000" and http_url("10.0.0.1:9000") == "http://10.0.0.1:9000"
    assert http_url("https://calo.example.org/") == "https://calo.example.org"
    assert grpc_target("localhost") == "localhost:8001" and grpc_target("grpc://[::1]:9001") == "[::1]:9001"
    for bad in ("ftp://host", "host:port", "host:99999"):
        with pytest.raises(InvalidRequestError, match="server"):
            http_url(bad)
    with pytest.raises(InvalidRequestError, match="host:port"):
        grpc_target("http://host:8001")


def test_stream_state_refuses_a_wrong_checksum_and_a_foreign_resumption() -> None:
    """What the live tests cannot provoke: a trailer whose sha256 does not match, a resumed stream from another
    artifact. Events as the transports produce them."""
    from dataclasses import replace

    from caloflow_client import GenerationInfo, ProtocolError, ResumeMismatchError
    from caloflow_client._events import DataEvent, HeaderEvent, TrailerEvent
    from caloflow_client._resume import RetryPolicy, StreamState

    info = GenerationInfo("s", "http", "m", 1, "photon", "ab" * 32, 5, False, 0, 4, 2, 2, True, False, True, 1e3)
    state = StreamState(GenerateRequest.build(model="m", energy_mev=1e3, count=4, seed=5), RetryPolicy())
    state.request()
    state.accept(HeaderEvent(info))
    state.accept(DataEvent(0, np.ones((2, 2), dtype=np.float32)))
    with pytest.raises(ProtocolError, match="sha256"):
        state.accept(TrailerEvent("ok", 2, 2, "0" * 64))
    resumed = state.request()
    assert (resumed.start_index, resumed.count, resumed.model_version, resumed.seed) == (2, 2, 1, 5)
    with pytest.raises(ResumeMismatchError, match="artifact_sha256"):
        state.accept(HeaderEvent(replace(info, start_index=2, count=2, artifact_sha256="cd" * 32)))
