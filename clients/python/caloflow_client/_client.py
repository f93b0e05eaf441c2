"""What every client does on top of one transport attempt: resume loop, whole results, files, progress.

A transport implements ``_attempt(request)``: one call to the server, yielding ``Event``s and raising typed
errors. ``stream`` drives attempts through ``StreamState`` until the request is complete; ``generate`` and
``generate_to_file`` consume a stream. The sync and async bases mirror each other line for line.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Generator, Iterator
from contextlib import aclosing, closing
from types import TracebackType
from typing import Self, Unpack

import numpy as np
from numpy.typing import DTypeLike

from caloflow_client._events import Event
from caloflow_client._resume import RetryPolicy, StreamState
from caloflow_client.errors import CaloflowClientError, InvalidRequestError, ProtocolError
from caloflow_client.files import ShowerFileWriter, check_output_path, open_writer
from caloflow_client.request import GenerateFields, GenerateRequest
from caloflow_client.results import GenerationInfo, GenerationResult, ModelInfo, ShowerChunk

__all__ = ["AsyncClientBase", "AsyncShowerStream", "ClientBase", "ShowerStream"]


class ShowerStream:
    """Chunks of one request as they arrive, across resumptions. ``info`` is set once the header is in."""

    def __init__(self, client: ClientBase, request: GenerateRequest) -> None:
        self._client = client
        self._state = StreamState(request, client.retry_policy)
        self._chunks = self._run()

    @property
    def info(self) -> GenerationInfo | None:
        return self._state.info

    @property
    def resumed_at(self) -> list[int]:
        """The shower indices at which the stream was resumed after an interruption."""
        return list(self._state.resumed_at)

    def __iter__(self) -> Iterator[ShowerChunk]:
        return self

    def __next__(self) -> ShowerChunk:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> Generator[ShowerChunk, None, None]:
        state = self._state
        while True:
            try:
                with closing(self._client._attempt(state.request())) as events:
                    for event in events:
                        chunk = state.accept(event)
                        if chunk is not None:
                            yield chunk
                state.finish_attempt()
                return
            except CaloflowClientError as exc:
                time.sleep(state.retry_delay_s(exc))


class AsyncShowerStream:
    """The async ``ShowerStream``: ``async for chunk in client.stream(...)``."""

    def __init__(self, client: AsyncClientBase, request: GenerateRequest) -> None:
        self._client = client
        self._state = StreamState(request, client.retry_policy)
        self._chunks = self._run()

    @property
    def info(self) -> GenerationInfo | None:
        return self._state.info

    @property
    def resumed_at(self) -> list[int]:
        return list(self._state.resumed_at)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ShowerChunk:
        return await anext(self._chunks)

    async def aclose(self) -> None:
        await self._chunks.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self) -> AsyncGenerator[ShowerChunk, None]:
        state = self._state
        while True:
            try:
                async with aclosing(self._client._attempt(state.request())) as events:
                    async for event in events:
                        chunk = state.accept(event)
                        if chunk is not None:
                            yield chunk
                state.finish_attempt()
                return
            except CaloflowClientError as exc:
                await asyncio.sleep(state.retry_delay_s(exc))


class _Collector:
    """Fills one preallocated result array from chunks (no list of chunks, no final concatenation)."""

    def __init__(self) -> None:
        self.showers: np.ndarray | None = None
        self.energies: np.ndarray | None = None
        self.rows = 0

    def add(self, info: GenerationInfo | None, chunk: ShowerChunk) -> None:
        if self.showers is None or self.energies is None:
            assert info is not None
            self.showers = np.empty((info.count, info.n_voxels), dtype=np.float32)
            self.energies = np.empty(info.count, dtype=np.float32)
        stop = self.rows + chunk.n_showers
        self.showers[self.rows : stop] = chunk.showers
        self.energies[self.rows : stop] = chunk.incident_energy_mev
        self.rows = stop

    def result(self, info: GenerationInfo | None) -> GenerationResult:
        if info is None or self.showers is None or self.energies is None or self.rows != info.count:
            raise ProtocolError(f"the stream ended after {self.rows} showers")
        return GenerationResult(self.showers, self.energies, info)


class _FileSink:
    """A writer opened on the first chunk (when the header has said how many voxels) and a progress bar."""

    def __init__(self, path: str | os.PathLike[str], dtype: DTypeLike, progress: bool, total: int) -> None:
        from tqdm import tqdm

        self.path = path
        self.dtype = dtype
        self.writer: ShowerFileWriter | None = None
        self.bar = tqdm(total=total, unit="shower", unit_scale=True, disable=not progress, file=sys.stderr)

    def add(self, info: GenerationInfo | None, chunk: ShowerChunk) -> None:
        if self.writer is None:
            assert info is not None
            self.writer = open_writer(self.path, info, self.dtype)
        self.writer.append(chunk)
        self.bar.update(chunk.n_showers)

    def close(self, ok: bool) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close() if ok else self.writer.abort()


def request_of(request: GenerateRequest | None, fields: GenerateFields) -> GenerateRequest:
    """A prepared request, or one built from keyword arguments (not both)."""
    if request is None:
        return GenerateRequest.build(**fields)
    if fields:
        raise InvalidRequestError(next(iter(fields)), "give a GenerateRequest or keyword arguments, not both")
    request.check()
    return request


class ClientBase(ABC):
    """A blocking client: ``stream``, ``generate``, ``generate_to_file``, ``models``; a context manager."""

    def __init__(self, server: str, retry_policy: RetryPolicy) -> None:
        self.server = server
        self.retry_policy = retry_policy

    @abstractmethod
    def _attempt(self, request: GenerateRequest) -> Generator[Event, None, None]: ...

    @abstractmethod
    def models(self) -> list[ModelInfo]:
        """The loaded models and their versions."""

    @abstractmethod
    def close(self) -> None: ...

    def stream(self, request: GenerateRequest | None = None, /, **fields: Unpack[GenerateFields]) -> ShowerStream:
        """Chunks as they arrive; an interrupted stream is resumed where it stopped (same seed, same showers)."""
        return ShowerStream(self, request_of(request, fields))

    def generate(self, request: GenerateRequest | None = None, /, **fields: Unpack[GenerateFields]) -> GenerationResult:
        """All showers of a request in one float32 ``(N, n_voxels)`` array, with incident energies and metadata."""
        collector = _Collector()
        with self.stream(request_of(request, fields)) as stream:
            for chunk in stream:
                collector.add(stream.info, chunk)
        return collector.result(stream.info)

    def generate_to_file(
        self,
        path: str | os.PathLike[str],
        request: GenerateRequest | None = None,
        /,
        *,
        progress: bool = False,
        dtype: DTypeLike = np.float32,
        **fields: Unpack[GenerateFields],
    ) -> GenerationInfo:
        """Write a request's showers to ``.h5``/``.hdf5`` (CaloChallenge) or ``.npy`` as they arrive."""
        request = request_of(request, fields)
        check_output_path(path)
        sink = _FileSink(path, dtype, progress, request.total)
        ok = False
        try:
            with ShowerStream(self, request) as stream:
                for chunk in stream:
                    sink.add(stream.info, chunk)
            ok = True
        finally:
            sink.close(ok)
        assert stream.info is not None
        return stream.info

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClientBase(ABC):
    """The asyncio client: the same methods as ``ClientBase``, awaited; an async context manager."""

    def __init__(self, server: str, retry_policy: RetryPolicy) -> None:
        self.server = server
        self.retry_policy = retry_policy

    @abstractmethod
    def _attempt(self, request: GenerateRequest) -> AsyncGenerator[Event, None]: ...

    @abstractmethod
    async def models(self) -> list[ModelInfo]:
        """The loaded models and their versions."""

    @abstractmethod
    async def close(self) -> None: ...

    def stream(self, request: GenerateRequest | None = None, /, **fields: Unpack[GenerateFields]) -> AsyncShowerStream:
        """Chunks as they arrive; an interrupted stream is resumed where it stopped (same seed, same showers)."""
        return AsyncShowerStream(self, request_of(request, fields))

    async def generate(
        self, request: GenerateRequest | None = None, /, **fields: Unpack[GenerateFields]
    ) -> GenerationResult:
        collector = _Collector()
        async with self.stream(request_of(request, fields)) as stream:
            async for chunk in stream:
                collector.add(stream.info, chunk)
        return collector.result(stream.info)

    async def generate_to_file(
        self,
        path: str | os.PathLike[str],
        request: GenerateRequest | None = None,
        /,
        *,
        progress: bool = False,
        dtype: DTypeLike = np.float32,
        **fields: Unpack[GenerateFields],
    ) -> GenerationInfo:
        """As ``ClientBase.generate_to_file``; file writes run on the event loop's thread (they are chunk-sized)."""
        request = request_of(request, fields)
        check_output_path(path)
        sink = _FileSink(path, dtype, progress, request.total)
        ok = False
        try:
            async with AsyncShowerStream(self, request) as stream:
                async for chunk in stream:
                    sink.add(stream.info, chunk)
            ok = True
        finally:
            sink.close(ok)
        assert stream.info is not None
        return stream.info

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
