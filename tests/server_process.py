"""Start the real server process for a test: ``caloflow_server.process.launch_server`` with the test suite's
defaults (gRPC stubs generated, one intra-op thread). Shared by the lifecycle, reproducibility, client (Python
and C++) and real-Prometheus tests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from caloflow_server.process import ServerProcess, launch_server


@contextmanager
def server_process(
    repo: Path, log: Path, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()
) -> Iterator[ServerProcess]:
    """``launch_server`` with one intra-op thread (``CALOFLOW_INTRA_OP_THREADS``, ``OMP_NUM_THREADS``) unless
    ``env`` says otherwise."""
    from caloflow_server.gen_protos import ensure_protos

    ensure_protos()
    with launch_server(repo, log, {"CALOFLOW_INTRA_OP_THREADS": "1", "OMP_NUM_THREADS": "1", **(env or {})}, args) as s:
        yield s


__all__ = ["ServerProcess", "server_process"]
