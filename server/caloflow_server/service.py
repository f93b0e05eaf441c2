"""The protocol-neutral generation service: request -> validated plan -> header, chunks, trailer.

Transports (HTTP, gRPC) are thin adapters over ``GenerationService.generate``: they turn wire messages into a
``GenerateRequest``, send ``GenerationStream.header`` first, then every chunk, then ``GenerationStream.trailer``
(also after an error: status, showers sent, ``next_index`` to resume from, and the sha256 of the shower bytes
sent). Errors are ``caloflow_server.errors`` types; ``errors.status_for`` maps them to HTTP and gRPC codes.

Shower indices: a request generates showers ``start_index .. start_index + count - 1``; ``energies_mev[k]`` is
the energy of shower ``start_index + k``. With a seed, shower ``i``'s noise depends only on (seed, i), so a
request resumed at ``start_index = next_index`` continues the same sequence.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from caloflow_repo import DEFAULT_PRECISION, InvalidNameError, Manifest, ModelRepository, RepositoryError, parse_version
from caloflow_server.batcher import (
    Batcher,
    BatcherObserver,
    EnergySource,
    RequestStats,
    ShowerChunk,
    ShowerStream,
    constant_energies,
    listed_energies,
)
from caloflow_server.default_versions import DefaultVersions
from caloflow_server.errors import (
    CaloflowServerError,
    DrainingError,
    InvalidArgumentError,
    ModelNotLoadedError,
    PrecisionNotEnabledError,
    UnknownModelError,
    UnknownVersionError,
    status_for,
)
from caloflow_server.noise import UINT64_MAX, draw_seed
from caloflow_server.runtime import LoadedModel
from caloflow_server.shape_buckets import candidate_buckets, verify_buckets

__all__ = [
    "GenerateRequest",
    "GenerationPlan",
    "GenerationService",
    "GenerationStream",
    "StreamHeader",
    "StreamTrailer",
]

logger = logging.getLogger(__name__)

_MAX_INDEX = 2**63
_HASH_IN_THREAD_BYTES = 1 << 16


@dataclass(frozen=True)
class GenerateRequest:
    """What a client asks for. Give ``model``, ``dataset`` or ``particle`` (a Dataset 1 short form, from the
    manifests' ``dataset_aliases``), and ``energy_mev`` + ``count`` or ``energies_mev``."""

    model: str | None = None
    particle: str | None = None
    dataset: str | None = None
    model_version: int | str | None = None
    energy_mev: float | None = None
    count: int | None = None
    energies_mev: Sequence[float] | np.ndarray | None = None
    seed: int | None = None
    start_index: int = 0
    allow_extrapolation: bool = False
    chunk_showers: int | None = None
    precision: str | None = None  # None: the version's default precision


@dataclass(frozen=True)
class GenerationPlan:
    """A validated request: the model that serves it and every value resolved (the seed drawn if none given)."""

    loaded: LoadedModel
    count: int
    seed: int
    seed_drawn: bool
    start_index: int
    chunk_showers: int
    energy_mev: float | None
    energies_mev: np.ndarray | None
    extrapolated: bool
    precision: str = DEFAULT_PRECISION

    @property
    def energies(self) -> EnergySource:
        if self.energies_mev is not None:
            return listed_energies(self.energies_mev)
        assert self.energy_mev is not None
        return constant_energies(self.energy_mev)


@dataclass(frozen=True)
class StreamHeader:
    """Sent before any shower. ``energies_mev`` is set for the per-shower form, ``energy_mev`` for the other."""

    model: str
    version: int
    particle: str
    dataset: str
    shower_shape: tuple[int, ...]  # one shower's natural shape (the flat rows reshape to it)
    file_layout: str  # the dataset's official HDF5 layout: "calochallenge" or "ild"
    geometry_kind: str
    sha256: str
    seed: int
    seed_drawn: bool
    start_index: int
    count: int
    n_voxels: int
    chunk_showers: int
    energy_mev: float | None
    energies_mev: np.ndarray | None
    deterministic: bool
    extrapolated: bool
    standin: bool  # the model was trained on stand-in data, not Geant4
    dtype: str = "float32-le"
    precision: str = DEFAULT_PRECISION  # the precision mode that computed the showers


@dataclass(frozen=True)
class StreamTrailer:
    """Sent last. ``status``: "ok", "error" or "cancelled"; ``sha256`` of the little-endian float32 shower bytes
    sent (rows in index order); ``next_index``: the first shower index not sent (resume there)."""

    status: str
    showers_sent: int
    next_index: int
    sha256: str
    error: Exception | None = None
    error_code: str | None = None
    stats: RequestStats | None = None


class GenerationStream:
    """``header``, then ``async for chunk in stream``, then ``trailer`` (set once the iteration ended or stopped).

    Iteration raises the request's error after the chunks computed before it; ``trailer`` then says where to
    resume. Leave early with ``aclose()`` or ``async with``: the request's remaining showers are cancelled.
    """

    def __init__(self, header: StreamHeader, showers: ShowerStream) -> None:
        self.header = header
        self._showers = showers
        self._sent = 0
        self._digest = hashlib.sha256()
        self._trailer: StreamTrailer | None = None

    @property
    def trailer(self) -> StreamTrailer:
        if self._trailer is None:
            raise RuntimeError("the trailer exists once the stream has ended or been closed")
        return self._trailer

    @property
    def stats(self) -> RequestStats:
        return self._showers.stats

    def __aiter__(self) -> GenerationStream:
        return self

    async def __anext__(self) -> ShowerChunk:
        if self._trailer is not None:
            raise StopAsyncIteration
        try:
            chunk = await self._showers.__anext__()
        except StopAsyncIteration:
            self._end("ok")
            raise
        except asyncio.CancelledError:
            self._end("cancelled")
            raise
        except Exception as exc:
            self._end("error", exc)
            raise
        await self._hash(chunk.showers)
        self._sent += chunk.n_showers
        return chunk

    async def aclose(self) -> None:
        await self._showers.aclose()
        if self._trailer is None:
            self._end("cancelled")

    async def __aenter__(self) -> GenerationStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _hash(self, showers: np.ndarray) -> None:
        data = np.ascontiguousarray(showers, dtype="<f4").data
        if data.nbytes < _HASH_IN_THREAD_BYTES:
            self._digest.update(data)
        else:  # hashlib releases the GIL: keep megabytes of hashing off the event loop
            await asyncio.get_running_loop().run_in_executor(None, self._digest.update, data)

    def _end(self, status: str, error: Exception | None = None) -> None:
        code = status_for(error).grpc_code if error is not None else None
        self._trailer = StreamTrailer(
            status=status,
            showers_sent=self._sent,
            next_index=self.header.start_index + self._sent,
            sha256=self._digest.hexdigest(),
            error=error,
            error_code=code,
            stats=self._showers.stats,
        )


@dataclass
class _ServedModel:
    loaded: LoadedModel
    batchers: dict[str, Batcher]  # one per precision mode the version serves

    @property
    def batcher(self) -> Batcher:
        return self.batchers[DEFAULT_PRECISION]


@dataclass
class _Limits:
    max_count: int
    max_chunk_showers: int
    chunk_bytes: int


class GenerationService:
    """Validates requests, resolves them to a loaded model version, and streams from that version's batcher.

    ``loaded``: the verified, loaded model versions to serve (one ``Batcher`` each, built with
    ``batcher_options``: ``max_batch_showers``, ``max_delay_ms``, ``deterministic`` ...). ``observer_for``:
    the stats observer of each version's batcher. ``dataset_models``: which model serves a dataset (or its alias,
    a particle) when several do. ``chunk_bytes``: the default chunk size, in shower bytes. Each precision mode a
    version serves (``LoadedModel.precisions``) has its own batcher (``observer_for(loaded, precision)``).
    ``shape_buckets``: the call shapes ``verify_buckets`` tries in deterministic mode (empty: the powers of two
    below the call shape; None: none, every call has the full shape); verified call shapes apply to the default
    precision's batcher only - a reduced-precision batcher always calls the full shape.
    """

    def __init__(
        self,
        repository: ModelRepository,
        loaded: Iterable[LoadedModel] = (),
        *,
        max_count: int = 1_000_000,
        max_chunk_showers: int = 65_536,
        chunk_bytes: int = 2 * 1024 * 1024,
        dataset_models: Mapping[str, str] | None = None,
        observer_for: Callable[[LoadedModel, str], BatcherObserver] | None = None,
        shape_buckets: Sequence[int] | None = None,
        **batcher_options: Any,
    ) -> None:
        self.repository = repository
        self._shape_buckets = None if shape_buckets is None else tuple(shape_buckets)
        self._limits = _Limits(max_count, max_chunk_showers, chunk_bytes)
        self._observer_for = observer_for
        self._batcher_options = batcher_options
        self._served: dict[tuple[str, int], _ServedModel] = {}
        self._default_overrides: dict[str, int] = {}
        self._defaults = DefaultVersions(self.repository)
        self._retiring: set[asyncio.Task[None]] = set()
        for model in loaded:
            self._served[(model.model, model.version)] = self._new_served(model)
        self._dataset_models = dict(dataset_models or {})
        self.draining = False

    @property
    def max_count(self) -> int:
        """The most showers one request may ask for."""
        return self._limits.max_count

    # ----------------------------------------------------------------------------------------- models
    @property
    def loaded_models(self) -> list[LoadedModel]:
        return [served.loaded for served in self._served.values()]

    def is_loaded(self, model: str, version: int) -> bool:
        return (model, version) in self._served

    def verify_buckets(self, loaded: LoadedModel) -> tuple[int, ...]:
        """The call shapes ``loaded`` may use besides the full one, verified on it (blocking: run it off the loop).

        Empty when deterministic mode is off or no candidates are configured."""
        options = self._batcher_options
        if self._shape_buckets is None or not options.get("deterministic", False):
            return ()
        reference = options.get("compute_showers") or options.get("max_batch_showers") or 1024
        candidates = candidate_buckets(reference, self._shape_buckets)
        check = verify_buckets(loaded.runtime, reference, candidates, loaded.manifest.energy_range_mev)
        return check.verified

    def add_model(
        self, loaded: LoadedModel, *, drain_timeout_s: float | None, compute_buckets: Sequence[int] = ()
    ) -> None:
        """Serve ``loaded`` (with the call shapes ``verify_buckets`` gave); a version already served under that
        (model, version) is replaced and drained.

        Must be called on the event loop (a replaced version's batcher drains there in the background)."""
        previous = self._served.get((loaded.model, loaded.version))
        self._served[(loaded.model, loaded.version)] = self._new_served(loaded, compute_buckets)
        if previous is not None:
            for batcher in previous.batchers.values():
                self._retire(batcher, drain_timeout_s)

    def remove_model(self, model: str, version: int, *, drain_timeout_s: float | None) -> LoadedModel:
        """Stop routing new requests to ``model@version``; its open streams drain in the background."""
        served = self._served.pop((model, version), None)
        if served is None:
            raise ModelNotLoadedError(f"{model} version {version} is not loaded")
        if self._default_overrides.get(model) == version:
            del self._default_overrides[model]
        for batcher in served.batchers.values():
            self._retire(batcher, drain_timeout_s)
        return served.loaded

    def set_default_version(self, model: str, version: int) -> None:
        """Route requests naming no version to ``version`` (in memory; the repository's pointer is unchanged)."""
        if (model, version) not in self._served:
            raise ModelNotLoadedError(f"{model} version {version} is not loaded; load it before making it the default")
        self._default_overrides[model] = version

    def default_version(self, model: str) -> int:
        """The version a request naming ``model`` and no version is served by."""
        return self.resolve(model).version

    def _new_served(self, loaded: LoadedModel, compute_buckets: Sequence[int] = ()) -> _ServedModel:
        return _ServedModel(
            loaded,
            {
                mode: self._new_batcher(loaded, mode, compute_buckets if mode == DEFAULT_PRECISION else ())
                for mode in loaded.precisions
            },
        )

    def _new_batcher(self, loaded: LoadedModel, precision: str, compute_buckets: Sequence[int] = ()) -> Batcher:
        observer = self._observer_for(loaded, precision) if self._observer_for is not None else None
        batcher = Batcher(
            loaded.runtime_for(precision), observer=observer, compute_buckets=compute_buckets, **self._batcher_options
        )
        if batcher.max_queue_showers < self.max_count:
            raise ValueError(f"max_count {self.max_count} exceeds the batcher's max_queue_showers")
        return batcher

    def _retire(self, batcher: Batcher, timeout_s: float | None) -> None:
        task = asyncio.get_running_loop().create_task(batcher.aclose(timeout_s), name="caloflow-retire-batcher")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def batcher(self, model: str, version: int) -> Batcher:
        return self._served[(model, version)].batcher

    def resolve(self, name: str, version: int | str | None = None) -> LoadedModel:
        """The loaded version serving a model name, or else a dataset or a dataset alias (a particle)."""
        if not self._is_model_name(name) and self._dataset_of(name) is not None:
            return self._resolve_version(self._model_for_dataset(name, "model"), version)
        return self._resolve_version(name, version)

    def _is_model_name(self, name: str) -> bool:
        return any(model == name for model, _ in self._served)

    def _manifests(self) -> list[Manifest]:
        return [served.loaded.manifest for served in self._served.values()]

    def _dataset_of(self, name: str, manifests: Iterable[Manifest] | None = None) -> str | None:
        """The dataset ``name`` names (itself, or the dataset it is an alias of), among loaded manifests."""
        for manifest in self._manifests() if manifests is None else manifests:
            if name == manifest.dataset or name in (manifest.dataset_aliases or ()):
                return manifest.dataset
        return None

    def default_models(self) -> dict[str, str]:
        """Each served dataset's default model: the one a request naming only the dataset (or its alias) gets."""
        defaults = {}
        for dataset in sorted({m.dataset for m in self._manifests()}):
            try:
                defaults[dataset] = self._model_for_dataset(dataset, "dataset")
            except CaloflowServerError:
                continue  # several models and no configured default: the request must name one
        return defaults

    def _model_for_dataset(self, name: str, field: str) -> str:
        dataset = self._dataset_of(name)
        if dataset is None:
            raise self._unknown_dataset(name, field)
        for key in (name, dataset):
            if key in self._dataset_models:
                return self._dataset_models[key]
        models = sorted({s.loaded.model for s in self._served.values() if s.loaded.manifest.dataset == dataset})
        if len(models) > 1:
            raise InvalidArgumentError(field, f"{dataset} is served by {models}: name the model instead")
        return models[0]

    def _unknown_dataset(self, name: str, field: str) -> CaloflowServerError:
        """404 for a dataset (or alias) some repository model generates but none loaded; 400 for an unknown one."""
        manifests = self._repository_manifests()
        if self._dataset_of(name, manifests) is not None:
            return UnknownModelError(f"no loaded model generates {name} showers", field=field)
        all_manifests = [*manifests, *self._manifests()]
        if field == "particle":
            known = sorted({alias for m in all_manifests for alias in (m.dataset_aliases or ())})
            hint = "" if self._dataset_of(name, all_manifests) else "; other datasets are asked for by 'dataset'"
            return InvalidArgumentError(field, f"no model serves particle {name!r} (particles: {known}){hint}")
        known = sorted({m.dataset for m in all_manifests})
        return InvalidArgumentError(field, f"no model serves dataset {name!r} (datasets: {known})")

    def _repository_manifests(self) -> list[Manifest]:
        manifests = []
        try:
            for model in self.repository.models():
                manifests.append(self.repository.manifest(model))
        except RepositoryError as exc:
            logger.debug("cannot read the repository's manifests: %s", exc)
        return manifests

    def _resolve_version(self, model: str, version: int | str | None) -> LoadedModel:
        loaded = sorted(v for m, v in self._served if m == model)
        if not loaded:
            raise self._not_loaded_model(model)
        if version is None:
            return self._served[(model, self._default_version(model, loaded))].loaded
        number = _parse_version(version)
        if number in loaded:
            return self._served[(model, number)].loaded
        if number in self._repository_versions(model):
            raise ModelNotLoadedError(f"{model} version {number} is in the repository but not loaded")
        raise UnknownVersionError(f"model {model!r} has no version {number} (served: {loaded})", field="model_version")

    def _default_version(self, model: str, loaded: list[int]) -> int:
        override = self._default_overrides.get(model)
        if override is not None and override in loaded:
            return override
        try:
            default = self._defaults.get(model)
        except RepositoryError:
            return loaded[-1]
        return default if default in loaded else loaded[-1]

    def _repository_versions(self, model: str) -> list[int]:
        try:
            return self.repository.versions(model)
        except RepositoryError:
            return []

    def _not_loaded_model(self, model: str) -> CaloflowServerError:
        try:
            in_repository = model in self.repository.models()
        except RepositoryError:
            in_repository = False
        if in_repository:
            return ModelNotLoadedError(f"model {model!r} is in the repository but not loaded")
        served = sorted({m for m, _ in self._served})
        return UnknownModelError(f"no model {model!r} (served: {served})", field="model")

    # ------------------------------------------------------------------------------------- validation
    def validate(self, request: GenerateRequest) -> GenerationPlan:
        """Check every field and resolve the model; ``InvalidArgumentError``/``NotFoundError`` name the field."""
        loaded = self._resolve_request_model(request)
        count, energy, energies = _conditioning(request, self._limits.max_count)
        extrapolated = _check_energy_range(loaded, energy, energies, request.allow_extrapolation)
        seed_drawn = request.seed is None
        seed = draw_seed() if request.seed is None else _check_seed(request.seed)
        start_index = _check_int("start_index", request.start_index, 0, _MAX_INDEX - count)
        chunk = self._chunk_showers(request.chunk_showers, loaded.manifest.n_voxels)
        precision = _check_precision(loaded, request.precision)
        return GenerationPlan(
            loaded, count, seed, seed_drawn, start_index, chunk, energy, energies, extrapolated, precision
        )

    def _resolve_request_model(self, request: GenerateRequest) -> LoadedModel:
        if request.model is None and request.particle is None and request.dataset is None:
            raise InvalidArgumentError("model", "give a model name or a particle, or a dataset")
        particle = None if request.particle is None else _check_str("particle", request.particle)
        dataset = None if request.dataset is None else _check_str("dataset", request.dataset)
        if request.model is not None:
            model = _check_str("model", request.model)
        elif dataset is not None:
            model = self._model_for_dataset(dataset, "dataset")
        else:
            assert particle is not None
            if particle not in {a for m in self._manifests() for a in (m.dataset_aliases or ())}:
                raise self._unknown_dataset(particle, "particle")
            model = self._model_for_dataset(particle, "particle")
        loaded = self._resolve_version(model, request.model_version)
        _check_dataset_matches(loaded, dataset, particle)
        return loaded

    def _chunk_showers(self, requested: int | None, n_voxels: int) -> int:
        if requested is None:
            return max(1, min(self._limits.max_chunk_showers, self._limits.chunk_bytes // (4 * n_voxels)))
        return _check_int("chunk_showers", requested, 1, self._limits.max_chunk_showers)

    # ------------------------------------------------------------------------------------- generation
    def generate(self, request: GenerateRequest) -> GenerationStream:
        """Validate, admit (``QueueFullError`` at once when the batcher is full) and return the stream."""
        if self.draining:
            raise DrainingError("the server is draining and takes no new requests")
        plan = self.validate(request)
        batcher = self._served[(plan.loaded.model, plan.loaded.version)].batchers[plan.precision]
        showers = batcher.stream(
            plan.energies, plan.count, plan.seed, start_index=plan.start_index, chunk_showers=plan.chunk_showers
        )
        logger.debug(
            "request %d: %s@%d %d showers from %d seed %d",
            showers.request_id,
            plan.loaded.model,
            plan.loaded.version,
            plan.count,
            plan.start_index,
            plan.seed,
        )
        return GenerationStream(_header(plan, batcher.deterministic), showers)

    async def aclose(self, timeout_s: float | None = 0.0) -> None:
        """Drain: refuse new requests, let open streams finish for up to ``timeout_s``, then end them with a
        resumable ``DrainingError``."""
        self.draining = True
        batchers = [batcher for served in self._served.values() for batcher in served.batchers.values()]
        await asyncio.gather(*(batcher.aclose(timeout_s) for batcher in batchers))
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)


# ------------------------------------------------------------------------------------------- helpers
def _header(plan: GenerationPlan, deterministic: bool) -> StreamHeader:
    manifest = plan.loaded.manifest
    return StreamHeader(
        model=manifest.model,
        version=manifest.version,
        particle=manifest.particle,
        dataset=manifest.dataset,
        shower_shape=tuple(manifest.shower_shape),
        file_layout=manifest.file_layout,
        geometry_kind=manifest.geometry_kind,
        sha256=plan.loaded.sha256,
        seed=plan.seed,
        seed_drawn=plan.seed_drawn,
        start_index=plan.start_index,
        count=plan.count,
        n_voxels=manifest.n_voxels,
        chunk_showers=plan.chunk_showers,
        energy_mev=plan.energy_mev,
        energies_mev=plan.energies_mev,
        deterministic=deterministic,
        extrapolated=plan.extrapolated,
        standin=manifest.standin,
        precision=plan.precision,
    )


def _check_precision(loaded: LoadedModel, precision: object) -> str:
    """The request's precision mode (the version's default when None); 422 when this version does not serve it."""
    if precision is None:
        return loaded.default_precision
    name = _check_str("precision", precision)
    if name not in loaded.precisions:
        raise PrecisionNotEnabledError(name, loaded.model, loaded.version, loaded.device_class, loaded.precisions)
    return name


def _check_dataset_matches(loaded: LoadedModel, dataset: str | None, particle: str | None) -> None:
    """A request naming a dataset or particle as well as a model must name the model's."""
    manifest = loaded.manifest
    aliases = list(manifest.dataset_aliases or ())
    if dataset is not None and dataset != manifest.dataset and dataset not in aliases:
        raise InvalidArgumentError(
            "dataset", f"model {loaded.model!r} generates {manifest.dataset} showers, not dataset {dataset!r}"
        )
    if particle is not None and particle not in aliases:
        names = f"particle {aliases[0]!r}" if aliases else "no particle (ask by dataset)"
        raise InvalidArgumentError(
            "particle",
            f"model {loaded.model!r} generates {manifest.particle} ({manifest.dataset}), not {particle}: "
            f"it answers to {names}",
        )


def _parse_version(version: int | str) -> int:
    try:
        return parse_version(version)
    except (InvalidNameError, TypeError, ValueError) as exc:
        raise InvalidArgumentError("model_version", str(exc)) from None


def _check_str(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(name, f"must be a non-empty string, got {value!r}")
    return value


def _check_int(name: str, value: object, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgumentError(name, f"must be an integer, got {value!r}")
    number = int(value)
    if not minimum <= number <= maximum:
        raise InvalidArgumentError(name, f"must be in [{minimum}, {maximum}], got {number}")
    return number


def _check_seed(seed: object) -> int:
    return _check_int("seed", seed, 0, UINT64_MAX)


def _check_energy(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(name, f"must be a number (MeV), got {value!r}")
    energy = float(value)
    if not math.isfinite(energy) or energy <= 0.0:
        raise InvalidArgumentError(name, f"must be a finite, positive energy in MeV, got {energy}")
    return energy


def _conditioning(request: GenerateRequest, max_count: int) -> tuple[int, float | None, np.ndarray | None]:
    """(count, energy, energies) from either ``energy_mev`` + ``count`` or ``energies_mev``."""
    homogeneous = request.energy_mev is not None or request.count is not None
    if homogeneous and request.energies_mev is not None:
        field_name = "energy_mev" if request.energy_mev is not None else "count"
        raise InvalidArgumentError(field_name, "give energy_mev and count, or energies_mev, not both")
    if request.energies_mev is not None:
        energies = _check_energies(request.energies_mev, max_count)
        return int(energies.shape[0]), None, energies
    if request.energy_mev is None:
        raise InvalidArgumentError("energy_mev", "give energy_mev and count, or energies_mev")
    if request.count is None:
        raise InvalidArgumentError("count", "is required with energy_mev")
    count = _check_int("count", request.count, 1, max_count)
    return count, _check_energy("energy_mev", request.energy_mev), None


def _check_energies(values: Sequence[float] | np.ndarray, max_count: int) -> np.ndarray:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        raise InvalidArgumentError("energies_mev", f"must be a list of energies in MeV, got {type(values).__name__}")
    if not 1 <= len(values) <= max_count:
        raise InvalidArgumentError("energies_mev", f"must hold 1 to {max_count} energies, got {len(values)}")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 1:
        raise InvalidArgumentError("energies_mev", "must be a flat list of numbers (MeV)")
    bad = np.flatnonzero(~np.isfinite(array) | (array <= 0.0))
    if bad.size:
        index = int(bad[0])
        raise InvalidArgumentError(f"energies_mev[{index}]", f"must be finite and positive, got {array[index]}")
    return array.astype(np.float32)


def _check_energy_range(
    loaded: LoadedModel, energy: float | None, energies: np.ndarray | None, allow_extrapolation: bool
) -> bool:
    """True when some energy lies outside the trained range; InvalidArgumentError then, unless allowed."""
    low, high = loaded.manifest.energy_range_mev
    values = np.array([energy], dtype=np.float64) if energies is None else energies
    outside = np.flatnonzero((values < low) | (values > high))
    if outside.size and not allow_extrapolation:
        index = int(outside[0])
        raise InvalidArgumentError(
            "energy_mev" if energies is None else f"energies_mev[{index}]",
            f"{float(values[index])} MeV is outside the trained range [{low}, {high}] MeV of "
            f"{loaded.model}@{loaded.version} ({loaded.manifest.dataset}; set allow_extrapolation to generate anyway)",
        )
    return bool(outside.size)
