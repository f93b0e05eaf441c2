"""The served application, independent of any transport: readiness, and model control over the generation service.

``ServerState`` is what health endpoints of every transport read. ``ModelControl`` loads (verify, load, warm up,
then swap in), unloads and switches the default version of a model in a ``GenerationService`` without dropping
in-flight requests: a replaced or removed version leaves the routing table at once, and its batcher drains in
the background (its open streams finish, for up to ``drain_timeout_s``, then end with a resumable
``DrainingError``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from caloflow_repo import (
    InvalidNameError,
    ModelNotFoundError,
    RepositoryError,
    parse_version,
    validate_model_name,
)
from caloflow_server.errors import (
    InvalidArgumentError,
    UnknownModelError,
    UnknownVersionError,
)
from caloflow_server.runtime import BackendName, LoadedModel, load_runtime
from caloflow_server.service import GenerationService

__all__ = ["ModelControl", "ServerState", "StateListener", "check_model_name"]

logger = logging.getLogger(__name__)

StateListener = Callable[[str, int, str, float | None], None]
"""``(model, version, state, load_seconds)``; state is "loading", "ready", "unloading" or "unavailable"."""


class ServerState:
    """Liveness and readiness shared by every transport: ready once the start-up models are loaded and warm, and
    not ready from the moment shutdown begins."""

    def __init__(self) -> None:
        self.models_loaded = False
        self.draining = False

    def is_live(self) -> bool:
        return True

    def is_ready(self) -> bool:
        return self.models_loaded and not self.draining


def check_model_name(model: str) -> str:
    """``model`` if it is a valid repository model name, else ``InvalidArgumentError`` naming the field "model"."""
    try:
        return validate_model_name(model)
    except InvalidNameError as exc:
        raise InvalidArgumentError("model", str(exc)) from None


class ModelControl:
    """Load, unload and default-switch model versions of a running ``GenerationService`` (one at a time)."""

    def __init__(
        self,
        service: GenerationService,
        *,
        backend: BackendName = "auto",
        device: str = "cpu",
        intra_op_threads: int | None = None,
        compile_cache: Path | None = None,
        warmup_batch_sizes: Sequence[int] = (1,),
        drain_timeout_s: float | None = 30.0,
        on_state: StateListener | None = None,
    ) -> None:
        self.service = service
        self._backend: BackendName = backend
        self._device = device
        self._intra_op_threads = intra_op_threads
        self._compile_cache = compile_cache
        self._warmup_batch_sizes = tuple(warmup_batch_sizes)
        self._drain_timeout_s = drain_timeout_s
        self._on_state = on_state
        self._lock = asyncio.Lock()

    async def load(self, model: str, version: int | str | None = None) -> LoadedModel:
        """Verify, load and warm up ``model@version`` (default: the repository's default) off the event loop, then
        serve it (replacing the same version if loaded). Typed errors: unknown model/version, integrity, load."""
        model = check_model_name(model)
        async with self._lock:
            number = self._resolve_number(model, version)
            self._notify(model, number, "loading")
            started = time.monotonic()
            try:
                loaded, buckets = await asyncio.to_thread(self._load_blocking, model, number)
                self.service.add_model(loaded, drain_timeout_s=self._drain_timeout_s, compute_buckets=buckets)
            except BaseException:
                self._notify(model, number, "ready" if self.service.is_loaded(model, number) else "unavailable")
                raise
            self._notify(model, number, "ready", time.monotonic() - started)
            shapes = self.service.batcher(model, number).compute_shapes
            backend, filename = loaded.runtime.backend, loaded.artifact.filename
            logger.info("serving %s@%d (%s, %s, call shapes %s)", model, number, backend, filename, list(shapes))
            return loaded

    async def unload(self, model: str, version: int | str | None = None) -> list[int]:
        """Stop serving ``model@version`` (every loaded version when None); in-flight streams finish."""
        model = check_model_name(model)
        async with self._lock:
            loaded = sorted(m.version for m in self.service.loaded_models if m.model == model)
            wanted = loaded if version is None else [_parse_version(version)]
            if not loaded or wanted[0] not in loaded:
                self.service.resolve(model, version)  # raises the typed error: unknown, or not loaded
                raise UnknownModelError(f"no model {model!r} is loaded", field="model")  # a particle name
            for number in wanted:
                self._notify(model, number, "unloading")
                self.service.remove_model(model, number, drain_timeout_s=self._drain_timeout_s)
                self._notify(model, number, "unavailable")
                logger.info("unloaded %s@%d; its open streams drain", model, number)
            return wanted

    def set_default(self, model: str, version: int | str) -> int:
        """Make a loaded version the one requests without a version get (rollback in one call)."""
        model = check_model_name(model)
        number = _parse_version(version)
        self.service.set_default_version(model, number)
        logger.info("default version of %s is now %d (in memory)", model, number)
        return number

    def _resolve_number(self, model: str, version: int | str | None) -> int:
        if version is not None:
            return _parse_version(version)
        try:
            return self.service.repository.default_version(model)
        except ModelNotFoundError as exc:
            raise UnknownModelError(str(exc), field="model") from None
        except RepositoryError as exc:
            raise UnknownVersionError(str(exc), field="model_version") from None

    def _load_blocking(self, model: str, version: int) -> tuple[LoadedModel, tuple[int, ...]]:
        loaded = load_runtime(
            self.service.repository,
            model,
            version,
            backend=self._backend,
            device=self._device,
            intra_op_threads=self._intra_op_threads,
            compile_cache=self._compile_cache,
        )
        loaded.warm_up(self._warmup_batch_sizes)
        return loaded, self.service.verify_buckets(loaded)

    def _notify(self, model: str, version: int, state: str, load_seconds: float | None = None) -> None:
        if self._on_state is not None:
            self._on_state(model, version, state, load_seconds)


def _parse_version(version: int | str) -> int:
    try:
        return parse_version(version)
    except (InvalidNameError, TypeError, ValueError) as exc:
        raise InvalidArgumentError("model_version", str(exc)) from None
