"""The client side of ``caloflow bench serve``: a streamed HTTP npy read, a native gRPC stream, one-shower probes.

Each check that what arrived is what was asked for (byte counts, the status of the stream), so a failed request
never reads as a fast one.
"""

from __future__ import annotations

import threading
import time

import httpx

from caloflow.cli import CLIError

_NPY_READ = 1 << 20


def one_shower_latencies(
    url: str,
    model: str,
    energy_mev: float,
    count: int | None,
    stop: threading.Event | None = None,
    pause_s: float = 0.02,
) -> list[float]:
    """Latency (s) of one-shower ``/generate`` requests (npy), sent one after another over one connection.

    ``count`` requests, or (``count`` None) until ``stop`` is set, ``pause_s`` apart.
    """
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=120, headers={"Accept": "application/x-npy"}) as client:
        while (count is None or len(latencies) < count) and not (stop is not None and stop.is_set()):
            body = {"model": model, "energy_mev": energy_mev, "count": 1, "seed": len(latencies)}
            started = time.perf_counter()
            response = client.post("/generate", json=body)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise CLIError(f"one-shower request failed: HTTP {response.status_code} {response.text[:300]}")
            if count is None:
                time.sleep(pause_s)
    return latencies


def http_stream(url: str, model: str, energy_mev: float, count: int) -> float:
    """Seconds to read a ``count``-shower npy stream to its end (every byte checked for count)."""
    body = {"model": model, "energy_mev": energy_mev, "count": count, "seed": 1}
    started = time.perf_counter()
    received = 0
    headers = {"Accept": "application/x-npy"}
    with (
        httpx.Client(timeout=httpx.Timeout(120.0, read=600.0)) as client,
        client.stream("POST", f"{url}/generate", json=body, headers=headers) as response,
    ):
        if response.status_code != 200:
            raise CLIError(f"HTTP stream failed: {response.status_code} {response.read()[:300]!r}")
        n_voxels = int(response.headers["X-Voxels"])
        for piece in response.iter_raw(_NPY_READ):
            received += len(piece)
    seconds = time.perf_counter() - started
    if received < count * n_voxels * 4:
        raise CLIError(f"HTTP stream ended early: {received} bytes for {count} showers of {n_voxels} voxels")
    return seconds


def grpc_stream(target: str, model: str, energy_mev: float, count: int) -> float:
    """Seconds to read a ``count``-shower native gRPC ``Generate`` stream with the project's Python client (which
    checks the chunk order and the trailer's sha256)."""
    from caloflow_client import GrpcClient

    received = 0
    started = time.perf_counter()
    with GrpcClient(target, timeout_s=600) as client:
        for chunk in client.stream(model=model, energy_mev=energy_mev, count=count, seed=1):
            received += chunk.n_showers
    seconds = time.perf_counter() - started
    if received != count:
        raise CLIError(f"gRPC stream ended after {received} of {count} showers")
    return seconds
