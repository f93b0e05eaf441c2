"""The C++ client (``clients/cpp``) built with CMake and run against the real server process.

The build is one per test session (``clients/cpp/build``, incremental; ``CALOFLOW_CPP_BUILD_DIR`` moves it).
Servers run in deterministic mode, so the same seed gives the same bits over every transport and client:
``caloflow-cpp-client``'s raw float32 file must equal the Python client's showers for the same request.
A second server, drained while the C++ client streams from it, shows a resumed stream giving the same bits.
Needs the Debian packages of ``clients/cpp/install-deps.sh`` (``make setup`` installs them).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import pytest
from server_process import ServerProcess, server_process
from test_server_metrics import parse, value
from test_server_support import N_VOXELS, make_repository

from caloflow_client import GrpcClient

REPO_ROOT = Path(__file__).resolve().parents[1]
CPP_SOURCE = REPO_ROOT / "clients" / "cpp"
DETERMINISTIC = ("--deterministic", "true")
PROGRAMS = ("caloflow-cpp-client", "caloflow-fast-sim-example", "caloflow-client-checks")


class Servers:
    """The server the tests talk to, one that the resume test drains, and one serving gRPC over TLS."""

    def __init__(self, main: ServerProcess, doomed: ServerProcess, tls: ServerProcess, cert: Path) -> None:
        self.main = main
        self.doomed = doomed
        self.tls = tls
        self.cert = cert


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the openssl command; install-deps.sh installs it)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def build_cpp(build: Path) -> Path:
    """Configure and build clients/cpp (Release, -j2); a clear failure when the Debian packages are missing."""
    missing = [tool for tool in ("cmake", "g++", "protoc", "grpc_cpp_plugin") if shutil.which(tool) is None]
    assert not missing, f"{missing} not found: run clients/cpp/install-deps.sh (make setup does)"
    steps = (
        ["cmake", "-S", str(CPP_SOURCE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
        ["cmake", "--build", str(build), "-j2"],
    )
    for command in steps:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return build


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Servers, Path]]:
    """The servers start while the C++ build runs; the fixture yields once all are done."""
    root = tmp_path_factory.mktemp("cpp-client")
    repository = make_repository(root)
    cert, key = make_certificate(root)
    drain_now = {"CALOFLOW_DRAIN_GRACE_S": "0", "CALOFLOW_DRAIN_TIMEOUT_S": "0"}
    with ExitStack() as stack:
        main = stack.enter_context(server_process(repository.root, root / "main.log", args=DETERMINISTIC))
        doomed = stack.enter_context(
            server_process(repository.root, root / "doomed.log", env=drain_now, args=DETERMINISTIC)
        )
        tls = stack.enter_context(
            server_process(repository.root, root / "tls.log", args=("--tls-cert", str(cert), "--tls-key", str(key)))
        )
        build = build_cpp(Path(os.environ.get("CALOFLOW_CPP_BUILD_DIR", CPP_SOURCE / "build")))
        yield Servers(main.wait_ready(), doomed.wait_ready(), tls.wait_ready(), cert), build


@pytest.fixture(scope="module")
def main(servers: tuple[Servers, Path]) -> ServerProcess:
    return servers[0].main


@pytest.fixture(scope="module")
def build(servers: tuple[Servers, Path]) -> Path:
    return servers[1]


def run(build: Path, program: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(build / program), *args], capture_output=True, text=True, timeout=timeout)


def figures(stdout: str) -> dict[str, str]:
    """The ``key=value`` words the programs print."""
    return dict(re.findall(r"(\w+)=(\S+)", stdout))


def read_raw(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype="<f4").reshape(-1, N_VOXELS)


def reference_showers(server: ServerProcess, **request: object) -> np.ndarray:
    """The same request through the Python client (gRPC)."""
    with GrpcClient(server.grpc_target) as client:
        result: np.ndarray = client.generate(**request).showers  # type: ignore[arg-type]
        return result


def assert_same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape and expected.dtype == np.float32
    np.testing.assert_array_equal(actual.view(np.uint32), expected.view(np.uint32))


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """One sample of the server's real Prometheus exposition (labels: the sample's full label set)."""
    _, samples = parse(httpx.get(server.metrics_url, timeout=10).text)
    return value(samples, name, **labels)


# ------------------------------------------------------------------------------------------------ the CLI
@pytest.mark.parametrize(
    ("particle", "model", "chunk_showers"), [("photon", "tiny_photon", "0"), ("pion", "tiny_pion", "300")]
)
def test_cli_writes_the_python_clients_showers_bit_for_bit(
    main: ServerProcess, build: Path, tmp_path: Path, particle: str, model: str, chunk_showers: str
) -> None:
    out = tmp_path / "showers.f32"
    done = run(build, "caloflow-cpp-client", "--server", main.grpc_target, "--particle", particle,
               "--energy-mev", "65536", "--count", "2000", "--seed", "3", "--chunk-showers", chunk_showers,
               "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = figures(done.stdout)
    assert (printed["model"], printed["particle"], printed["seed"], printed["n_voxels"]) == (model, particle, "3", "8")
    assert (printed["dataset"], printed["shower_shape"], printed["file_layout"]) == (
        f"ds1-{particle}",
        "8",
        "calochallenge",
    )
    assert printed["count"] == "2000" and printed["bytes"] == str(2000 * N_VOXELS * 4)
    assert float(printed["time_s"]) > 0 and float(printed["showers_per_s"]) > 0
    assert printed["deterministic"] == "true" and len(printed["artifact_sha256"]) == 64
    assert out.stat().st_size == 2000 * N_VOXELS * 4
    expected = reference_showers(main, particle=particle, energy_mev=65536.0, count=2000, seed=3)
    assert_same_bits(read_raw(out), expected)


@pytest.mark.parametrize(
    ("flags", "field"),
    [(("--particle", "electron", "--count", "10"), "particle"), (("--particle", "photon", "--count", "0"), "count")],
)
def test_cli_errors_exit_non_zero_with_the_servers_message(
    main: ServerProcess, build: Path, tmp_path: Path, flags: tuple[str, ...], field: str
) -> None:
    out = tmp_path / "never.f32"
    done = run(build, "caloflow-cpp-client", "--server", main.grpc_target, "--energy-mev", "1000", "--seed", "1",
               "--out", str(out), *flags)  # fmt: skip
    assert done.returncode == 1
    assert re.search(rf"server error INVALID_ARGUMENT: {field}: ", done.stderr), done.stderr
    assert not out.exists()


def test_cli_usage_errors_exit_2_naming_the_option(build: Path) -> None:
    done = run(build, "caloflow-cpp-client", "--count", "ten")
    assert done.returncode == 2 and "--count: expected a non-negative integer, got 'ten'" in done.stderr


def test_an_expired_deadline_is_deadline_exceeded_and_the_server_carries_on(
    main: ServerProcess, build: Path, tmp_path: Path
) -> None:
    out = tmp_path / "never.f32"
    done = run(build, "caloflow-cpp-client", "--server", main.grpc_target, "--particle", "photon",
               "--energy-mev", "1000", "--count", "1000000", "--seed", "1", "--deadline-ms", "50",
               "--out", str(out))  # fmt: skip
    assert done.returncode == 1 and "server error DEADLINE_EXCEEDED" in done.stderr, done.stderr
    assert not out.exists()
    after = run(build, "caloflow-cpp-client", "--server", main.grpc_target, "--particle", "photon",
                "--energy-mev", "1000", "--count", "5", "--seed", "1")  # fmt: skip
    assert after.returncode == 0 and figures(after.stdout)["count"] == "5", after.stderr


def test_tls_with_the_servers_certificate(servers: tuple[Servers, Path], build: Path) -> None:
    both, _ = servers
    request = ("--particle", "photon", "--energy-mev", "1000", "--count", "10", "--seed", "1")
    secure = run(build, "caloflow-cpp-client", "--server", both.tls.grpc_target, "--ca-cert", str(both.cert), *request)
    assert secure.returncode == 0 and figures(secure.stdout)["count"] == "10", secure.stderr
    plain = run(build, "caloflow-cpp-client", "--server", both.tls.grpc_target, "--retries", "0", *request)
    assert plain.returncode == 1 and "server error UNAVAILABLE" in plain.stderr, plain.stderr


# ------------------------------------------------------------------------------------------- the library
def test_cancelling_an_async_call_ends_it_with_cancelled(main: ServerProcess, build: Path) -> None:
    done = run(build, "caloflow-client-checks", "--check", "cancel", "--server", main.grpc_target)
    assert done.returncode == 0, done.stderr
    printed = figures(done.stdout)
    assert printed["code"] == "CANCELLED" and 0 < int(printed["received_at_cancel"]) < int(printed["of"])


def test_event_batcher_from_threads_returns_each_shower_at_its_row(main: ServerProcess, build: Path) -> None:
    done = run(build, "caloflow-client-checks", "--check", "batcher", "--server", main.grpc_target)
    assert done.returncode == 0, done.stderr
    assert figures(done.stdout) == {"showers": "100", "threads": "4", "n_voxels": "8", "in_order": "true"}


def test_fast_sim_example_fetches_the_event_in_one_call_in_order(
    main: ServerProcess, build: Path, tmp_path: Path
) -> None:
    energies = [1000.0, 65536.0, 4096.0, 300000.0, 1000.0]
    out = tmp_path / "event.f32"
    calls_before = metric(main, "nv_inference_request_success", model="tiny_pion", version="1")
    done = run(build, "caloflow-fast-sim-example", "--server", main.grpc_target, "--particle", "pion",
               "--energies-mev", ",".join(str(e) for e in energies), "--seed", "7", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert metric(main, "nv_inference_request_success", model="tiny_pion", version="1") == calls_before + 1
    expected = reference_showers(main, particle="pion", energies_mev=energies, seed=7)
    assert_same_bits(read_raw(out), expected)
    lines = [figures(line) for line in done.stdout.splitlines() if line.startswith("particle=")]
    assert [float(line["energy_mev"]) for line in lines] == energies
    np.testing.assert_allclose([float(line["deposited_mev"]) for line in lines], expected.sum(axis=1), rtol=1e-5)


def test_a_drained_stream_resumes_on_another_server_with_the_same_bits(
    servers: tuple[Servers, Path], build: Path, tmp_path: Path
) -> None:
    both, _ = servers
    out = tmp_path / "resumed.f32"
    # pick_first: the call goes to the doomed server, and after it drains the channel reconnects to main.
    target = f"ipv4:127.0.0.1:{both.doomed.grpc},127.0.0.1:{both.main.grpc}"
    command = [str(build / "caloflow-cpp-client"), "--server", target, "--particle", "photon",
               "--energy-mev", "4096", "--count", "20000", "--seed", "9", "--chunk-showers", "100",
               "--retries", "8", "--out", str(out)]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as client:
        while metric(both.doomed, "calo_active_streams", protocol="grpc") < 1:
            assert client.poll() is None, "the client finished before the stream was seen"
            time.sleep(0.05)
        both.doomed.process.send_signal(signal.SIGTERM)
        stdout, stderr = client.communicate(timeout=300)
    assert client.returncode == 0, stderr
    assert both.doomed.process.wait(60) == 0
    printed = figures(stdout)
    assert printed["count"] == "20000" and int(printed["resumes"]) >= 1
    expected = reference_showers(both.main, particle="photon", energy_mev=4096.0, count=20000, seed=9)
    assert_same_bits(read_raw(out), expected)
