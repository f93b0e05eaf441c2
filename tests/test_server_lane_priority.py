"""Lane priority and packing in the latency lane: while one-shower requests wait or run, a stream leaves a core to
them; concurrent one-shower requests packed into one verified call each keep their own bits (a real tiny ONNX
artifact under ONNX Runtime)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch
from test_server_support import ENERGY_RANGE_MEV, RecordingRuntime, make_repository

from caloflow_server import (
    Batcher,
    BatchStats,
    LoadedModel,
    NullObserver,
    constant_energies,
    listed_energies,
    load_runtime,
    shower_noise,
)
from caloflow_server.runtime import Runtime
from caloflow_server.shape_buckets import candidate_buckets, run_in_shapes, verify_buckets

REFERENCE = 64
_WAIT_S = 30.0


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    torch.set_num_threads(1)
    repository = make_repository(tmp_path_factory.mktemp("lane_priority"))
    return load_runtime(repository, "tiny_photon", backend="onnx", intra_op_threads=1)


class GatedRuntime:
    """The real runtime, but every call waits for a permit the test hands out: full ``REFERENCE``-row calls (the
    stream's) and smaller ones (the lane's) separately; counts the calls of each kind running now."""

    def __init__(self, inner: Runtime) -> None:
        self.inner = inner
        self.backend, self.device = inner.backend, inner.device
        self.noise_dim, self.n_voxels = inner.noise_dim, inner.n_voxels
        self.full_permits = threading.Semaphore(0)
        self.small_permits = threading.Semaphore(0)
        self.running = {True: 0, False: 0}
        self._lock = threading.Lock()

    def run(self, incident_mev: np.ndarray, noise: np.ndarray | torch.Tensor) -> np.ndarray:
        full = incident_mev.shape[0] == REFERENCE
        with self._lock:
            self.running[full] += 1
        try:
            permits = self.full_permits if full else self.small_permits
            if not permits.acquire(timeout=_WAIT_S):
                raise TimeoutError("the test never released this call")
            out: np.ndarray = self.inner.run(incident_mev, noise)
            return out
        finally:
            with self._lock:
                self.running[full] -= 1

    def open_all(self) -> None:
        self.full_permits.release(10_000)
        self.small_permits.release(10_000)

    def warm_up(self, batch_sizes: Sequence[int], energy_mev: float = 1000.0) -> None:
        self.inner.warm_up(batch_sizes, energy_mev)


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def _collect(batcher: Batcher, energies: list[float], seed: int, start_index: int = 0) -> np.ndarray:
    async with batcher.stream(listed_energies(energies), len(energies), seed, start_index=start_index) as stream:
        return np.concatenate([chunk.showers async for chunk in stream])


@pytest.mark.parametrize("lane_priority", [True, False])
def test_stream_leaves_a_core_to_the_lane_while_it_has_work(model: LoadedModel, lane_priority: bool) -> None:
    """Two stream calls run; a one-shower request arrives and its lane call runs; one stream call ends. With lane
    priority the stream starts no second call until the lane is idle again, then it does; without, it does at once."""
    gated = GatedRuntime(model.runtime)

    async def main() -> None:
        batcher = Batcher(
            gated,
            max_batch_showers=REFERENCE,
            max_delay_ms=0.0,
            max_concurrent_batches=2,
            deterministic=True,
            compute_buckets=(4, 8, 16, 32),
            latency_lane_showers=8,
            lane_priority=lane_priority,
        )
        try:
            async with batcher.stream(constant_energies(5e4), 40 * REFERENCE, seed=1, chunk_showers=512):
                await _until(lambda: gated.running[True] == 2, "two stream calls")
                small = asyncio.ensure_future(_collect(batcher, [1e4], seed=3))
                await _until(lambda: gated.running[False] == 1, "the lane call")
                gated.full_permits.release()  # one stream call ends while the lane call still runs
                await _until(lambda: batcher.batches_executed == 1, "the stream call's end")
                if lane_priority:
                    await asyncio.sleep(0.3)  # time enough for the stream to start another call, if it would
                    assert gated.running[True] == 1
                else:
                    await _until(lambda: gated.running[True] == 2, "a second stream call beside the lane's")
                gated.small_permits.release()
                assert (await small).shape[0] == 1
                await _until(lambda: gated.running[True] == 2, "both stream calls once the lane is idle")
                gated.open_all()
        finally:
            gated.open_all()
            await batcher.aclose()

    asyncio.run(main())


class _Batches(NullObserver):
    def __init__(self) -> None:
        self.batches: list[BatchStats] = []

    def on_batch(self, stats: BatchStats) -> None:
        self.batches.append(stats)


def test_packed_one_shower_requests_each_keep_their_own_bits(model: LoadedModel) -> None:
    """20 one-shower requests (their own seeds, indices and energies) arrive together beside a stream: the lane
    packs them into shared calls, and each gets exactly the bits of its shower computed alone in the 64-row call
    (1- and 2-row calls round differently here, so a row in the wrong call shape would show)."""
    skewed = RecordingRuntime(model.runtime, skew_below=2)
    check = verify_buckets(skewed, REFERENCE, candidate_buckets(REFERENCE), ENERGY_RANGE_MEV)
    asks = [(2**40 + 7 * k, 3 * k + 1, float(np.geomspace(300.0, 3e6, 20)[k])) for k in range(20)]
    expected = [
        run_in_shapes(
            model.runtime,
            np.array([[energy]], dtype=np.float32),
            shower_noise(seed, index, 1, model.runtime.noise_dim).numpy(),
            [REFERENCE],
        )
        for seed, index, energy in asks
    ]
    observer = _Batches()

    async def main() -> tuple[list[np.ndarray], int]:
        batcher = Batcher(
            skewed,
            max_batch_showers=REFERENCE,
            max_concurrent_batches=2,
            deterministic=True,
            compute_buckets=check.verified,
            latency_lane_showers=8,
            observer=observer,
        )
        try:
            async with batcher.stream(constant_energies(5e4), 5_000, seed=1) as big:
                await anext(aiter(big))  # the stream is running
                got = await asyncio.gather(*(_collect(batcher, [e], s, i) for s, i, e in asks))
                return list(got), big.request_id
        finally:
            await batcher.aclose()

    skewed.calls.clear()  # verification ran every candidate shape
    got, stream_id = asyncio.run(main())
    for k, (showers, want) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_array_equal(showers, want, err_msg=f"request {k} {asks[k]}")
    lane_batches = [b for b in observer.batches if stream_id not in b.request_ids]
    assert max(len(b.request_ids) for b in lane_batches) >= 2  # requests really shared a call
    assert 1 not in skewed.calls and 2 not in skewed.calls
