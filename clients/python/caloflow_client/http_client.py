"""Clients of the native HTTP API (``POST /generate``, framed stream) and the OIP model endpoints, on httpx.

``timeout_s`` bounds connecting and each wait for data (not the whole stream, which may run for hours); a
stream silent for longer is treated as a dropped connection and resumed. httpx errors are translated here,
once, into ``TransportError`` / ``ClientTimeoutError``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any

import httpx

from caloflow_client._address import http_url
from caloflow_client._client import AsyncClientBase, ClientBase
from caloflow_client._events import DataEvent, Event, HeaderEvent, TrailerEvent
from caloflow_client._framed import FrameDecoder, HeaderDocument
from caloflow_client._http_wire import (
    FRAMED,
    error_from_response,
    info_from_header,
    listing_of,
    model_info,
    request_body,
)
from caloflow_client._resume import RetryPolicy
from caloflow_client.errors import ClientTimeoutError, TransportError
from caloflow_client.request import GenerateRequest
from caloflow_client.results import ModelInfo

__all__ = ["AsyncHttpClient", "HttpClient"]


def _transport_error(server: str, exc: httpx.TransportError) -> TransportError:
    if isinstance(exc, httpx.TimeoutException):
        return ClientTimeoutError(f"{server}: no answer in time ({type(exc).__name__})")
    return TransportError(f"{server}: {type(exc).__name__}: {exc}")


def _with_info(event: HeaderDocument | DataEvent | TrailerEvent, server: str) -> Event:
    """A decoded frame for the event stream: the HEADER document becomes a ``HeaderEvent``."""
    return HeaderEvent(info_from_header(event, server)) if isinstance(event, HeaderDocument) else event


def _config_path(model: str, version: int | str | None = None) -> str:
    return f"/v2/models/{model}/config" if version is None else f"/v2/models/{model}/versions/{version}/config"


def _ready_models(index: list[dict[str, Any]]) -> dict[str, list[str]]:
    versions: dict[str, list[str]] = {}
    for entry in index:
        if entry.get("state") == "READY":
            versions.setdefault(str(entry["name"]), []).append(str(entry["version"]))
    return versions


class HttpClient(ClientBase):
    """Blocking client of ``http://host:port`` (``host:port`` alone means HTTP on that port; default 8000)."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        base = http_url(url)
        super().__init__(base, RetryPolicy(max_retries, backoff_s, max_backoff_s))
        self._http = httpx.Client(base_url=base, timeout=httpx.Timeout(timeout_s), headers=headers)

    def close(self) -> None:
        self._http.close()

    def _attempt(self, request: GenerateRequest) -> Generator[Event, None, None]:
        try:
            with self._http.stream("POST", "/generate", json=request_body(request), headers=FRAMED) as response:
                if response.status_code != 200:
                    raise error_from_response(response.status_code, response.read())
                decoder = FrameDecoder()
                for piece in response.iter_bytes():
                    for event in decoder.feed(piece):
                        yield _with_info(event, self.server)
                decoder.finish()
        except httpx.TransportError as exc:
            raise _transport_error(self.server, exc) from exc

    def _get(self, path: str) -> Any:
        response = self._http.get(path)
        if response.status_code != 200:
            raise error_from_response(response.status_code, response.content)
        return response.json()

    def _listing(self) -> dict[str, Any] | None:
        """A caloflow server's ``GET /models`` (dataset defaults, file layouts); None from other OIP servers."""
        response = self._http.get("/models")
        return listing_of(response.status_code, response.content)

    def models(self) -> list[ModelInfo]:
        try:
            response = self._http.post("/v2/repository/index", json={"ready": True})
            if response.status_code != 200:
                raise error_from_response(response.status_code, response.content)
            ready = sorted(_ready_models(response.json()).items())
            listing = self._listing()
            return [
                model_info(self._get(_config_path(name)), [self._get(_config_path(name, v)) for v in versions], listing)
                for name, versions in ready
            ]
        except httpx.TransportError as exc:
            raise _transport_error(self.server, exc) from exc


class AsyncHttpClient(AsyncClientBase):
    """The asyncio ``HttpClient``."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        base = http_url(url)
        super().__init__(base, RetryPolicy(max_retries, backoff_s, max_backoff_s))
        self._http = httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(timeout_s), headers=headers)

    async def close(self) -> None:
        await self._http.aclose()

    async def _attempt(self, request: GenerateRequest) -> AsyncGenerator[Event, None]:
        try:
            async with self._http.stream("POST", "/generate", json=request_body(request), headers=FRAMED) as response:
                if response.status_code != 200:
                    raise error_from_response(response.status_code, await response.aread())
                decoder = FrameDecoder()
                async for piece in response.aiter_bytes():
                    for event in decoder.feed(piece):
                        yield _with_info(event, self.server)
                decoder.finish()
        except httpx.TransportError as exc:
            raise _transport_error(self.server, exc) from exc

    async def _get(self, path: str) -> Any:
        response = await self._http.get(path)
        if response.status_code != 200:
            raise error_from_response(response.status_code, response.content)
        return response.json()

    async def _listing(self) -> dict[str, Any] | None:
        response = await self._http.get("/models")
        return listing_of(response.status_code, response.content)

    async def models(self) -> list[ModelInfo]:
        try:
            response = await self._http.post("/v2/repository/index", json={"ready": True})
            if response.status_code != 200:
                raise error_from_response(response.status_code, response.content)
            ready = sorted(_ready_models(response.json()).items())
            listing = await self._listing()
            infos = []
            for name, versions in ready:
                configs = [await self._get(_config_path(name, v)) for v in versions]
                infos.append(model_info(await self._get(_config_path(name)), configs, listing))
            return infos
        except httpx.TransportError as exc:
            raise _transport_error(self.server, exc) from exc
