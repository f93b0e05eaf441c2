"""Clients of the native gRPC API (``caloflow.v1.ShowerService``), on grpcio (blocking) and grpc.aio.

``timeout_s`` bounds each wait for the next message, not the whole call: a stream silent for longer is
cancelled and resumed (a deadline on the call would cut long streams). gRPC reports an unreachable server
as UNAVAILABLE, so over gRPC connection failures arrive as ``UnavailableError`` (retried like any).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator

import grpc
import grpc.aio

from caloflow_client._address import grpc_target
from caloflow_client._client import AsyncClientBase, ClientBase
from caloflow_client._events import Event, HeaderEvent
from caloflow_client._grpc_wire import (
    CHANNEL_OPTIONS,
    GENERATE,
    LIST_MODELS,
    error_from_rpc,
    event_of,
    model_infos,
    pb,
    request_message,
)
from caloflow_client._resume import RetryPolicy
from caloflow_client.errors import ClientTimeoutError
from caloflow_client.request import GenerateRequest
from caloflow_client.results import ModelInfo

__all__ = ["AsyncGrpcClient", "GrpcClient"]


class _Watchdog(threading.Thread):
    """Cancels a blocking call when it waits longer than ``timeout_s`` for a message (armed only while waiting)."""

    def __init__(self, timeout_s: float, cancel: Callable[[], object]) -> None:
        super().__init__(daemon=True, name="caloflow-grpc-watchdog")
        self._timeout_s = timeout_s
        self._cancel = cancel
        self._deadline: float | None = None
        self._wake = threading.Event()
        self._stopped = False
        self.fired = False

    def arm(self) -> None:
        self._deadline = time.monotonic() + self._timeout_s
        self._wake.set()

    def disarm(self) -> None:
        self._deadline = None

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def run(self) -> None:
        while not self._stopped:
            deadline = self._deadline
            wait_s = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._wake.wait(wait_s)
            self._wake.clear()
            deadline = self._deadline
            if not self._stopped and deadline is not None and time.monotonic() >= deadline:
                self.fired = True
                self._cancel()
                return


class GrpcClient(ClientBase):
    """Blocking client of a gRPC ``host:port`` (default port 8001)."""

    def __init__(
        self,
        target: str = "127.0.0.1:8001",
        *,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        address = grpc_target(target)
        super().__init__(address, RetryPolicy(max_retries, backoff_s, max_backoff_s))
        self._timeout_s = timeout_s
        if credentials is None:
            self._channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        else:
            self._channel = grpc.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
        self._generate = self._channel.unary_stream(
            GENERATE,
            request_serializer=pb.GenerateRequest.SerializeToString,
            response_deserializer=pb.ShowerChunk.FromString,
        )
        self._list = self._channel.unary_unary(
            LIST_MODELS,
            request_serializer=pb.ListModelsRequest.SerializeToString,
            response_deserializer=pb.ListModelsResponse.FromString,
        )

    def close(self) -> None:
        self._channel.close()

    def _attempt(self, request: GenerateRequest) -> Generator[Event, None, None]:
        call = self._generate(request_message(request))
        watchdog = _Watchdog(self._timeout_s, call.cancel)
        watchdog.start()
        n_voxels: int | None = None
        try:
            while True:
                watchdog.arm()
                try:
                    message = next(call)
                except StopIteration:
                    return
                finally:
                    watchdog.disarm()
                event = event_of(message, self.server, n_voxels)
                if isinstance(event, HeaderEvent):
                    n_voxels = event.info.n_voxels
                yield event
        except grpc.RpcError:
            raise error_from_rpc(
                call.code(), call.details(), call.trailing_metadata(), timed_out=watchdog.fired, server=self.server
            ) from None
        finally:
            watchdog.stop()
            call.cancel()

    def models(self) -> list[ModelInfo]:
        try:
            return model_infos(self._list(pb.ListModelsRequest(), timeout=self._timeout_s))
        except grpc.RpcError as exc:
            call = exc if isinstance(exc, grpc.Call) else None
            raise error_from_rpc(
                call.code() if call else None,
                call.details() if call else str(exc),
                call.trailing_metadata() if call else None,
                server=self.server,
            ) from None


class AsyncGrpcClient(AsyncClientBase):
    """The grpc.aio client; its channel is opened on first use, in the running event loop."""

    def __init__(
        self,
        target: str = "127.0.0.1:8001",
        *,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        address = grpc_target(target)
        super().__init__(address, RetryPolicy(max_retries, backoff_s, max_backoff_s))
        self._timeout_s = timeout_s
        self._credentials = credentials
        self._channel: grpc.aio.Channel | None = None

    def _open(self) -> grpc.aio.Channel:
        if self._channel is None:
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self.server, options=CHANNEL_OPTIONS)
            else:
                self._channel = grpc.aio.secure_channel(self.server, self._credentials, options=CHANNEL_OPTIONS)
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def _attempt(self, request: GenerateRequest) -> AsyncGenerator[Event, None]:
        generate = self._open().unary_stream(
            GENERATE,
            request_serializer=pb.GenerateRequest.SerializeToString,
            response_deserializer=pb.ShowerChunk.FromString,
        )
        call = generate(request_message(request))
        n_voxels: int | None = None
        try:
            while True:
                try:
                    message = await asyncio.wait_for(call.read(), self._timeout_s)
                except TimeoutError:
                    raise ClientTimeoutError(f"{self.server}: no message for {self._timeout_s} s") from None
                if message is grpc.aio.EOF:
                    return
                event = event_of(message, self.server, n_voxels)
                if isinstance(event, HeaderEvent):
                    n_voxels = event.info.n_voxels
                yield event
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc.code(), exc.details(), exc.trailing_metadata(), server=self.server) from None
        finally:
            call.cancel()

    async def models(self) -> list[ModelInfo]:
        list_models = self._open().unary_unary(
            LIST_MODELS,
            request_serializer=pb.ListModelsRequest.SerializeToString,
            response_deserializer=pb.ListModelsResponse.FromString,
        )
        try:
            return model_infos(await list_models(pb.ListModelsRequest(), timeout=self._timeout_s))
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc.code(), exc.details(), exc.trailing_metadata(), server=self.server) from None
