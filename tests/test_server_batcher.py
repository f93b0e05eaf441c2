"""The batcher with a real ONNX artifact: fairness, admission, cancellation, backpressure, reproducibility."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
import pytest
import torch
from test_server_support import NOISE_DIM, POISON_MEV, RecordingRuntime, make_repository, reference_showers

from caloflow_repo import ModelRepository
from caloflow_server import (
    Batcher,
    BatchStats,
    DrainingError,
    InferenceError,
    LoadedModel,
    NonFiniteOutputError,
    QueueFullError,
    RequestStats,
    ShowerStream,
    constant_energies,
    listed_energies,
    load_runtime,
    shower_noise,
)

T = TypeVar("T")


class Recorder:
    """Observer that keeps everything it is told."""

    def __init__(self) -> None:
        self.batches: list[BatchStats] = []
        self.queue: list[tuple[int, int]] = []
        self.finished: list[RequestStats] = []

    def on_batch(self, stats: BatchStats) -> None:
        self.batches.append(stats)

    def on_queue(self, pending_showers: int, pending_requests: int) -> None:
        self.queue.append((pending_showers, pending_requests))

    def on_request_finished(self, stats: RequestStats) -> None:
        self.finished.append(stats)

    def batches_with(self, request_id: int, since: int = 0) -> int:
        return sum(request_id in stats.request_ids for stats in self.batches[since:])


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    torch.set_num_threads(1)
    repository: ModelRepository = make_repository(tmp_path_factory.mktemp("batcher"))
    return load_runtime(repository, "tiny_photon", backend="onnx", intra_op_threads=1)


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout=60)

    return asyncio.run(bounded())


async def collect(stream: ShowerStream) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(energies, showers, chunk starts) of a whole stream."""
    energies, showers, starts = [], [], []
    async with stream:
        async for chunk in stream:
            energies.append(chunk.energies_mev)
            showers.append(chunk.showers)
            starts.append(chunk.start_index)
    return np.concatenate(energies), np.concatenate(showers), starts


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.001)


def test_results_are_the_model_of_seeded_noise(model: LoadedModel) -> None:
    async def main() -> tuple[np.ndarray, np.ndarray, list[int]]:
        batcher = Batcher(model.runtime, max_batch_showers=64)
        try:
            return await collect(batcher.stream(constant_energies(5000.0), 150, seed=7, chunk_showers=40))
        finally:
            await batcher.aclose()

    energies, showers, starts = run(main)
    assert starts == [0, 40, 80, 120]
    np.testing.assert_array_equal(energies, np.full(150, 5000.0, dtype=np.float32))
    expected = reference_showers(energies, shower_noise(7, 0, 150, NOISE_DIM).numpy())
    np.testing.assert_allclose(showers, expected, rtol=1e-5)


def test_small_request_overtakes_a_huge_stream(model: LoadedModel) -> None:
    recorder = Recorder()

    async def main() -> tuple[int, int]:
        batcher = Batcher(model.runtime, max_batch_showers=256, max_delay_ms=0.0, observer=recorder)
        big = batcher.stream(constant_energies(1000.0), 200_000, seed=1, chunk_showers=256)

        async def drain_big() -> None:
            async for _ in big:
                pass

        consumer = asyncio.create_task(drain_big())
        await until(lambda: len(recorder.batches) >= 5)
        submitted_at = len(recorder.batches)
        small = batcher.stream(constant_energies(2000.0), 1, seed=2)
        _, showers, _ = await collect(small)
        assert showers.shape == (1, 8)
        position = next(i for i, b in enumerate(recorder.batches) if small.request_id in b.request_ids)
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await batcher.aclose()
        return position - submitted_at, batcher.pending_requests

    batches_after_submit, pending = run(main)
    assert batches_after_submit <= 1  # in the batch after the one running at submission, at the latest
    assert pending == 0


def test_fair_shares_between_two_big_requests(model: LoadedModel) -> None:
    recorder = Recorder()

    async def main() -> None:
        batcher = Batcher(model.runtime, max_batch_showers=128, max_delay_ms=5.0, observer=recorder)
        first = batcher.stream(constant_energies(1000.0), 2048, seed=1, chunk_showers=256)
        second = batcher.stream(constant_energies(1000.0), 2048, seed=2, chunk_showers=256)
        await asyncio.gather(collect(first), collect(second))
        await batcher.aclose()

    run(main)
    both = [b for b in recorder.batches if len(b.request_ids) == 2]
    assert len(both) >= len(recorder.batches) - 2
    assert all(b.batch_showers <= 128 for b in recorder.batches)


def test_queue_overflow_is_rejected_at_once(model: LoadedModel) -> None:
    async def main() -> None:
        batcher = Batcher(model.runtime, max_batch_showers=64, max_queue_showers=1000, max_active_requests=3)
        first = batcher.stream(constant_energies(1000.0), 800, seed=1)
        with pytest.raises(QueueFullError, match="1000"):
            batcher.stream(constant_energies(1000.0), 201, seed=2)  # raised by the call, before any iteration
        assert batcher.pending_showers == 800 and batcher.pending_requests == 1
        others = [batcher.stream(constant_energies(1000.0), 100, seed=3 + i) for i in range(2)]
        with pytest.raises(QueueFullError, match="requests"):
            batcher.stream(constant_energies(1000.0), 1, seed=9)
        for stream in [first, *others]:
            await collect(stream)
        assert batcher.pending_showers == 0
        batcher.stream(constant_energies(1000.0), 1000, seed=2)  # room again
        await batcher.aclose()

    run(main)


@pytest.mark.parametrize("how", ["aclose", "cancel"])
def test_cancellation_stops_within_one_batch(model: LoadedModel, how: str) -> None:
    recorder = Recorder()

    async def main() -> tuple[int, RequestStats]:
        batcher = Batcher(model.runtime, max_batch_showers=256, max_delay_ms=0.0, observer=recorder)
        big = batcher.stream(constant_energies(1000.0), 200_000, seed=1, chunk_showers=256)
        other = batcher.stream(constant_energies(1000.0), 5_000, seed=2, chunk_showers=256)

        async def read_big() -> None:  # no await in the body: a cancel lands in __anext__
            async for _ in big:
                pass

        reader = asyncio.create_task(read_big())
        await until(lambda: len(recorder.batches) >= 6)
        cancelled_at = len(recorder.batches)
        if how == "aclose":
            await big.aclose()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        _, showers, _ = await collect(other)  # the other request carries on to its end
        assert showers.shape == (5_000, 8)
        await batcher.aclose()
        return recorder.batches_with(big.request_id, since=cancelled_at), recorder.finished[0]

    after_cancel, big_stats = run(main)
    assert after_cancel <= 1
    assert big_stats.status == "cancelled" and big_stats.delivered < 200_000


def test_dropped_stream_is_cancelled(model: LoadedModel) -> None:
    recorder = Recorder()

    async def main() -> int:
        batcher = Batcher(model.runtime, max_batch_showers=64, max_delay_ms=0.0, observer=recorder)
        stream = batcher.stream(constant_energies(1000.0), 100_000, seed=1, chunk_showers=64)
        await stream.__anext__()
        del stream
        gc.collect()
        await until(lambda: batcher.pending_requests == 0)
        await batcher.aclose()
        return len(recorder.batches)

    assert run(main) <= 4
    assert recorder.finished[0].status == "cancelled"


def test_slow_consumer_stalls_only_itself(model: LoadedModel) -> None:
    recorder = Recorder()

    async def main() -> None:
        batcher = Batcher(model.runtime, max_batch_showers=256, max_delay_ms=0.0, buffer_chunks=2, observer=recorder)
        slow = batcher.stream(constant_energies(1000.0), 100_000, seed=1, chunk_showers=64)
        await slow.__anext__()
        fast = batcher.stream(constant_energies(1000.0), 20_000, seed=2, chunk_showers=256)
        _, showers, _ = await collect(fast)  # completes while the slow consumer sleeps
        assert showers.shape == (20_000, 8)
        window = batcher.stream_window(64)
        assert window == 2 * 256  # one batch running and one ahead: more than 2 chunks of 64
        assert slow.buffered_chunks <= window // 64 and slow.outstanding_showers <= window
        assert recorder.batches_with(slow.request_id) <= 3
        for _ in range(10):  # it resumes where it stopped
            chunk = await slow.__anext__()
            assert slow.buffered_chunks <= window // 64 and slow.outstanding_showers <= window
        assert chunk.start_index == 10 * 64
        await slow.aclose()
        await batcher.aclose()

    run(main)


def test_a_lone_stream_of_small_chunks_keeps_every_call_full(model: LoadedModel) -> None:
    """A wide model's chunks hold few showers (a 2 MiB chunk is 12 DS3 showers): the stream's window must still
    cover every concurrent call and one ahead, or a lone stream runs one short call at a time. The calls take
    20 ms, as a wide model's do: the consumer reads faster than the model computes (the fill delay lets it take
    a finished batch when two calls end together)."""
    recorder = Recorder()
    runtime = RecordingRuntime(model.runtime, delay_s=0.02)

    async def main() -> tuple[np.ndarray, np.ndarray, list[int]]:
        batcher = Batcher(runtime, max_batch_showers=64, max_delay_ms=2.0, max_concurrent_batches=2, observer=recorder)
        try:
            assert batcher.stream_window(5) == 3 * 64
            return await collect(batcher.stream(constant_energies(5000.0), 640, seed=3, chunk_showers=5))
        finally:
            await batcher.aclose()

    energies, showers, starts = run(main)
    assert [stats.batch_showers for stats in recorder.batches] == [64] * 10
    assert starts == list(range(0, 640, 5))
    expected = reference_showers(energies, shower_noise(3, 0, 640, NOISE_DIM).numpy())
    np.testing.assert_allclose(showers, expected, rtol=1e-5)


def _load_pattern(batcher: Batcher) -> list[ShowerStream]:
    return [
        batcher.stream(constant_energies(3000.0), 700, seed=11, chunk_showers=33),
        batcher.stream(listed_energies(np.geomspace(300.0, 4e6, 257)), 257, seed=12, chunk_showers=5),
        batcher.stream(constant_energies(300.0), 1, seed=13),
    ]


@pytest.mark.parametrize("deterministic", [True, False])
def test_seeded_showers_do_not_depend_on_load_or_chunks(model: LoadedModel, deterministic: bool) -> None:
    energies = np.geomspace(300.0, 4e6, 1500)
    counting = RecordingRuntime(model.runtime)

    async def alone() -> np.ndarray:
        batcher = Batcher(counting, max_batch_showers=128, deterministic=deterministic)
        _, showers, _ = await collect(batcher.stream(listed_energies(energies), 1500, seed=99, chunk_showers=1500))
        await batcher.aclose()
        return showers

    async def loaded() -> np.ndarray:
        batcher = Batcher(counting, max_batch_showers=128, max_delay_ms=1.0, deterministic=deterministic)
        others = _load_pattern(batcher)
        mine = batcher.stream(listed_energies(energies), 1500, seed=99, chunk_showers=37)
        results = await asyncio.gather(collect(mine), *(collect(s) for s in others))
        await batcher.aclose()
        return results[0][1]

    reference, under_load = run(alone), run(loaded)
    if deterministic:
        assert set(counting.calls) == {128}  # one fixed shape
        np.testing.assert_array_equal(reference, under_load)  # bit for bit
    else:
        assert len(set(counting.calls)) > 1
        np.testing.assert_allclose(reference, under_load, rtol=1e-5)  # float rounding only


def test_start_index_resumes_exactly(model: LoadedModel) -> None:
    energies = np.geomspace(300.0, 4e6, 1000)

    async def main() -> tuple[np.ndarray, np.ndarray, list[int]]:
        batcher = Batcher(model.runtime, max_batch_showers=64, deterministic=True)
        _, full, _ = await collect(batcher.stream(listed_energies(energies), 1000, seed=5, chunk_showers=100))
        _, tail, starts = await collect(
            batcher.stream(listed_energies(energies[613:]), 387, seed=5, start_index=613, chunk_showers=100)
        )
        await batcher.aclose()
        return full, tail, starts

    full, tail, starts = run(main)
    assert starts[:2] == [613, 713]
    np.testing.assert_array_equal(full[613:], tail)


def test_non_finite_output_fails_only_its_request(model: LoadedModel) -> None:
    recorder = Recorder()

    async def main() -> None:
        batcher = Batcher(model.runtime, max_batch_showers=64, max_delay_ms=20.0, observer=recorder)
        energies = np.full(200, 1000.0)
        energies[150] = POISON_MEV
        poisoned = batcher.stream(listed_energies(energies), 200, seed=1, chunk_showers=50)
        healthy = batcher.stream(constant_energies(1000.0), 200, seed=2, chunk_showers=50)
        starts = []
        with pytest.raises(NonFiniteOutputError, match="non-finite"):
            async for chunk in poisoned:
                starts.append(chunk.start_index)
        assert starts and all(start + 50 <= 150 for start in starts)  # good chunks before the bad one arrive
        _, showers, _ = await collect(healthy)
        assert showers.shape == (200, 8) and np.isfinite(showers).all()
        await batcher.aclose()

    run(main)
    assert any(not b.ok for b in recorder.batches)
    assert sorted(s.status for s in recorder.finished) == ["failed", "ok"]


def test_backend_failure_reaches_the_consumer(model: LoadedModel) -> None:
    class Broken(RecordingRuntime):
        def run(self, incident_mev: np.ndarray, noise: np.ndarray | torch.Tensor) -> np.ndarray:
            raise InferenceError("device lost")

    async def main() -> None:
        batcher = Batcher(Broken(model.runtime), max_batch_showers=64)
        with pytest.raises(InferenceError, match="device lost"):
            await collect(batcher.stream(constant_energies(1000.0), 10, seed=1))
        await batcher.aclose()

    run(main)


def test_drain_ends_streams_resumably(model: LoadedModel) -> None:
    async def main() -> None:
        batcher = Batcher(model.runtime, max_batch_showers=64, max_delay_ms=0.0)
        stream = batcher.stream(constant_energies(1000.0), 100_000, seed=1, chunk_showers=64)
        received = 0
        await stream.__anext__()
        received += 64
        await batcher.aclose(timeout_s=0.0)
        with pytest.raises(DrainingError) as info:
            async for chunk in stream:
                received += chunk.n_showers
        assert info.value.next_index == received
        with pytest.raises(DrainingError):
            batcher.stream(constant_energies(1000.0), 1, seed=1)

    run(main)


def test_observer_sees_queue_and_batches(model: LoadedModel) -> None:
    recorder = Recorder()

    async def main() -> None:
        batcher = Batcher(model.runtime, max_batch_showers=100, deterministic=True, observer=recorder)
        await collect(batcher.stream(constant_energies(1000.0), 250, seed=1, chunk_showers=50))
        await batcher.aclose()

    run(main)
    assert recorder.queue[0] == (250, 1) and recorder.queue[-1] == (0, 0)
    assert [b.batch_showers for b in recorder.batches] == [100, 100, 50]
    assert all(b.compute_showers == 100 and b.ok and b.compute_seconds > 0 for b in recorder.batches)
    (stats,) = recorder.finished
    assert (stats.status, stats.delivered, stats.batches) == ("ok", 250, 3)


def test_observer_failure_does_not_break_batching(model: LoadedModel) -> None:
    class Failing(Recorder):
        def on_batch(self, stats: BatchStats) -> None:
            raise RuntimeError("metrics backend down")

    async def main() -> int:
        batcher = Batcher(model.runtime, max_batch_showers=64, observer=Failing())
        _, showers, _ = await collect(batcher.stream(constant_energies(1000.0), 100, seed=1))
        await batcher.aclose()
        return int(showers.shape[0])

    assert run(main) == 100


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="max_batch_showers"):
        Batcher(RecordingRuntime.__new__(RecordingRuntime), max_batch_showers=0)
