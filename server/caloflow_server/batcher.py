"""Shower-count batching for one loaded model version, with fair interleaving, backpressure and cancellation.

The unit is the shower. A request (``Batcher.stream``) is a range of shower indices ``start_index ..
start_index + count - 1``; its showers are cut into batches lazily, when a batch is formed, and every batch
takes a max-min fair share of ``max_batch_showers`` from the requests that have work ready: a one-shower request
arriving while a million-shower stream runs is in the next batch. Inputs are made per batch in the worker
thread: energies from the request's ``EnergySource``, noise from ``shower_noise(seed, index)`` (all of a batch's
requests in one ``shower_noise_ranges`` pass), so a shower's inputs do not depend on how requests were batched.

Each request may have at most ``stream_window(chunk_showers)`` showers scheduled but not yet taken by its
consumer: ``buffer_chunks * chunk_showers``, and never less than ``(max_concurrent_batches + 1) * max_batch_showers``
so that one stream alone keeps every model call full (with one batch computed ahead while the consumer reads the
last). Without that floor a wide model starved: a DS3 shower is 162 kB, so a 2 MiB chunk holds 12 showers and the
old window of 24 let a lone stream run one 24-row call at a time (54 % of the engine on 2 cores). A slow consumer
stalls its own request and nothing else, and memory is O(max(chunk, batch x calls)) per request. When
the consumer stops (``aclose``, cancellation, or the stream object is garbage collected) the request's
unscheduled showers are dropped at once; at most the batch already running still computes some of them.

Reproducibility: with ``deterministic=True`` every model call has one of a few fixed shapes: full calls of
``compute_showers`` rows, and for the rest of a batch the smallest of the ``compute_buckets`` that holds it
(padded by repeating its last row). The buckets are the shapes ``shape_buckets.verify_buckets`` found, at load
on this machine, to give every row exactly the bits of the ``compute_showers``-row call; so the bits of a
shower do not depend on the batch it was in, its row, or the bucket, given the same artifact, backend, device
model and software image. Without buckets every call has ``compute_showers`` rows, as before. Without
deterministic mode, outputs match up to float rounding: backends may pick batch-size dependent kernels
(measured on ONNX Runtime CPU: rows of a 1- or 2-row call differ in their last bits from a 64-row call's).

Latency lane: requests of at most ``latency_lane_showers`` showers are batched only with each other, by their
own scheduler, on their own worker thread (one model call at a time, up to ``max_batch_showers`` rows, no fill
delay), so a one-shower request never waits for a slot behind a big stream's full batches and its call is a
small bucket (measured on the photon demo model, one thread: 9 ms for a 4-row call against 41 ms for 64 rows).
Why a lane and verified buckets rather than a lane alone computing small requests in their own fixed shape:
that would make a shower's bits depend on the size of the request it came in, and a stream resumed at
``next_index`` near its end would no longer continue the same showers. With verified buckets the lane changes
when a shower is computed, never its bits. The lane's thread runs beside the ``max_concurrent_batches`` workers.

Lane priority (``lane_priority``, default on): while the lane has a request waiting or a call running, the other
scheduler starts no call beyond ``max(1, max_concurrent_batches - 1)`` running ones, so on a CPU one core is left
to the lane's call instead of three single-threaded calls sharing two cores (measured beside a stream and 20
one-shower clients: a one-shower request's time went to its lane call and the lane call before it, both slowed by
the stream's calls holding the cores). The stream loses the
calls it does not start while the lane is busy; a stream is never stopped altogether. Concurrent lane requests are
packed into one call of a verified shape, so packing, like the priority, changes when a shower is computed, never
its bits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

import numpy as np

from caloflow_server.errors import (
    CaloflowServerError,
    DrainingError,
    InferenceError,
    QueueFullError,
)
from caloflow_server.noise import UINT64_MAX, NoiseRange, shower_noise_ranges
from caloflow_server.runtime import Runtime, check_showers
from caloflow_server.shape_buckets import call_shapes, run_in_shapes

__all__ = [
    "BatchStats",
    "Batcher",
    "BatcherObserver",
    "EnergySource",
    "NullObserver",
    "RequestStats",
    "ShowerChunk",
    "ShowerStream",
    "constant_energies",
    "listed_energies",
]

logger = logging.getLogger(__name__)

EnergySource = Callable[[int, int], np.ndarray]
"""``(offset, n) -> (n,) float32``: incident energies (MeV) of the request's showers ``offset .. offset + n - 1``."""


def constant_energies(energy_mev: float) -> EnergySource:
    """Every shower at ``energy_mev``."""
    value = np.float32(energy_mev)

    def energies(offset: int, n: int) -> np.ndarray:
        return np.full(n, value, dtype=np.float32)

    return energies


def listed_energies(energies_mev: Sequence[float] | np.ndarray) -> EnergySource:
    """Shower ``k`` of the request at ``energies_mev[k]``."""
    table = np.asarray(energies_mev, dtype=np.float32).reshape(-1)

    def energies(offset: int, n: int) -> np.ndarray:
        return table[offset : offset + n]

    return energies


@dataclass(frozen=True)
class ShowerChunk:
    """Showers ``start_index .. start_index + n - 1`` of a request: energies (n,) and voxels (n, V), float32 MeV."""

    start_index: int
    energies_mev: np.ndarray
    showers: np.ndarray

    @property
    def n_showers(self) -> int:
        return int(self.showers.shape[0])


@dataclass(frozen=True)
class BatchStats:
    """One model batch: real and computed (padded) showers, the requests in it, waiting and compute time."""

    batch_showers: int
    compute_showers: int
    request_ids: tuple[int, ...]
    queue_seconds: float
    compute_seconds: float
    ok: bool


@dataclass
class RequestStats:
    """One request's life in the batcher; ``status`` is "ok", "cancelled" or "failed"."""

    request_id: int
    count: int
    delivered: int = 0
    batches: int = 0
    queue_seconds: float = 0.0
    compute_seconds: float = 0.0
    status: str = "running"


class BatcherObserver(Protocol):
    """Stats hooks (metrics live elsewhere). Called on the event loop; exceptions are logged and ignored."""

    def on_batch(self, stats: BatchStats) -> None: ...

    def on_queue(self, pending_showers: int, pending_requests: int) -> None: ...

    def on_request_finished(self, stats: RequestStats) -> None: ...


class NullObserver:
    """An observer that ignores everything."""

    def on_batch(self, stats: BatchStats) -> None:
        pass

    def on_queue(self, pending_showers: int, pending_requests: int) -> None:
        pass

    def on_request_finished(self, stats: RequestStats) -> None:
        pass


@dataclass(eq=False)
class _Request:
    """Scheduler-side state of one request; touched only on the event loop (the worker reads frozen fields)."""

    id: int
    energies: EnergySource
    count: int
    seed: int
    start_index: int
    chunk_showers: int
    credit_showers: int
    ready_at: float
    small: bool
    scheduled: int = 0
    completed: int = 0
    consumed: int = 0
    emitted: int = 0
    pieces: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    partial: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    chunks: deque[ShowerChunk] = field(default_factory=deque)
    error: BaseException | None = None
    closed: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    stats: RequestStats = field(init=False)

    def __post_init__(self) -> None:
        self.stats = RequestStats(self.id, self.count)

    @property
    def open(self) -> bool:
        return not self.closed and self.error is None

    def schedulable(self) -> int:
        if not self.open:
            return 0
        return max(0, min(self.count - self.scheduled, self.credit_showers - (self.scheduled - self.consumed)))

    @property
    def pending(self) -> int:
        """Showers not yet computed (what the queue limit counts)."""
        return self.count - self.completed if self.open else 0


@dataclass(eq=False)
class _Lane:
    """One scheduler: the requests it takes (``small`` ones or the others), its worker threads and call slots."""

    small: bool
    concurrent: int
    fill_delay: bool
    executor: ThreadPoolExecutor
    slots: asyncio.Semaphore | None = None
    task: asyncio.Task[None] | None = None
    running: int = 0


@dataclass(frozen=True)
class _Segment:
    request: _Request
    offset: int
    n: int
    waited_seconds: float


@dataclass
class _Outcome:
    showers: list[tuple[np.ndarray, np.ndarray] | BaseException]
    compute_seconds: float
    ok: bool


class _StoppedError(Exception):
    """The batcher is closed and has no work left."""


class Batcher:
    """Batches the showers of concurrent requests for one ``Runtime``; see the module docstring.

    ``max_queue_showers``/``max_active_requests``: admission limits on showers not yet computed and on open
    requests; a request over either is refused at once with ``QueueFullError``. ``max_concurrent_batches``:
    model calls in flight at once (worker threads). ``compute_showers``: the fixed model-call shape of
    deterministic mode (default ``max_batch_showers``); ``compute_buckets``: smaller shapes verified to give the
    same bits (``shape_buckets.verify_buckets``). ``latency_lane_showers``: requests of at most that many showers
    go to the latency lane (0: no lane). ``lane_priority``: while the lane has work, the others run at most
    ``max(1, max_concurrent_batches - 1)`` calls.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        max_batch_showers: int = 1024,
        max_delay_ms: float = 2.0,
        max_queue_showers: int = 4_194_304,
        max_active_requests: int = 4096,
        max_concurrent_batches: int = 1,
        buffer_chunks: int = 2,
        deterministic: bool = False,
        compute_showers: int | None = None,
        compute_buckets: Sequence[int] = (),
        latency_lane_showers: int = 0,
        lane_priority: bool = True,
        observer: BatcherObserver | None = None,
    ) -> None:
        _check_positive(max_batch_showers=max_batch_showers, max_queue_showers=max_queue_showers)
        _check_positive(max_active_requests=max_active_requests, max_concurrent_batches=max_concurrent_batches)
        _check_positive(buffer_chunks=buffer_chunks, compute_showers=compute_showers or max_batch_showers)
        self.runtime = runtime
        self.max_batch_showers = max_batch_showers
        self.max_delay_ms = max_delay_ms
        self.max_queue_showers = max_queue_showers
        self.max_active_requests = max_active_requests
        self.max_concurrent_batches = max_concurrent_batches
        self.buffer_chunks = buffer_chunks
        self.deterministic = deterministic
        self.compute_showers = compute_showers or max_batch_showers
        self.compute_shapes = tuple(
            sorted({*(b for b in compute_buckets if 0 < b < self.compute_showers), self.compute_showers})
        )
        self.latency_lane_showers = max(0, latency_lane_showers)
        self.lane_priority = lane_priority
        self.observer: BatcherObserver = observer or NullObserver()
        self.batches_executed = 0
        self._active: dict[int, _Request] = {}
        self._next_id = 0
        self._rotation = 0
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._batch_tasks: set[asyncio.Task[None]] = set()
        self._lanes = [
            _Lane(False, max_concurrent_batches, True, ThreadPoolExecutor(max_concurrent_batches, "caloflow-batch"))
        ]
        if self.latency_lane_showers:
            self._lanes.append(_Lane(True, 1, False, ThreadPoolExecutor(1, "caloflow-lane")))

    # ------------------------------------------------------------------------------------------ public
    def stream(
        self,
        energies: EnergySource,
        count: int,
        seed: int,
        *,
        start_index: int = 0,
        chunk_showers: int | None = None,
    ) -> ShowerStream:
        """Admit a request for showers ``start_index .. start_index + count - 1``; iterate the result for chunks.

        Admission happens here, not at the first iteration: ``QueueFullError`` or ``DrainingError`` at once.
        Must be called on the event loop that runs the batcher.
        """
        _check_positive(count=count, chunk_showers=chunk_showers or 1)
        if not 0 <= seed <= UINT64_MAX or not 0 <= start_index <= 2**63 - count:
            raise ValueError(f"seed must be a uint64 and shower indices below 2**63, got {seed=} {start_index=}")
        self._admit(count)
        chunk = chunk_showers or self.max_batch_showers
        request = _Request(
            self._next_id,
            energies,
            count,
            seed,
            start_index,
            chunk,
            self.stream_window(chunk),
            time.monotonic(),
            small=count <= self.latency_lane_showers,
        )
        self._next_id += 1
        self._active[request.id] = request
        self._notify_queue()
        self._wake()
        return ShowerStream(self, request)

    def stream_window(self, chunk_showers: int) -> int:
        """Most showers a request with this chunk size may have scheduled and not yet taken (module docstring)."""
        return max(chunk_showers * self.buffer_chunks, (self.max_concurrent_batches + 1) * self.max_batch_showers)

    @property
    def pending_showers(self) -> int:
        return sum(request.pending for request in self._active.values())

    @property
    def pending_requests(self) -> int:
        return len(self._active)

    async def aclose(self, timeout_s: float | None = 0.0) -> None:
        """Refuse new requests, let open ones finish for up to ``timeout_s`` (None: no limit), fail the rest with
        ``DrainingError`` (carrying ``next_index``), and stop the worker."""
        self._closing = True
        self._wake()
        if self._active and timeout_s != 0.0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), timeout_s)
        for request in list(self._active.values()):
            next_index = request.start_index + request.emitted
            self._fail(request, DrainingError("the server is shutting down; resume at next_index", next_index))
        for lane in self._lanes:
            if lane.task is not None:
                lane.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
        if self._batch_tasks:
            await asyncio.gather(*self._batch_tasks, return_exceptions=True)
        for lane in self._lanes:
            lane.executor.shutdown(wait=True)

    # --------------------------------------------------------------------------------------- admission
    def _admit(self, count: int) -> None:
        self._ensure_started()
        if self._closing:
            raise DrainingError("the batcher is shutting down and takes no new requests")
        if len(self._active) >= self.max_active_requests:
            raise QueueFullError(f"{len(self._active)} requests are open, the limit is {self.max_active_requests}")
        pending = self.pending_showers
        if pending + count > self.max_queue_showers:
            raise QueueFullError(
                f"{count} showers do not fit: {pending} are queued and the limit is {self.max_queue_showers}"
            )

    def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._wakeup = asyncio.Event()
            for lane in self._lanes:
                lane.slots = asyncio.Semaphore(lane.concurrent)
                name = "caloflow-latency-lane" if lane.small else "caloflow-batcher"
                lane.task = loop.create_task(self._schedule_forever(lane), name=name)
        elif self._loop is not loop:
            raise RuntimeError("a Batcher serves one event loop; this call came from another")

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def _drained(self) -> None:
        while self._active:
            await self._wait_wakeup()

    async def _wait_wakeup(self, timeout_s: float | None = None) -> None:
        """Wait for the next ``_wake``; callers check their condition right before (no await in between)."""
        assert self._wakeup is not None
        self._wakeup.clear()
        async with asyncio.timeout(timeout_s):
            await self._wakeup.wait()

    # --------------------------------------------------------------------------------------- scheduling
    async def _schedule_forever(self, lane: _Lane) -> None:
        assert lane.slots is not None and self._loop is not None
        try:
            while True:
                await lane.slots.acquire()
                try:
                    segments = await self._next_batch(lane)
                except BaseException:
                    lane.slots.release()
                    raise
                lane.running += 1
                task = self._loop.create_task(self._execute(segments, lane))
                self._batch_tasks.add(task)
                task.add_done_callback(self._batch_tasks.discard)
        except _StoppedError:
            return

    def _schedulable(self, lane: _Lane) -> int:
        return sum(request.schedulable() for request in self._active.values() if request.small == lane.small)

    def _gives_way(self, lane: _Lane) -> bool:
        """Lane priority: while the latency lane has work waiting or running, the stream lane starts no call
        beyond ``max(1, concurrent - 1)`` running ones, so a core is left to the lane's call."""
        if lane.small or not self.lane_priority or len(self._lanes) < 2:
            return False
        latency = self._lanes[1]
        busy = latency.running > 0 or self._schedulable(latency) > 0
        return busy and lane.running >= max(1, lane.concurrent - 1)

    async def _next_batch(self, lane: _Lane) -> list[_Segment]:
        while True:
            while self._schedulable(lane) == 0 or self._gives_way(lane):
                if self._closing and not self._active:
                    raise _StoppedError
                await self._wait_wakeup()
            if lane.fill_delay:
                await self._fill_delay(lane)
                if self._gives_way(lane):
                    continue
            segments = self._form_batch(lane)
            if segments:
                return segments

    async def _fill_delay(self, lane: _Lane) -> None:
        """Wait up to ``max_delay_ms`` for a full batch (no wait when one can be formed already)."""
        assert self._loop is not None
        deadline = self._loop.time() + self.max_delay_ms / 1000.0
        while self._schedulable(lane) < self.max_batch_showers:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return
            try:
                await self._wait_wakeup(remaining)
            except TimeoutError:
                return

    def _form_batch(self, lane: _Lane) -> list[_Segment]:
        """Max-min fair shares of ``max_batch_showers`` over the lane's requests with work, in rotating order."""
        ready = [r for r in self._active.values() if r.small == lane.small and r.schedulable() > 0]
        if not ready:
            return []
        shift = self._rotation % len(ready)
        self._rotation += 1
        ready = ready[shift:] + ready[:shift]
        taken = _fair_shares([request.schedulable() for request in ready], self.max_batch_showers)
        now = time.monotonic()
        segments = []
        for request, n in zip(ready, taken, strict=True):
            if n:
                segments.append(_Segment(request, request.scheduled, n, now - request.ready_at))
                request.scheduled += n
                request.ready_at = now
        return segments

    # --------------------------------------------------------------------------------------- execution
    async def _execute(self, segments: list[_Segment], lane: _Lane) -> None:
        assert self._loop is not None and lane.slots is not None
        try:
            outcome = await self._loop.run_in_executor(lane.executor, self._compute, segments)
        except Exception as exc:  # the executor itself failed (shut down)
            outcome = _Outcome([InferenceError(f"batch not run: {exc!r}")] * len(segments), 0.0, False)
        finally:
            lane.slots.release()
            lane.running -= 1
        self.batches_executed += 1
        self._report_batch(segments, outcome)
        for segment, result in zip(segments, outcome.showers, strict=True):
            self._deliver(segment, result, outcome.compute_seconds)
        self._notify_queue()
        self._wake()

    def _compute(self, segments: list[_Segment]) -> _Outcome:
        """Worker thread: make the inputs, run the model, split and check per request."""
        started = time.perf_counter()
        try:
            energies, showers = self._run_model(segments)
        except CaloflowServerError as exc:
            return _Outcome([exc] * len(segments), time.perf_counter() - started, False)
        except Exception as exc:
            logger.exception("unexpected failure while running a batch")
            error = InferenceError(f"unexpected failure while running a batch: {exc!r}")
            return _Outcome([error] * len(segments), time.perf_counter() - started, False)
        results = _split_checked(segments, energies, showers, self.runtime.n_voxels)
        ok = not any(isinstance(result, BaseException) for result in results)
        return _Outcome(results, time.perf_counter() - started, ok)

    def _run_model(self, segments: list[_Segment]) -> tuple[np.ndarray, np.ndarray]:
        energies = np.concatenate([_energies_of(segment) for segment in segments])
        ranges = [NoiseRange(s.request.seed, s.request.start_index + s.offset, s.n) for s in segments]
        noise = shower_noise_ranges(ranges, self.runtime.noise_dim)
        incident = energies.reshape(-1, 1)
        if not self.deterministic:
            return energies, self.runtime.run(incident, noise)
        return energies, run_in_shapes(self.runtime, incident, noise.numpy(), self.compute_shapes)

    def _compute_rows(self, n: int) -> int:
        if not self.deterministic:
            return n
        return sum(call_shapes(n, self.compute_shapes))

    def _report_batch(self, segments: list[_Segment], outcome: _Outcome) -> None:
        n = sum(segment.n for segment in segments)
        stats = BatchStats(
            batch_showers=n,
            compute_showers=self._compute_rows(n),
            request_ids=tuple(segment.request.id for segment in segments),
            queue_seconds=max(segment.waited_seconds for segment in segments),
            compute_seconds=outcome.compute_seconds,
            ok=outcome.ok,
        )
        _notify(self.observer.on_batch, stats)

    # --------------------------------------------------------------------------------------- delivery
    def _deliver(
        self, segment: _Segment, result: tuple[np.ndarray, np.ndarray] | BaseException, compute_seconds: float
    ) -> None:
        request = segment.request
        request.stats.batches += 1
        request.stats.queue_seconds += segment.waited_seconds
        request.stats.compute_seconds += compute_seconds
        if not request.open:
            return
        if isinstance(result, BaseException):
            self._fail(request, result)
            return
        request.completed += segment.n
        request.pieces[segment.offset] = result
        _assemble(request)
        if request.completed == request.count:
            self._retire(request)
        request.changed.set()

    def _fail(self, request: _Request, error: BaseException) -> None:
        if request.open:
            request.error = error
            request.pieces.clear()
            self._retire(request)
            request.changed.set()

    def _retire(self, request: _Request) -> None:
        """The request needs no more batches: out of the active set (its stream may still hold chunks)."""
        if self._active.pop(request.id, None) is not None:
            self._notify_queue()
            self._wake()

    def _notify_queue(self) -> None:
        _notify(self.observer.on_queue, self.pending_showers, self.pending_requests)

    # --------------------------------------------------------------------------------- consumer events
    def _consumed(self, request: _Request, chunk: ShowerChunk) -> None:
        before = request.schedulable()
        request.consumed += chunk.n_showers
        request.stats.delivered += chunk.n_showers
        if before == 0 and request.schedulable() > 0:
            request.ready_at = time.monotonic()
            self._wake()

    def _close(self, request: _Request) -> None:
        """The consumer is done with the request: drop what is not computed yet and report it once."""
        if request.stats.status != "running":
            return
        if request.error is not None:
            request.stats.status = "failed"
        else:
            request.stats.status = "ok" if request.consumed == request.count else "cancelled"
        request.closed = True
        request.pieces.clear()
        request.partial.clear()
        request.chunks.clear()
        self._retire(request)
        _notify(self.observer.on_request_finished, request.stats)

    def _close_threadsafe(self, request: _Request) -> None:
        """Finaliser of a stream dropped without ``aclose``: hand the close to the loop's thread."""
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._close, request)


class ShowerStream:
    """The consumer's side of one request: an async iterator of ``ShowerChunk`` in index order.

    Use ``async with`` or ``aclose()``: leaving early cancels the request (cancelling a task that awaits
    ``__anext__`` does too). Chunks computed before a failure are delivered, then the error is raised.
    """

    def __init__(self, batcher: Batcher, request: _Request) -> None:
        self._batcher = batcher
        self._request = request
        self._finalizer = weakref.finalize(self, batcher._close_threadsafe, request)

    @property
    def request_id(self) -> int:
        return self._request.id

    @property
    def stats(self) -> RequestStats:
        return self._request.stats

    @property
    def buffered_chunks(self) -> int:
        """Chunks ready and not yet taken."""
        return len(self._request.chunks)

    @property
    def outstanding_showers(self) -> int:
        """Showers scheduled or computed but not yet taken: at most ``Batcher.stream_window(chunk_showers)``."""
        return self._request.scheduled - self._request.consumed

    def __aiter__(self) -> ShowerStream:
        return self

    async def __anext__(self) -> ShowerChunk:
        request = self._request
        while True:
            if request.chunks:
                chunk = request.chunks.popleft()
                self._batcher._consumed(request, chunk)
                return chunk
            if request.closed:
                raise StopAsyncIteration
            if request.error is not None:
                self._finish()
                raise request.error
            if request.consumed == request.count:
                self._finish()
                raise StopAsyncIteration
            request.changed.clear()
            try:
                await request.changed.wait()
            except asyncio.CancelledError:
                self._finish()
                raise

    async def aclose(self) -> None:
        """Stop: unscheduled showers are dropped, results still computing are discarded."""
        self._finish()

    def _finish(self) -> None:
        self._finalizer.detach()
        self._batcher._close(self._request)

    async def __aenter__(self) -> ShowerStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()


# ------------------------------------------------------------------------------------------- helpers
def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be positive, got {value}")


def _fair_shares(wants: list[int], capacity: int) -> list[int]:
    """Max-min fair allocation of ``capacity`` (water filling); leftover units go to the first requests."""
    taken = [0] * len(wants)
    open_indices = [i for i, want in enumerate(wants) if want > 0]
    while capacity > 0 and open_indices:
        share = max(1, capacity // len(open_indices))
        still_open = []
        for i in open_indices:
            n = min(wants[i] - taken[i], share, capacity)
            taken[i] += n
            capacity -= n
            if taken[i] < wants[i]:
                still_open.append(i)
        open_indices = still_open
    return taken


def _energies_of(segment: _Segment) -> np.ndarray:
    energies = np.asarray(segment.request.energies(segment.offset, segment.n), dtype=np.float32).reshape(-1)
    if energies.shape[0] != segment.n:
        raise InferenceError(f"energy source returned {energies.shape[0]} energies for {segment.n} showers")
    return energies


def _split_checked(
    segments: list[_Segment], energies: np.ndarray, showers: np.ndarray, n_voxels: int
) -> list[tuple[np.ndarray, np.ndarray] | BaseException]:
    """Each segment's rows (copied: a request never pins the whole batch), or the error its rows raise."""
    if showers.shape[0] != energies.shape[0]:
        error = InferenceError(f"model returned {showers.shape[0]} showers for {energies.shape[0]} inputs")
        return [error] * len(segments)
    results: list[tuple[np.ndarray, np.ndarray] | BaseException] = []
    row = 0
    for segment in segments:
        rows = slice(row, row + segment.n)
        row += segment.n
        try:
            results.append((energies[rows].copy(), check_showers(showers[rows], n_voxels).copy()))
        except CaloflowServerError as exc:
            results.append(exc)
    return results


def _assemble(request: _Request) -> None:
    """Move the contiguous prefix of computed pieces into chunks of ``chunk_showers`` (the last may be short)."""
    offset = request.emitted + sum(part[0].shape[0] for part in request.partial)
    while offset in request.pieces:
        piece = request.pieces.pop(offset)
        request.partial.append(piece)
        offset += piece[0].shape[0]
    buffered = offset - request.emitted
    while buffered >= request.chunk_showers or (buffered > 0 and offset == request.count):
        n = min(buffered, request.chunk_showers)
        energies, showers = _take_rows(request.partial, n)
        request.chunks.append(ShowerChunk(request.start_index + request.emitted, energies, showers))
        request.emitted += n
        buffered -= n


def _take_rows(parts: list[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` rows of ``parts`` (removed from it): a view when one part holds them, else one copy of
    those rows only (joining every buffered part per chunk copied a wide model's batch once per chunk)."""
    taken: list[tuple[np.ndarray, np.ndarray]] = []
    need = n
    while need:
        energies, showers = parts[0]
        rows = min(need, energies.shape[0])
        taken.append((energies[:rows], showers[:rows]))
        if rows < energies.shape[0]:
            parts[0] = (energies[rows:], showers[rows:])
        else:
            parts.pop(0)
        need -= rows
    if len(taken) == 1:
        return taken[0]
    return np.concatenate([part[0] for part in taken]), np.concatenate([part[1] for part in taken])


def _notify(hook: Callable[..., None], *args: object) -> None:
    try:
        hook(*args)
    except Exception:
        logger.exception("batcher observer hook %s failed", getattr(hook, "__name__", hook))
