"""Open Inference Protocol v2 over HTTP, with the Triton extensions clients depend on.

Routes: ``GET /v2`` (server metadata), ``GET /v2/models/{m}[/versions/{v}]`` (model metadata), ``.../ready``,
``.../config`` (Triton model configuration, with ``max_batch_size``), ``POST .../infer`` (JSON tensors and the
binary tensor data extension), ``POST /v2/repository/index``, and model control (Triton's repository
extension, plus a default-version switch): ``POST /v2/repository/models/{m}/load|unload`` and
``POST /v2/repository/models/{m}/versions/{v}/default``, which need ``Authorization: Bearer <admin token>`` and
answer 403 while no token is configured. ``GET /v2/models/{m}[/versions/{v}]/quality`` (an extension) answers the
loaded version's ``quality.json`` byte for byte, verified against its ``quality.sha256`` (ETag: that sha256;
``X-Standin: true`` for a model trained on stand-in data), 404 naming ``quality`` when the version has none.

The served model, whatever the artifact's own inputs: ``INCIDENT_ENERGY`` FP32 ``[-1, 1]`` (MeV) -> ``SHOWERS``
FP32 ``[-1, *shower_shape]`` (MeV; the manifest's per-shower shape: ``[-1, n_voxels]`` for CaloChallenge
datasets, ``[-1, 30, 30, 30]`` for the ILD grid), the config's parameters naming ``dataset``, ``shower_shape``,
``file_layout`` and ``geometry_kind``; optional ``SEED`` UINT64 ``[1]`` as an input or the request parameter ``seed``
(drawn by the server when absent, returned in the response parameters); request parameters ``start_index``
and ``allow_extrapolation``. Row ``k`` of a request with seed ``s`` is shower ``start_index + k`` of the native
API's ``(s, start_index)`` sequence: seeded OIP and ``/generate`` answers agree.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from caloflow_repo import INPUT_ENERGY, OUTPUT_SHOWERS, ChecksumError, QualityNotFoundError, RepositoryError
from caloflow_server.app import ModelControl, ServerState, check_model_name
from caloflow_server.batcher import Batcher
from caloflow_server.errors import (
    ArtifactIntegrityError,
    CaloflowServerError,
    InvalidArgumentError,
    NotFoundError,
    UnknownModelError,
    status_for,
)
from caloflow_server.http_common import TrackedGeneration, bearer_token_matches, error_response, request_id_of
from caloflow_server.metrics import RequestObserver
from caloflow_server.runtime import LoadedModel
from caloflow_server.service import GenerateRequest, GenerationService, StreamHeader

__all__ = ["EXTENSIONS", "INPUT_SEED", "InferRequest", "build_oip_router", "parse_infer_request"]

logger = logging.getLogger(__name__)

INPUT_SEED = "SEED"
EXTENSIONS = ("binary_tensor_data", "model_configuration", "model_repository")
_HEADER_LENGTH = "inference-header-content-length"
_PLATFORMS = {
    "onnx": ("onnxruntime_onnx", "onnxruntime"),
    "fast_onnx": ("onnxruntime_onnx", "onnxruntime"),
    "torchscript": ("pytorch_libtorch", "pytorch"),
    "torch_export": ("pytorch_aotinductor", "aoti"),
    "fast_torch_export": ("pytorch_aotinductor", "aoti"),
}
_DTYPES: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "UINT64": np.dtype("<u8")}


@dataclass(frozen=True)
class InferRequest:
    """A parsed OIP infer request: the energies (one per row), the seed (None: drawn), where the rows start in the
    seed's sequence, and whether the output goes back as binary data."""

    id: str | None
    energies_mev: np.ndarray
    seed: int | None
    start_index: int
    allow_extrapolation: bool
    binary_output: bool
    precision: str | None = None


# --------------------------------------------------------------------------------------------- parsing
def parse_infer_request(body: bytes, header_length: str | None, max_batch_size: int) -> InferRequest:
    """Parse an infer body (JSON, or JSON + binary tensors); ``InvalidArgumentError`` names the bad part."""
    if header_length is not None and header_length.strip() == "0":  # "raw binary request": one input, raw
        energies = _decode(INPUT_ENERGY, "FP32", body)
        return InferRequest(None, _check_batch(energies, max_batch_size), None, 0, False, True)
    document, binary = _split(body, header_length)
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidArgumentError("inputs", "must be a non-empty list of tensors")
    tensors = _read_inputs(inputs, binary)
    if INPUT_ENERGY not in tensors:
        raise InvalidArgumentError("inputs", f"missing the input {INPUT_ENERGY} (FP32 [-1, 1], MeV)")
    parameters = _parameters(document.get("parameters"), "parameters")
    energies = _check_batch(tensors[INPUT_ENERGY].reshape(-1), max_batch_size)
    return InferRequest(
        _request_id(document.get("id")),
        energies,
        _seed(tensors.get(INPUT_SEED), parameters.get("seed")),
        _int_parameter(parameters, "start_index", 0),
        _bool_parameter(parameters, "allow_extrapolation"),
        _binary_output(document.get("outputs"), parameters),
        _str_parameter(parameters, "precision"),
    )


def _split(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    length = len(body)
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise InvalidArgumentError("Inference-Header-Content-Length", "must be an integer") from None
        if not 0 < length <= len(body):
            raise InvalidArgumentError("Inference-Header-Content-Length", f"must be in [1, {len(body)}], got {length}")
    try:
        document = json.loads(body[:length])
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgumentError("", f"malformed JSON inference header: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidArgumentError("", "the inference header must be a JSON object")
    return document, memoryview(body)[length:]


def _read_inputs(inputs: list[Any], binary: memoryview) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for index, tensor in enumerate(inputs):
        field = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            raise InvalidArgumentError(field, "must be a tensor object")
        name = tensor.get("name")
        if name not in (INPUT_ENERGY, INPUT_SEED) or name in tensors:
            raise InvalidArgumentError(f"{field}.name", f"must be {INPUT_ENERGY} or {INPUT_SEED} once, got {name!r}")
        datatype = "FP32" if name == INPUT_ENERGY else "UINT64"
        if tensor.get("datatype") != datatype:
            raise InvalidArgumentError(f"{field}.datatype", f"{name} is {datatype}, got {tensor.get('datatype')!r}")
        shape = _shape(tensor.get("shape"), f"{field}.shape")
        size = _parameters(tensor.get("parameters"), f"{field}.parameters").get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= len(binary) - offset:
                raise InvalidArgumentError(f"{field}.parameters.binary_data_size", f"invalid size {size!r}")
            values = _decode(name, datatype, binary[offset : offset + size])
            offset += size
        else:
            values = _from_json(name, datatype, tensor.get("data"), f"{field}.data")
        if values.size != int(np.prod(shape)):
            raise InvalidArgumentError(field, f"shape {shape} holds {int(np.prod(shape))} values, got {values.size}")
        tensors[name] = values.reshape(shape)
    if offset != len(binary):
        raise InvalidArgumentError("binary_data_size", f"{len(binary) - offset} bytes of binary data are unclaimed")
    return tensors


def _shape(value: Any, field: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        raise InvalidArgumentError(field, "must be a list of integers")
    if any(d < 0 for d in value) or len(value) > 2:
        raise InvalidArgumentError(field, f"must have 1 or 2 non-negative dimensions, got {value}")
    return list(value)


def _decode(name: str, datatype: str, data: bytes | memoryview) -> np.ndarray:
    dtype = _DTYPES[datatype]
    if len(data) % dtype.itemsize:
        raise InvalidArgumentError(name, f"{len(data)} bytes are not a whole number of {datatype} values")
    values: np.ndarray = np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="))
    return values


def _from_json(name: str, datatype: str, data: Any, field: str) -> np.ndarray:
    if not isinstance(data, list):
        raise InvalidArgumentError(field, f"{name} needs 'data' (a list) or binary data")
    flat = _flatten(data, field)
    if datatype == "UINT64":
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64 for v in flat):
            raise InvalidArgumentError(field, "must hold unsigned 64-bit integers")
        return np.array(flat, dtype=np.uint64)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
        raise InvalidArgumentError(field, "must hold numbers")
    return np.array(flat, dtype=np.float32)


def _flatten(data: list[Any], field: str, depth: int = 0) -> list[Any]:
    if depth > 2:
        raise InvalidArgumentError(field, "is nested too deeply")
    flat: list[Any] = []
    for item in data:
        flat += _flatten(item, field, depth + 1) if isinstance(item, list) else [item]
    return flat


def _check_batch(energies: np.ndarray, max_batch_size: int) -> np.ndarray:
    if not 1 <= energies.size <= max_batch_size:
        raise InvalidArgumentError(INPUT_ENERGY, f"batch size must be in [1, {max_batch_size}], got {energies.size}")
    return energies


def _parameters(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgumentError(field, "must be an object")
    return value


def _request_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 256:
        raise InvalidArgumentError("id", "must be a string of at most 256 characters")
    return value


def _seed(tensor: np.ndarray | None, parameter: Any) -> int | None:
    if tensor is not None and parameter is not None:
        raise InvalidArgumentError(INPUT_SEED, "give the seed as the SEED input or the 'seed' parameter, not both")
    if tensor is not None:
        values = tensor.reshape(-1)
        if values.size == 0 or not np.all(values == values[0]):
            raise InvalidArgumentError(INPUT_SEED, "must hold one value (or the same value in every row)")
        return int(values[0])
    if parameter is None:
        return None
    if isinstance(parameter, bool) or not isinstance(parameter, int):
        raise InvalidArgumentError("parameters.seed", f"must be an unsigned 64-bit integer, got {parameter!r}")
    return parameter


def _int_parameter(parameters: dict[str, Any], name: str, default: int) -> int:
    value = parameters.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"parameters.{name}", f"must be an integer, got {value!r}")
    return value


def _str_parameter(parameters: dict[str, Any], name: str) -> str | None:
    value = parameters.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidArgumentError(f"parameters.{name}", f"must be a string, got {value!r}")
    return value


def _bool_parameter(parameters: dict[str, Any], name: str) -> bool:
    value = parameters.get(name, False)
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"parameters.{name}", f"must be true or false, got {value!r}")
    return value


def _binary_output(outputs: Any, parameters: dict[str, Any]) -> bool:
    binary = _bool_parameter(parameters, "binary_data_output")
    if outputs is None:
        return binary
    if not isinstance(outputs, list):
        raise InvalidArgumentError("outputs", "must be a list")
    for index, output in enumerate(outputs):
        if not isinstance(output, dict) or output.get("name") != OUTPUT_SHOWERS:
            raise InvalidArgumentError(f"outputs[{index}].name", f"the only output is {OUTPUT_SHOWERS}")
        binary = _bool_parameter(_parameters(output.get("parameters"), f"outputs[{index}]"), "binary_data") or binary
    return binary


# --------------------------------------------------------------------------------------------- documents
def _platform(loaded: LoadedModel) -> tuple[str, str]:
    return _PLATFORMS.get(loaded.artifact.format, (loaded.artifact.format, loaded.artifact.format))


def _metadata(name: str, versions: list[LoadedModel]) -> dict[str, Any]:
    loaded = versions[-1]
    return {
        "name": name,
        "versions": [str(v.version) for v in versions],
        "platform": _platform(loaded)[0],
        "inputs": [
            {"name": INPUT_ENERGY, "datatype": "FP32", "shape": [-1, 1]},
            {"name": INPUT_SEED, "datatype": "UINT64", "shape": [1]},
        ],
        "outputs": [{"name": OUTPUT_SHOWERS, "datatype": "FP32", "shape": [-1, *loaded.manifest.shower_shape]}],
    }


def _config(loaded: LoadedModel, max_batch_size: int, batcher: Batcher) -> dict[str, Any]:
    manifest = loaded.manifest
    platform, backend = _platform(loaded)
    low, high = manifest.energy_range_mev
    return {
        "name": loaded.model,
        "platform": platform,
        "backend": backend,
        "version_policy": {"specific": {"versions": [loaded.version]}},
        "max_batch_size": max_batch_size,
        "input": [
            {"name": INPUT_ENERGY, "data_type": "TYPE_FP32", "dims": [1], "optional": False},
            {"name": INPUT_SEED, "data_type": "TYPE_UINT64", "dims": [1], "optional": True},
        ],
        "output": [{"name": OUTPUT_SHOWERS, "data_type": "TYPE_FP32", "dims": list(manifest.shower_shape)}],
        "dynamic_batching": {"max_queue_delay_microseconds": round(batcher.max_delay_ms * 1000)},
        "parameters": {
            key: {"string_value": str(value)}
            for key, value in (
                ("particle", manifest.particle),
                ("dataset", manifest.dataset),
                ("shower_shape", ",".join(str(n) for n in manifest.shower_shape)),
                ("file_layout", manifest.file_layout),
                ("geometry_kind", manifest.geometry_kind),
                ("n_voxels", manifest.n_voxels),
                ("energy_range_mev", f"{low},{high}"),
                ("sha256", loaded.sha256),
                ("artifact", loaded.artifact.filename),
                ("standin", manifest.standin),
                ("deterministic", str(batcher.deterministic).lower()),
                ("call_shapes", ",".join(str(n) for n in batcher.compute_shapes)),
                ("latency_lane_showers", batcher.latency_lane_showers),
            )
        },
    }


# --------------------------------------------------------------------------------------------- routes
def build_oip_router(
    service: GenerationService,
    *,
    state: ServerState,
    control: ModelControl | None,
    observer: RequestObserver,
    max_batch_size: int,
    admin_token: str | None,
    server_version: str,
) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["oip"])

    def resolve(model: str, version: str | None) -> LoadedModel:
        check_model_name(model)
        loaded = service.resolve(model, version)
        if loaded.model != model:  # a particle name, which resolve() also accepts: not an OIP model name
            raise UnknownModelError(f"no model {model!r}", field="model")
        return loaded

    def versions_of(model: str) -> list[LoadedModel]:
        return sorted((m for m in service.loaded_models if m.model == model), key=lambda m: m.version)

    @router.get("")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "caloflow", "version": server_version, "extensions": list(EXTENSIONS)}

    @router.get("/models/{model}")
    @router.get("/models/{model}/versions/{version}")
    async def model_metadata(model: str, version: str | None = None) -> dict[str, Any]:
        loaded = resolve(model, version)
        return _metadata(model, versions_of(model) if version is None else [loaded])

    @router.get("/models/{model}/ready")
    @router.get("/models/{model}/versions/{version}/ready")
    async def model_ready(model: str, version: str | None = None) -> JSONResponse:
        try:
            loaded = resolve(model, version)
        except CaloflowServerError as exc:
            if status_for(exc).http_status != 503:
                raise
            return JSONResponse({"name": model, "version": version or "", "ready": False}, status_code=503)
        ready = state.is_ready()
        document = {"name": model, "version": str(loaded.version), "ready": ready}
        return JSONResponse(document, status_code=200 if ready else 503)

    @router.get("/models/{model}/config")
    @router.get("/models/{model}/versions/{version}/config")
    async def model_config(model: str, version: str | None = None) -> dict[str, Any]:
        loaded = resolve(model, version)
        return _config(loaded, max_batch_size, service.batcher(loaded.model, loaded.version))

    @router.get("/models/{model}/quality")
    @router.get("/models/{model}/versions/{version}/quality")
    async def model_quality(model: str, version: str | None = None) -> Response:
        loaded = resolve(model, version)
        data, digest = _quality(service, loaded)
        headers = {"ETag": f'"{digest}"', "X-Standin": str(loaded.manifest.standin).lower()}
        return Response(content=data, media_type="application/json", headers=headers)

    @router.post("/models/{model}/infer")
    @router.post("/models/{model}/versions/{version}/infer")
    async def infer(request: Request, model: str, version: str | None = None) -> Response:
        started = time.perf_counter()
        request_id = request_id_of(request)
        labels = ("", "")
        try:
            loaded = resolve(model, version)
            labels = (loaded.model, str(loaded.version))
            parsed = parse_infer_request(await request.body(), request.headers.get(_HEADER_LENGTH), max_batch_size)
            stream = service.generate(
                GenerateRequest(
                    model=loaded.model,
                    model_version=loaded.version,
                    energies_mev=parsed.energies_mev,
                    seed=parsed.seed,
                    start_index=parsed.start_index,
                    allow_extrapolation=parsed.allow_extrapolation,
                    chunk_showers=int(parsed.energies_mev.size),
                    precision=parsed.precision,
                )
            )
        except CaloflowServerError as exc:
            observer.request_rejected("oip", status_for(exc).reason, *labels)
            return error_response(_oip_field(exc), {"X-Request-Id": request_id})
        call = TrackedGeneration(stream, request_id, observer, "oip", started)
        try:
            _, showers = await call.collect()
        except Exception as exc:
            return error_response(exc, {"X-Request-Id": request_id})
        finally:
            await call.close()
        shaped = showers.reshape(-1, *stream.header.shower_shape)
        return _infer_response(parsed, stream.header, shaped)

    @router.post("/repository/index")
    async def repository_index(request: Request) -> list[dict[str, Any]]:
        ready_only = _json_object(await request.body()).get("ready", False) is True
        loaded = {(m.model, m.version) for m in service.loaded_models}
        try:
            entries = [
                (model, version)
                for model in service.repository.models()
                for version in service.repository.versions(model)
            ]
        except RepositoryError as exc:
            raise CaloflowServerError(f"cannot read the model repository: {exc}") from None
        index = [
            {"name": model, "version": str(version), "state": "READY"}
            if (model, version) in loaded
            else {"name": model, "version": str(version), "state": "UNAVAILABLE", "reason": "not loaded"}
            for model, version in entries
        ]
        return [entry for entry in index if entry["state"] == "READY"] if ready_only else index

    def authorize(request: Request) -> ModelControl:
        if admin_token is None or control is None:
            raise HTTPException(403, "model control is disabled: the server has no admin token (CALOFLOW_ADMIN_TOKEN)")
        if not bearer_token_matches(request, admin_token):
            raise HTTPException(
                401, "model control needs 'Authorization: Bearer <admin token>'", {"WWW-Authenticate": "Bearer"}
            )
        return control

    @router.post("/repository/models/{model}/load")
    async def load(request: Request, model: str) -> JSONResponse:
        ctrl = authorize(request)
        parameters = _parameters(_json_object(await request.body()).get("parameters"), "parameters")
        unsupported = sorted(set(parameters) - {"version"})
        if unsupported:
            raise InvalidArgumentError(
                f"parameters.{unsupported[0]}", "not supported: models load only from the verified repository"
            )
        loaded = await ctrl.load(model, parameters.get("version"))
        return JSONResponse({"name": loaded.model, "version": str(loaded.version), "state": "READY"})

    @router.post("/repository/models/{model}/unload")
    async def unload(request: Request, model: str) -> JSONResponse:
        ctrl = authorize(request)
        parameters = _parameters(_json_object(await request.body()).get("parameters"), "parameters")
        versions = await ctrl.unload(model, parameters.get("version"))
        return JSONResponse({"name": model, "versions": [str(v) for v in versions], "state": "UNAVAILABLE"})

    @router.post("/repository/models/{model}/versions/{version}/default")
    async def set_default(request: Request, model: str, version: str) -> JSONResponse:
        ctrl = authorize(request)
        number = ctrl.set_default(model, version)
        return JSONResponse({"name": model, "default_version": str(number)})

    return router


def _quality(service: GenerationService, loaded: LoadedModel) -> tuple[bytes, str]:
    """The version's verified quality report; 404 without one, 500 when it fails its checksum."""
    try:
        return service.repository.quality(loaded.model, loaded.version)
    except QualityNotFoundError:
        raise NotFoundError(
            f"model {loaded.model!r} version {loaded.version} has no quality report (quality.json)", field="quality"
        ) from None
    except ChecksumError as exc:
        raise ArtifactIntegrityError(f"quality report of {loaded.model}@{loaded.version}: {exc}") from None
    except RepositoryError as exc:
        raise CaloflowServerError(f"cannot read the quality report of {loaded.model}@{loaded.version}: {exc}") from None


def _oip_field(error: CaloflowServerError) -> CaloflowServerError:
    """The service names per-shower energies ``energies_mev[k]``; over OIP they are rows of INCIDENT_ENERGY."""
    if isinstance(error, InvalidArgumentError) and error.field.startswith("energies_mev"):
        return InvalidArgumentError(INPUT_ENERGY + error.field.removeprefix("energies_mev"), error.reason)
    return error


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgumentError("", f"malformed JSON body: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidArgumentError("", "the body must be a JSON object")
    return document


def _infer_response(parsed: InferRequest, header: StreamHeader, showers: np.ndarray) -> Response:
    output: dict[str, Any] = {"name": OUTPUT_SHOWERS, "datatype": "FP32", "shape": list(showers.shape)}
    document: dict[str, Any] = {
        "model_name": header.model,
        "model_version": str(header.version),
        "parameters": {"seed": header.seed, "start_index": parsed.start_index, "precision": header.precision},
        "outputs": [output],
    }
    if parsed.id is not None:
        document["id"] = parsed.id
    if not parsed.binary_output:
        output["data"] = showers.reshape(-1).tolist()
        return Response(json.dumps(document, separators=(",", ":")), media_type="application/json")
    raw = np.ascontiguousarray(showers, dtype="<f4").tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    prefix = json.dumps(document, separators=(",", ":")).encode()
    return Response(
        prefix + raw,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(prefix))},
    )
