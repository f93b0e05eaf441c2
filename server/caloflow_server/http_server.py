"""uvicorn servers driven from the caller's event loop: started, stopped and signal-free.

``uvicorn.Server.serve()`` installs its own SIGINT/SIGTERM handlers and owns the shutdown; here ``main`` owns
both (readiness flips first, the service drains, then the listeners close), so ``HttpServer`` runs uvicorn's
start-up, tick loop and shutdown steps itself. Several servers (the API on 8000, metrics on 8002) share one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import uvicorn

__all__ = ["HttpServer"]

logger = logging.getLogger(__name__)


class HttpServer:
    """One uvicorn server for ``app`` on ``host:port`` (0: an ephemeral port, see ``port`` once started).

    ``tls_cert``/``tls_key``: PEM files for HTTPS. ``graceful_timeout_s``: at ``stop``, how long open
    connections may finish their responses before their tasks are cancelled.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str,
        port: int,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        graceful_timeout_s: int = 5,
        name: str = "http",
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("give both tls_cert and tls_key, or neither")
        self.name = name
        self.config = uvicorn.Config(
            app,
            host=host,
            port=port,
            ssl_certfile=str(tls_cert) if tls_cert is not None else None,
            ssl_keyfile=str(tls_key) if tls_key is not None else None,
            lifespan="off",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=graceful_timeout_s,
            server_header=False,
        )
        self._server = uvicorn.Server(self.config)
        self._ticker: asyncio.Task[None] | None = None

    @property
    def tls(self) -> bool:
        return self.config.ssl_certfile is not None

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one when built with port 0); valid once started."""
        sockets = self._server.servers[0].sockets
        return int(sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and start serving; ``OSError`` when the address cannot be bound."""
        if not self.config.loaded:
            self.config.load()
        self._server.lifespan = self.config.lifespan_class(self.config)
        try:
            await self._server.startup()
        except SystemExit:  # uvicorn exits the process when it cannot bind; report it as an error instead
            raise OSError(f"{self.name}: cannot listen on {self.config.host}:{self.config.port}") from None
        self._ticker = asyncio.get_running_loop().create_task(self._server.main_loop(), name=f"uvicorn-{self.name}")

    async def stop(self) -> None:
        """Stop accepting, let open responses finish (up to ``graceful_timeout_s``), close."""
        if self._ticker is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker
        self._ticker = None
        await self._server.shutdown()
