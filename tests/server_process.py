"""Start the real server process (``python -m caloflow_server.main``) on ephemeral loopback ports.

Shared by every test that needs a whole server rather than the app in-process: the lifecycle test, the clients
(Python and C++) and the real-Prometheus deployment test. The ports are read from the server's ready line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

_READY = re.compile(r"caloflow-serve ready: http=(\d+) grpc=(\d+) metrics=(\d+)")


class ServerProcess:
    """A running server: its process, its log file, and the ports it reported once ready."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log
        self.http = self.grpc = self.metrics = 0

    def wait_ready(self, timeout_s: float = 90) -> ServerProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = _READY.search(self.log.read_text())
            if match:
                self.http, self.grpc, self.metrics = (int(match.group(i)) for i in (1, 2, 3))
                return self
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.log.read_text()}")
            time.sleep(0.1)
        raise TimeoutError(f"the server did not become ready:\n{self.log.read_text()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics}/metrics"


@contextmanager
def server_process(
    repo: Path, log: Path, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()
) -> Iterator[ServerProcess]:
    """Start the server on ``repo`` (ports 0: any free ones); killed on exit if it is still running.

    ``env`` adds ``CALOFLOW_*`` settings; one intra-op thread unless it says otherwise. The caller waits
    for readiness with ``wait_ready()`` (the lifecycle test wants the process before it is ready).
    """
    from caloflow_server.gen_protos import ensure_protos

    ensure_protos()
    full_env = {**os.environ, "CALOFLOW_INTRA_OP_THREADS": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    command = [sys.executable, "-m", "caloflow_server.main", "--repo", str(repo), "--host", "127.0.0.1",
               "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", *args]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=full_env)
    running = ServerProcess(process, log)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


__all__ = ["ServerProcess", "server_process"]
