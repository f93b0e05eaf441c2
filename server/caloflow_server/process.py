"""A server as a child process (``python -m caloflow_server.main``) on ephemeral loopback ports.

What ``caloflow bench serve`` and the test suite start when they need a whole server rather than the app in
this process. The ports are read from the server's ready line (``main`` logs it once the models are warm).
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
from typing import Self

__all__ = ["ServerProcess", "ServerStartError", "launch_server"]

_READY = re.compile(r"caloflow-serve ready: http=(\d+) grpc=(\d+) metrics=(\d+)")
_LOG_TAIL = 4000


class ServerStartError(RuntimeError):
    """The server process exited, or did not become ready in time; the message ends with its log."""


class ServerProcess:
    """A running server: its process, its log file, and the ports it reported once ready."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log
        self.http = self.grpc = self.metrics = 0

    def wait_ready(self, timeout_s: float = 90.0) -> Self:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = _READY.search(self.log.read_text(errors="replace"))
            if match:
                self.http, self.grpc, self.metrics = (int(match.group(i)) for i in (1, 2, 3))
                return self
            if self.process.poll() is not None:
                raise ServerStartError(f"the server exited with {self.process.returncode}:\n{self._log_tail()}")
            time.sleep(0.1)
        raise ServerStartError(f"the server was not ready within {timeout_s:.0f} s:\n{self._log_tail()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics}/metrics"

    def rss_mb(self, key: str = "VmRSS") -> float:
        """Resident memory (``VmRSS``) or its peak (``VmHWM``) from ``/proc``, in MB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024.0
        raise ServerStartError(f"/proc/{self.process.pid}/status has no {key}")

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (the server drains), then SIGKILL after ``timeout_s``; the exit code."""
        self.process.terminate()
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-_LOG_TAIL:]


@contextmanager
def launch_server(
    repo: Path, log: Path, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()
) -> Iterator[ServerProcess]:
    """Start a server on ``repo`` (loopback, ports 0: any free ones; ``env`` adds ``CALOFLOW_*`` settings to this
    process's environment), writing its output to ``log``; killed on exit if it is still running. The caller
    waits for readiness with ``wait_ready()`` (a lifecycle test wants the process before it is ready)."""
    command = [sys.executable, "-m", "caloflow_server.main", "--repo", str(repo), "--host", "127.0.0.1",
               "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", *args]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    running = ServerProcess(process, log)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
