"""The served application, independent of any transport: readiness, and model control over the generation service.

``ServerState`` is what health endpoints of every transport read. ``ManagedGenerationService`` is a
``GenerationService`` whose set of loaded versions changes while it serves; ``ModelControl`` loads (verify, load,
warm up, then swap in), unloads and switches the default version of a model without dropping in-flight requests:
a replaced or removed version leaves the routing table at once, and its batcher drains in the background (its
open streams finish, for up to ``drain_timeout_s``, then end with a resumable ``DrainingError``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from caloflow_repo import (
    InvalidNameError,
    ModelNotFoundError,
    ModelRepository,
    RepositoryError,
    parse_version,
    validate_model_name,
)
from caloflow_server.batcher import Batcher, BatcherObserver
from caloflow_server.errors import (
    InvalidArgumentError,
    ModelNotLoadedError,
    UnknownModelError,
    UnknownVersionError,
)
from caloflow_server.runtime import BackendName, LoadedModel, load_runtime
from caloflow_server.service import GenerationService, _ServedModel

__all__ = ["ManagedGenerationService", "ModelControl", "ServerState", "StateListener", "check_model_name"]

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


class ManagedGenerationService(GenerationService):
    """A ``GenerationService`` with ``add_model``, ``remove_model`` and an in-memory default-version override.

    (These reach into ``GenerationService``'s routing table ``_served``; they belong in the core service and
    move there unchanged.)
    """

    def __init__(
        self,
        repository: ModelRepository,
        loaded: Iterable[LoadedModel] = (),
        *,
        max_count: int = 1_000_000,
        max_chunk_showers: int = 65_536,
        chunk_bytes: int = 2 * 1024 * 1024,
        particle_models: Mapping[str, str] | None = None,
        observer_for: Callable[[LoadedModel], BatcherObserver] | None = None,
        **batcher_options: Any,
    ) -> None:
        super().__init__(
            repository,
            loaded,
            max_count=max_count,
            max_chunk_showers=max_chunk_showers,
            chunk_bytes=chunk_bytes,
            particle_models=particle_models,
            observer_for=observer_for,
            **batcher_options,
        )
        self._max_count = max_count
        self._observer_for = observer_for
        self._batcher_options = batcher_options
        self._default_overrides: dict[str, int] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    def is_loaded(self, model: str, version: int) -> bool:
        return (model, version) in self._served

    def add_model(self, loaded: LoadedModel, *, drain_timeout_s: float | None) -> None:
        """Serve ``loaded``; a version already served under that (model, version) is replaced and drained."""
        observer = self._observer_for(loaded) if self._observer_for is not None else None
        batcher = Batcher(loaded.runtime, observer=observer, **self._batcher_options)
        if batcher.max_queue_showers < self._max_count:
            raise ValueError(f"max_count {self._max_count} exceeds the batcher's max_queue_showers")
        previous = self._served.get((loaded.model, loaded.version))
        self._served[(loaded.model, loaded.version)] = _ServedModel(loaded, batcher)
        if previous is not None:
            self._retire(previous.batcher, drain_timeout_s)

    def remove_model(self, model: str, version: int, *, drain_timeout_s: float | None) -> LoadedModel:
        """Stop routing new requests to ``model@version``; its open streams drain in the background."""
        served = self._served.pop((model, version), None)
        if served is None:
            raise ModelNotLoadedError(f"{model} version {version} is not loaded")
        if self._default_overrides.get(model) == version:
            del self._default_overrides[model]
        self._retire(served.batcher, drain_timeout_s)
        return served.loaded

    def set_default_version(self, model: str, version: int) -> None:
        """Route requests naming no version to ``version`` (in memory; the repository's pointer is unchanged)."""
        if (model, version) not in self._served:
            raise ModelNotLoadedError(f"{model} version {version} is not loaded; load it before making it the default")
        self._default_overrides[model] = version

    def default_version(self, model: str) -> int:
        """The version a request naming ``model`` and no version is served by."""
        return self.resolve(model).version

    def _default_version(self, model: str, loaded: list[int]) -> int:
        override = self._default_overrides.get(model)
        if override in loaded:
            assert override is not None
            return override
        return super()._default_version(model, loaded)

    def _retire(self, batcher: Batcher, timeout_s: float | None) -> None:
        task = asyncio.get_running_loop().create_task(batcher.aclose(timeout_s), name="caloflow-retire-batcher")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def aclose(self, timeout_s: float | None = 0.0) -> None:
        await super().aclose(timeout_s)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)


def check_model_name(model: str) -> str:
    """``model`` if it is a valid repository model name, else ``InvalidArgumentError`` naming the field "model"."""
    try:
        return validate_model_name(model)
    except InvalidNameError as exc:
        raise InvalidArgumentError("model", str(exc)) from None


class ModelControl:
    """Load, unload and default-switch model versions of a running ``ManagedGenerationService`` (one at a time)."""

    def __init__(
        self,
        service: ManagedGenerationService,
        *,
        backend: BackendName = "auto",
        device: str = "cpu",
        intra_op_threads: int | None = None,
        warmup_batch_sizes: Sequence[int] = (1,),
        drain_timeout_s: float | None = 30.0,
        on_state: StateListener | None = None,
    ) -> None:
        self.service = service
        self._backend: BackendName = backend
        self._device = device
        self._intra_op_threads = intra_op_threads
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
                loaded = await asyncio.to_thread(self._load_blocking, model, number)
                self.service.add_model(loaded, drain_timeout_s=self._drain_timeout_s)
            except BaseException:
                self._notify(model, number, "ready" if self.service.is_loaded(model, number) else "unavailable")
                raise
            self._notify(model, number, "ready", time.monotonic() - started)
            logger.info("serving %s@%d (%s)", model, number, loaded.runtime.backend)
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

    def _load_blocking(self, model: str, version: int) -> LoadedModel:
        loaded = load_runtime(
            self.service.repository,
            model,
            version,
            backend=self._backend,
            device=self._device,
            intra_op_threads=self._intra_op_threads,
        )
        loaded.warm_up(self._warmup_batch_sizes)
        return loaded

    def _notify(self, model: str, version: int, state: str, load_seconds: float | None = None) -> None:
        if self._on_state is not None:
            self._on_state(model, version, state, load_seconds)


def _parse_version(version: int | str) -> int:
    try:
        return parse_version(version)
    except (InvalidNameError, TypeError, ValueError) as exc:
        raise InvalidArgumentError("model_version", str(exc)) from None
