"""The HTTP adapter: a FastAPI app with the native ``POST /generate`` stream and the OIP v2 REST routes.

Thin by design: wire -> ``GenerateRequest`` -> ``GenerationService`` -> wire. Errors become HTTP statuses through
the one table (``errors.status_for``); the body is always ``{"error": "...", "field": "...", "code": "..."}``.
Only HTTP concerns are decided here: content negotiation (406), body size (413), bearer tokens (401/403).

``POST /generate`` answers in the format the ``format`` field or the ``Accept`` header asks for:

* ``application/octet-stream`` (default, ``"format": "framed"``): the framed stream of ``http_framing``, version
  1 (metadata, data frames, and a final status frame, so an error after the first byte is visible and
  resumable; per-shower energies listed in the header, as every client before datasets expects);
* ``application/vnd.caloflow.framed-v2`` (``"format": "framed-v2"``): the framed stream, version 2, each data
  frame carrying its showers' incident energies;
* ``application/x-npy``: a ``.npy`` file of float32 ``(count, *shower_shape)``, rows streamed as generated;
* ``application/json``: one document with the showers as nested lists, for small counts only.

Every answer carries its metadata in headers too (``X-Model-Name``, ``X-Model-Version``, ``X-Model-Sha256``,
``X-Dataset``, ``X-Shower-Shape`` (``30,30,30``), ``X-File-Layout``, ``X-Geometry-Kind``, ``X-Seed``,
``X-Start-Index``, ``X-Count``, ``X-Voxels``, ``X-Dtype``, ``X-Incident-Energy-Mev`` or, when short,
``X-Incident-Energies-Mev``). A client that disconnects stops its generation: the response closes its service
stream, and the batcher drops the request's unscheduled showers. ``GET /models`` lists the loaded models, their
datasets and shapes, and each dataset's default model (``dataset_defaults``), as gRPC ``ListModels`` does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import Receive, Scope, Send

from caloflow_server.app import ModelControl, ServerState
from caloflow_server.errors import CaloflowServerError, InvalidArgumentError, status_for
from caloflow_server.http_common import (
    BodyLimitMiddleware,
    TrackedGeneration,
    error_response,
    install_error_handlers,
    request_id_of,
    validation_error,
)
from caloflow_server.http_framing import (
    FORMAT_VERSION,
    FORMAT_VERSION_PER_FRAME_ENERGIES,
    FrameType,
    data_frame,
    header_document,
    json_frame,
    npy_header,
    preamble,
    status_document,
)
from caloflow_server.http_oip import build_oip_router
from caloflow_server.metrics import NullRequestObserver, RequestObserver
from caloflow_server.noise import UINT64_MAX
from caloflow_server.runtime import LoadedModel
from caloflow_server.service import GenerateRequest, GenerationService, StreamHeader

__all__ = [
    "MEDIA_TYPES",
    "GenerateBody",
    "NotAcceptableError",
    "build_http_app",
    "model_listing",
    "negotiate",
    "stream_headers",
]

logger = logging.getLogger(__name__)

OutputFormat = Literal["framed", "framed-v2", "npy", "json"]
MEDIA_TYPES: dict[str, OutputFormat] = {
    "application/octet-stream": "framed",
    "application/vnd.caloflow.framed-v2": "framed-v2",
    "application/x-npy": "npy",
    "application/json": "json",
}
_CONTENT_TYPE: dict[OutputFormat, str] = {fmt: media for media, fmt in MEDIA_TYPES.items()}
_DEFAULT_FORMAT: OutputFormat = "framed"
_FRAMED_VERSION: dict[OutputFormat, int] = {"framed": FORMAT_VERSION, "framed-v2": FORMAT_VERSION_PER_FRAME_ENERGIES}
_MAX_ENERGY_HEADER_VALUES = 64


_POSITIVE: dict[str, Any] = {"exclusiveMinimum": 0}
_AT_LEAST_1: dict[str, Any] = {"minimum": 1}


class GenerateBody(BaseModel):
    """``POST /generate``: give ``model``, ``dataset`` or ``particle``, and ``energy_mev`` + ``count`` or
    ``energies_mev``.

    Types are checked here; values (ranges, the model's trained energy range, limits) by the service, the same
    checks for every transport (the bounds in the schema document them).
    """

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        title="GenerateRequest",
        json_schema_extra={
            "examples": [
                {"particle": "photon", "energy_mev": 65536.0, "count": 1000, "seed": 1234, "format": "npy"},
                {"model": "caloflow_pion", "energies_mev": [1024.0, 2048.0], "seed": 7, "start_index": 10},
                {"dataset": "ds2-electron", "energy_mev": 50000.0, "count": 100, "format": "framed-v2"},
            ]
        },
    )

    particle: str | None = Field(
        None, description="the model serving that particle (a Dataset 1 short form: the models' dataset_aliases)"
    )
    dataset: str | None = Field(None, description="the model serving that dataset (e.g. ds2-electron, ild-photon)")
    model: str | None = Field(None, description="a model name (instead of dataset or particle)")
    model_version: int | str | None = Field(None, description="default: the model's default version")
    energy_mev: float | None = Field(
        None, description="incident energy of every shower, MeV (with count)", json_schema_extra=_POSITIVE
    )
    count: int | None = Field(None, description="number of showers (with energy_mev)", json_schema_extra=_AT_LEAST_1)
    energies_mev: list[float] | None = Field(None, description="one incident energy per shower, MeV")
    seed: int | None = Field(
        None,
        description="drawn by the server (and returned) when absent",
        json_schema_extra={"minimum": 0, "maximum": UINT64_MAX},
    )
    start_index: int = Field(
        0, description="index of the first shower: resume a stream at its next_index", json_schema_extra={"minimum": 0}
    )
    allow_extrapolation: bool = Field(False, description="allow energies outside the model's trained range")
    chunk_showers: int | None = Field(None, description="showers per streamed chunk", json_schema_extra=_AT_LEAST_1)
    format: OutputFormat | None = Field(None, description="overrides the Accept header")
    precision: str | None = Field(
        None,
        description="precision mode (fp32-strict, tf32, bf16, fp16, int8); absent: the version's default. "
        "A mode without a passing gate record for this server's device class is refused with 422",
    )

    def to_request(self) -> GenerateRequest:
        return GenerateRequest(
            model=self.model,
            particle=self.particle,
            dataset=self.dataset,
            model_version=self.model_version,
            energy_mev=self.energy_mev,
            count=self.count,
            energies_mev=self.energies_mev,
            seed=self.seed,
            start_index=self.start_index,
            allow_extrapolation=self.allow_extrapolation,
            chunk_showers=self.chunk_showers,
            precision=self.precision,
        )

    def showers_asked(self) -> int | None:
        if self.energies_mev is not None:
            return len(self.energies_mev)
        return self.count


class NotAcceptableError(Exception):
    """No supported media type is acceptable (HTTP 406)."""


# --------------------------------------------------------------------------------------------- helpers
def negotiate(accept: str | None, requested: OutputFormat | None) -> OutputFormat:
    """The answer format: ``requested`` if given, else the best media type of ``accept`` (default: framed)."""
    if requested is not None:
        return requested
    if not accept:
        return _DEFAULT_FORMAT
    best: tuple[float, int, OutputFormat] | None = None
    for position, item in enumerate(accept.split(",")):
        media, _, params = item.strip().partition(";")
        quality = _quality(params)
        media = media.strip().lower()
        fmt = MEDIA_TYPES.get(media) or (_DEFAULT_FORMAT if media in ("*/*", "application/*") else None)
        if fmt is not None and quality > 0 and (best is None or (quality, -position) > best[:2]):
            best = (quality, -position, fmt)
    if best is None:
        raise NotAcceptableError(f"cannot answer {accept!r}: choose one of {sorted(MEDIA_TYPES)}")
    return best[2]


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def stream_headers(header: StreamHeader, request_id: str) -> dict[str, str]:
    headers = {
        "X-Request-Id": request_id,
        "X-Model-Name": header.model,
        "X-Model-Version": str(header.version),
        "X-Model-Sha256": header.sha256,
        "X-Particle": header.particle,
        "X-Dataset": header.dataset,
        "X-Shower-Shape": ",".join(str(n) for n in header.shower_shape),
        "X-File-Layout": header.file_layout,
        "X-Geometry-Kind": header.geometry_kind,
        "X-Seed": str(header.seed),
        "X-Start-Index": str(header.start_index),
        "X-Count": str(header.count),
        "X-Voxels": str(header.n_voxels),
        "X-Dtype": header.dtype,
        "X-Chunk-Showers": str(header.chunk_showers),
        "X-Deterministic": str(header.deterministic).lower(),
        "X-Standin": str(header.standin).lower(),
        "X-Extrapolated": str(header.extrapolated).lower(),
        "X-Precision": header.precision,
    }
    if header.energy_mev is not None:
        headers["X-Incident-Energy-Mev"] = repr(float(header.energy_mev))
    elif header.energies_mev is not None and len(header.energies_mev) <= _MAX_ENERGY_HEADER_VALUES:
        values = np.asarray(header.energies_mev, dtype=np.float32).tolist()
        headers["X-Incident-Energies-Mev"] = ",".join(repr(value) for value in values)
    return headers


class StreamAbortedError(Exception):
    """A ``.npy`` stream failed after its first byte: the connection is aborted so the body is visibly cut."""


# --------------------------------------------------------------------------------------------- streaming
class _ShowerResponse(StreamingResponse):
    """A streaming answer that always closes its service stream, whatever ends it (done, error, disconnect)."""

    def __init__(
        self, content: AsyncGenerator[bytes, None], *, on_close: Callable[[], Awaitable[None]], **kwargs: Any
    ) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close
        self._content = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # a disconnect cancels the sending task: close the body and the service stream now, not at GC
            await self._content.aclose()
            await self._on_close()


async def _framed_body(call: TrackedGeneration, version: int) -> AsyncGenerator[bytes, None]:
    stream = call.stream
    per_frame = version == FORMAT_VERSION_PER_FRAME_ENERGIES
    yield preamble(version) + json_frame(FrameType.HEADER, header_document(stream.header, version))
    try:
        async for chunk in stream:
            call.mark_chunk()
            yield data_frame(chunk.start_index, chunk.showers, chunk.energies_mev if per_frame else None)
    except Exception:  # recorded in the trailer, reported in the status frame
        pass
    yield json_frame(FrameType.STATUS, status_document(stream.trailer))


async def _npy_body(call: TrackedGeneration) -> AsyncGenerator[bytes, None]:
    stream = call.stream
    yield npy_header(stream.header.count, stream.header.shower_shape)
    try:
        async for chunk in stream:
            call.mark_chunk()
            yield np.ascontiguousarray(chunk.showers, dtype="<f4").tobytes()
    except Exception as exc:
        sent = stream.trailer.showers_sent
        logger.warning("request %s: .npy stream aborted after %d showers: %s", call.request_id, sent, exc)
        raise StreamAbortedError(f"stream failed after {sent} showers: {exc}") from exc


# --------------------------------------------------------------------------------------------- the app
def _generate_openapi() -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": GenerateBody.model_json_schema()}},
        },
        "responses": {
            "200": {
                "description": "showers: framed stream (version 1 or 2), .npy, or JSON (small counts)",
                "content": {
                    "application/octet-stream": binary,
                    "application/vnd.caloflow.framed-v2": binary,
                    "application/x-npy": binary,
                    "application/json": {"schema": {"type": "object"}},
                },
            },
            **{
                str(code): {"description": text, "content": error}
                for code, text in (
                    (400, "invalid request (the field is named)"),
                    (404, "no such model, version or particle model"),
                    (406, "no acceptable format"),
                    (413, "body too large"),
                    (429, "queue full: retry later"),
                    (500, "internal error"),
                    (503, "not ready, draining, or model not loaded"),
                )
            },
        },
    }


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "field": {"type": "string"},
        "code": {"type": "string"},
        "next_index": {"type": "integer"},
    },
    "required": ["error"],
}


def build_http_app(
    service: GenerationService,
    *,
    state: ServerState,
    control: ModelControl | None = None,
    observer: RequestObserver | None = None,
    max_body_bytes: int = 64 * 1024 * 1024,
    json_max_showers: int = 1024,
    oip_max_batch_size: int = 4096,
    admin_token: str | None = None,
    server_version: str = "0",
) -> FastAPI:
    """The FastAPI app over ``service``. ``control`` and ``admin_token`` enable the model-control endpoints."""
    observer = observer or NullRequestObserver()
    app = FastAPI(
        title="caloflow-serve",
        version=server_version,
        description="Calorimeter-shower generation: native streaming API and the Open Inference Protocol v2.",
    )
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=max_body_bytes)  # type: ignore[arg-type]
    install_error_handlers(app)

    @app.post("/generate", openapi_extra=_generate_openapi(), response_class=Response, tags=["native"])
    async def generate(request: Request) -> Response:
        """Generate showers: a framed binary stream, a streamed .npy, or JSON for small counts."""
        started = time.perf_counter()
        request_id = request_id_of(request)
        body: GenerateBody | None = None
        try:
            body = _parse_generate_body(await request.body())
            fmt = negotiate(request.headers.get("accept"), body.format)
            _check_json_count(fmt, body, json_max_showers)
            stream = service.generate(body.to_request())
        except NotAcceptableError as exc:
            observer.request_rejected("http", "invalid")
            return JSONResponse({"error": str(exc), "field": "Accept", "code": "INVALID_ARGUMENT"}, status_code=406)
        except (CaloflowServerError, ValueError) as exc:
            return _rejected(exc, body, service, observer, request_id)
        generation = TrackedGeneration(stream, request_id, observer, "http", started)
        headers = stream_headers(stream.header, request_id)
        if fmt == "json":
            return await _json_answer(generation, headers)
        observer.stream_opened("http")

        async def on_close() -> None:
            observer.stream_closed("http")
            await generation.close()

        content = _npy_body(generation) if fmt == "npy" else _framed_body(generation, _FRAMED_VERSION[fmt])
        if fmt == "npy":
            n_bytes = len(npy_header(stream.header.count, stream.header.shower_shape))
            headers["Content-Length"] = str(n_bytes + 4 * stream.header.count * stream.header.n_voxels)
        return _ShowerResponse(content, on_close=on_close, media_type=_CONTENT_TYPE[fmt], headers=headers)

    @app.get("/models", tags=["native"])
    async def models() -> dict[str, Any]:
        """The loaded models, their datasets and versions, and each dataset's default model (as gRPC ListModels)."""
        return model_listing(service)

    @app.get("/v2/health/live", tags=["health"])
    async def live() -> JSONResponse:
        return JSONResponse({"live": state.is_live()}, status_code=200 if state.is_live() else 503)

    @app.get("/v2/health/ready", tags=["health"])
    async def ready() -> JSONResponse:
        is_ready = state.is_ready()
        document = {"ready": is_ready, "models_loaded": state.models_loaded, "draining": state.draining}
        return JSONResponse(document, status_code=200 if is_ready else 503)

    app.include_router(
        build_oip_router(
            service,
            state=state,
            control=control,
            observer=observer,
            max_batch_size=oip_max_batch_size,
            admin_token=admin_token,
            server_version=server_version,
        )
    )
    _add_error_schema(app)
    return app


def model_listing(service: GenerationService) -> dict[str, Any]:
    """``GET /models``: ``{"models": [...], "dataset_defaults": {dataset: model}}``; a model's ``dataset_default``
    (and ``particle_default``, for old readers) says whether a request naming only its dataset gets it."""
    defaults = service.default_models()
    by_model: dict[str, list[LoadedModel]] = {}
    for loaded in service.loaded_models:
        by_model.setdefault(loaded.model, []).append(loaded)
    models = []
    for name in sorted(by_model):
        default = service.resolve(name)
        manifest = default.manifest
        is_default = defaults.get(manifest.dataset) == name
        models.append(
            {
                "name": name,
                "particle": manifest.particle,
                "dataset": manifest.dataset,
                "dataset_aliases": list(manifest.dataset_aliases or ()),
                "shower_shape": list(manifest.shower_shape),
                "file_layout": manifest.file_layout,
                "geometry_kind": manifest.geometry_kind,
                "default_version": default.version,
                "dataset_default": is_default,
                "particle_default": is_default and bool(manifest.dataset_aliases),
                "versions": [_version_entry(v) for v in sorted(by_model[name], key=lambda m: m.version)],
            }
        )
    return {"models": models, "dataset_defaults": defaults, "max_count": service.max_count}


def _version_entry(loaded: LoadedModel) -> dict[str, Any]:
    manifest = loaded.manifest
    low, high = manifest.energy_range_mev
    return {
        "version": loaded.version,
        "artifact_sha256": loaded.sha256,
        "backend": loaded.runtime.backend,
        "device": loaded.runtime.device,
        "n_voxels": manifest.n_voxels,
        "noise_dim": manifest.noise_dim,
        "energy_min_mev": low,
        "energy_max_mev": high,
        "standin": manifest.standin,
        "description": manifest.description,
    }


def _parse_generate_body(raw: bytes) -> GenerateBody:
    if not raw.strip():
        raise InvalidArgumentError("", "the request body is empty: send a JSON object")
    try:
        return GenerateBody.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _check_json_count(fmt: OutputFormat, body: GenerateBody, limit: int) -> None:
    asked = body.showers_asked()
    if fmt == "json" and isinstance(asked, int) and asked > limit:
        field = "energies_mev" if body.energies_mev is not None else "count"
        raise InvalidArgumentError(
            field,
            f"{asked} showers is too many for application/json (at most {limit}): "
            "ask for application/x-npy or application/octet-stream",
        )


def _rejected(
    error: Exception, body: GenerateBody | None, service: GenerationService, observer: RequestObserver, request_id: str
) -> JSONResponse:
    model, version = _labels_of(body, service)
    reason = status_for(error).reason
    observer.request_rejected("http", reason, model, version)
    if not isinstance(error, CaloflowServerError):
        logger.exception("request %s: unexpected failure before streaming", request_id)
    else:
        logger.info("request %s http: refused (%s): %s", request_id, reason, error)
    return error_response(error, {"X-Request-Id": request_id})


def _labels_of(body: GenerateBody | None, service: GenerationService) -> tuple[str, str]:
    """The model and version a refused request named, when they resolve (metrics labels); else ("", "")."""
    name = (body.model or body.dataset or body.particle) if body is not None else None
    if body is None or name is None:
        return "", ""
    try:
        loaded = service.resolve(name, body.model_version)
    except (CaloflowServerError, TypeError, ValueError):
        return "", ""
    return loaded.model, str(loaded.version)


async def _json_answer(generation: TrackedGeneration, headers: dict[str, str]) -> Response:
    try:
        energies, showers = await generation.collect()
    except Exception as exc:
        return error_response(exc, {"X-Request-Id": generation.request_id})
    finally:
        await generation.close()
    document = header_document(generation.stream.header)
    document.pop("energies_mev", None)
    document.update(
        incident_energies_mev=energies.tolist(),
        showers=showers.reshape(-1, *generation.stream.header.shower_shape).tolist(),
        status=status_document(generation.stream.trailer),
    )
    return Response(json.dumps(document, separators=(",", ":")), media_type="application/json", headers=headers)


def _add_error_schema(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
