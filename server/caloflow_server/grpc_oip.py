"""``inference.GRPCInferenceService``: the Open Inference Protocol (v2) over ``GenerationService``, with the
Triton extensions CMS SONIC and tritonclient call (ModelConfig, ModelStatistics, RepositoryIndex).

A model takes ``INCIDENT_ENERGY`` FP32 ``[n, 1]`` (MeV) and optionally ``SEED`` UINT64 (one value, or one per
shower, all equal; or the request parameter ``seed``), and returns ``SHOWERS`` FP32 ``[n, *shower_shape]``
(the manifest's per-shower shape: ``[n, n_voxels]`` for CaloChallenge datasets, ``[n, 30, 30, 30]`` for the ILD
grid; metadata dims ``[-1, *shower_shape]``, config parameters ``dataset``, ``shower_shape``, ``file_layout``) in
``raw_output_contents``. The noise of row ``k`` is drawn server-side from ``(seed, start_index + k)``
(``start_index``: a request parameter, default 0), exactly as ``caloflow.v1.ShowerService.Generate`` draws it, so
a seeded ModelInfer reproduces the native API's showers for the same energies (bit for bit in deterministic
mode). One response holds every shower: requests over ``max_response_bytes`` are refused with
RESOURCE_EXHAUSTED, pointing to the streaming API.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import grpc
import numpy as np

from caloflow_repo import INPUT_ENERGY, OUTPUT_SHOWERS, RepositoryError
from caloflow_server._proto.inference import grpc_service_pb2 as pb
from caloflow_server._proto.inference import model_config_pb2 as mc
from caloflow_server.errors import (
    CaloflowServerError,
    InvalidArgumentError,
    NotFoundError,
    ResponseTooLargeError,
    UnavailableError,
)
from caloflow_server.grpc_common import Accounting, abort_with
from caloflow_server.runtime import LoadedModel
from caloflow_server.service import GenerateRequest, GenerationService, GenerationStream

__all__ = [
    "EXTENSIONS",
    "INPUT_SEED",
    "InferInputs",
    "InferenceServicer",
    "decode_inputs",
]

PROTOCOL = "grpc_oip"
INPUT_SEED = "SEED"
EXTENSIONS = ("model_configuration", "statistics", "parameters")
PLATFORMS = {"onnx": "onnxruntime_onnx", "fast_onnx": "onnxruntime_onnx", "torchscript": "pytorch_libtorch"}
_INT32_MAX = 2**31 - 1
_COPY_IN_THREAD_BYTES = 1 << 20
_TAKES = f"the model takes {INPUT_ENERGY} (FP32 [n, 1], MeV) and optionally {INPUT_SEED} (UINT64)"
_STREAMING = "stream large counts with caloflow.v1.ShowerService/Generate"


@dataclass(frozen=True)
class InferInputs:
    """A decoded ModelInfer request: energies ``(n,)`` float32 MeV, the seed (None: drawn), where to start."""

    energies_mev: np.ndarray
    seed: int | None
    start_index: int
    allow_extrapolation: bool
    precision: str | None = None


class InferenceServicer:
    """The ``inference.GRPCInferenceService`` handlers (register with ``add_GRPCInferenceServiceServicer_to_server``).

    ``max_count``: the most showers one request may ask for (the service's limit); ``max_response_bytes``: the
    most shower bytes one ModelInfer response may carry. ``model_name`` may also be a dataset or a particle ("photon").
    """

    def __init__(
        self,
        service: GenerationService,
        accounting: Accounting,
        *,
        readiness: Callable[[], bool],
        liveness: Callable[[], bool],
        max_count: int,
        max_response_bytes: int,
        server_name: str,
        server_version: str,
    ) -> None:
        self._service = service
        self._accounting = accounting
        self._readiness = readiness
        self._liveness = liveness
        self._max_count = max_count
        self._max_response_bytes = max_response_bytes
        self._server_name = server_name
        self._server_version = server_version

    # ------------------------------------------------------------------------------------------ health
    async def ServerLive(  # noqa: N802
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._liveness())

    async def ServerReady(  # noqa: N802
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._ready())

    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        try:
            self._resolve(request.name, request.version)
        except (NotFoundError, UnavailableError):
            return pb.ModelReadyResponse(ready=False)
        except CaloflowServerError as exc:
            await abort_with(context, exc)
        return pb.ModelReadyResponse(ready=self._ready())

    def _ready(self) -> bool:
        return not self._service.draining and self._readiness()

    # ---------------------------------------------------------------------------------------- metadata
    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=self._server_name, version=self._server_version, extensions=EXTENSIONS)

    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        try:
            loaded = self._resolve(request.name, request.version)
        except CaloflowServerError as exc:
            await abort_with(context, exc)
        return model_metadata(loaded, self._versions(loaded.model, request.version))

    async def ModelConfig(  # noqa: N802
        self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelConfigResponse:
        try:
            loaded = self._resolve(request.name, request.version)
        except CaloflowServerError as exc:
            await abort_with(context, exc)
        batcher = self._service.batcher(loaded.model, loaded.version)
        config = model_config(loaded, self._versions(loaded.model, ""), self.max_batch_size(loaded))
        config.dynamic_batching.preferred_batch_size.append(batcher.max_batch_showers)
        config.dynamic_batching.max_queue_delay_microseconds = round(batcher.max_delay_ms * 1000)
        config.instance_group[0].count = batcher.max_concurrent_batches
        config.parameters["deterministic"].string_value = str(batcher.deterministic).lower()
        config.parameters["call_shapes"].string_value = ",".join(str(n) for n in batcher.compute_shapes)
        config.parameters["latency_lane_showers"].string_value = str(batcher.latency_lane_showers)
        return pb.ModelConfigResponse(config=config)

    def max_batch_size(self, loaded: LoadedModel) -> int:
        """The most showers one ModelInfer may ask for: the service's limit and the response size limit."""
        per_shower = 4 * loaded.manifest.n_voxels
        return max(1, min(self._max_count, self._max_response_bytes // per_shower, _INT32_MAX))

    async def RepositoryIndex(  # noqa: N802
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        loaded = {(m.model, m.version) for m in self._service.loaded_models}
        entries = sorted(self._repository_entries() | loaded)
        ready = self._ready()
        models = []
        for name, version in entries:
            state, reason = _state((name, version) in loaded, ready)
            if state == "READY" or not request.ready:
                models.append(
                    pb.RepositoryIndexResponse.ModelIndex(name=name, version=str(version), state=state, reason=reason)
                )
        return pb.RepositoryIndexResponse(models=models)

    def _repository_entries(self) -> set[tuple[str, int]]:
        repository = self._service.repository
        try:
            return {(model, version) for model in repository.models() for version in repository.versions(model)}
        except RepositoryError:
            return set()

    async def ModelStatistics(  # noqa: N802
        self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        try:
            models = self._statistics_models(request.name, request.version)
        except CaloflowServerError as exc:
            await abort_with(context, exc)
        return pb.ModelStatisticsResponse(model_stats=[self._statistics(loaded) for loaded in models])

    def _statistics_models(self, name: str, version: str) -> list[LoadedModel]:
        if not name:
            return sorted(self._service.loaded_models, key=lambda m: (m.model, m.version))
        if version:
            return [self._resolve(name, version)]
        model = self._resolve(name, "").model
        return [self._service.resolve(model, v) for v in self._versions(model, "")]

    def _statistics(self, loaded: LoadedModel) -> pb.ModelStatistics:
        counters = self._accounting.counters(loaded.model, loaded.version)
        requests = counters.success_count + counters.fail_count
        return pb.ModelStatistics(
            name=loaded.model,
            version=str(loaded.version),
            last_inference=counters.last_inference_ms,
            inference_count=counters.inference_count,
            execution_count=self._service.batcher(loaded.model, loaded.version).batches_executed,
            inference_stats=pb.InferStatistics(
                success=pb.StatisticDuration(count=counters.success_count, ns=counters.success_ns),
                fail=pb.StatisticDuration(count=counters.fail_count, ns=counters.fail_ns),
                queue=pb.StatisticDuration(count=requests, ns=counters.queue_ns),
                compute_infer=pb.StatisticDuration(count=counters.compute_count, ns=counters.compute_ns),
            ),
        )

    # ------------------------------------------------------------------------------------------- infer
    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        tracker = self._accounting.track(PROTOCOL, "ModelInfer", request.id)
        try:
            loaded = self._resolve(request.model_name, request.model_version)
            stream = self._start(request, loaded)
        except Exception as exc:
            error = oip_error(exc)
            tracker.failed(error)
            await abort_with(context, error)
        tracker.resolved(loaded.model, loaded.version)
        try:
            showers = await collect(stream)
        except asyncio.CancelledError:
            tracker.stats = stream.stats
            tracker.cancelled()
            raise
        except Exception as exc:
            tracker.stats = stream.stats
            tracker.failed(exc)
            await abort_with(context, exc)
        response = infer_response(request, stream, await _to_bytes(showers))
        tracker.stats = stream.stats
        tracker.sent(showers.shape[0], showers.nbytes)
        tracker.ok()
        return response

    def _start(self, request: pb.ModelInferRequest, loaded: LoadedModel) -> GenerationStream:
        inputs = decode_inputs(request)
        check_outputs(request)
        self._check_size(inputs.energies_mev.shape[0], loaded)
        return self._service.generate(
            GenerateRequest(
                model=loaded.model,
                model_version=loaded.version,
                energies_mev=inputs.energies_mev,
                seed=inputs.seed,
                start_index=inputs.start_index,
                allow_extrapolation=inputs.allow_extrapolation,
                precision=inputs.precision,
            )
        )

    def _check_size(self, n: int, loaded: LoadedModel) -> None:
        nbytes = n * 4 * loaded.manifest.n_voxels
        if nbytes > self._max_response_bytes:
            raise ResponseTooLargeError(
                f"{INPUT_ENERGY}: {n} showers of {loaded.manifest.n_voxels} float32 voxels are {nbytes} bytes, over "
                f"the {self._max_response_bytes}-byte limit of one ModelInfer response (at most "
                f"{self.max_batch_size(loaded)} showers): split the request, or {_STREAMING}"
            )

    # ----------------------------------------------------------------------------------------- helpers
    def _resolve(self, name: str, version: str) -> LoadedModel:
        return self._service.resolve(name, version or None)

    def _versions(self, model: str, version: str) -> list[int]:
        if version:
            return [self._resolve(model, version).version]
        return sorted(m.version for m in self._service.loaded_models if m.model == model)


def _state(loaded: bool, ready: bool) -> tuple[str, str]:
    if not loaded:
        return "UNAVAILABLE", "not loaded"
    return ("READY", "") if ready else ("UNAVAILABLE", "server not ready")


# --------------------------------------------------------------------------------------- decoding
def decode_inputs(request: pb.ModelInferRequest) -> InferInputs:
    """Validate and decode the inputs and parameters; ``InvalidArgumentError`` names the tensor or parameter."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgumentError(
            "raw_input_contents", f"has {len(raw)} entries for {len(request.inputs)} inputs (one per input, in order)"
        )
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        if tensor.name in arrays:
            raise InvalidArgumentError(tensor.name, "is given twice")
        arrays[tensor.name] = _decode_input(tensor, raw[i] if raw else None)
    if INPUT_ENERGY not in arrays:
        raise InvalidArgumentError(INPUT_ENERGY, f"is required: {_TAKES}")
    energies = arrays[INPUT_ENERGY]
    return InferInputs(
        energies_mev=energies,
        seed=_seed(arrays.get(INPUT_SEED), energies.shape[0], _int_parameter(request.parameters, "seed")),
        start_index=_int_parameter(request.parameters, "start_index") or 0,
        allow_extrapolation=_bool_parameter(request.parameters, "allow_extrapolation"),
        precision=_str_parameter(request.parameters, "precision"),
    )


def _decode_input(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> np.ndarray:
    if "shared_memory_region" in tensor.parameters:
        raise InvalidArgumentError(tensor.name, "shared-memory inputs are not supported: send raw_input_contents")
    if tensor.name == INPUT_ENERGY:
        shape = list(tensor.shape)
        if len(shape) != 2 or shape[1] != 1 or shape[0] < 1:
            raise InvalidArgumentError(INPUT_ENERGY, f"shape must be [n, 1] with n >= 1 showers, got {shape}")
        return _tensor(tensor, raw, "FP32", "<f4", "fp32_contents")
    if tensor.name == INPUT_SEED:
        return _tensor(tensor, raw, "UINT64", "<u8", "uint64_contents")
    raise InvalidArgumentError("inputs", f"unknown input {tensor.name!r}: {_TAKES}")


def _tensor(
    tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None, datatype: str, dtype: str, contents: str
) -> np.ndarray:
    """The flat values of one input, from its raw bytes or its typed contents."""
    if tensor.datatype != datatype:
        raise InvalidArgumentError(tensor.name, f"datatype must be {datatype}, got {tensor.datatype!r}")
    shape = list(tensor.shape)
    if any(dim < 0 for dim in shape):
        raise InvalidArgumentError(tensor.name, f"shape must not have negative dimensions, got {shape}")
    count = math.prod(shape)
    if raw is not None:
        if tensor.HasField("contents"):
            raise InvalidArgumentError(tensor.name, "give raw_input_contents or contents, not both")
        itemsize = np.dtype(dtype).itemsize
        if len(raw) != count * itemsize:
            raise InvalidArgumentError(tensor.name, f"shape {shape} needs {count * itemsize} raw bytes, got {len(raw)}")
        return np.frombuffer(raw, dtype=dtype)
    values = getattr(tensor.contents, contents)
    if len(values) != count:
        raise InvalidArgumentError(
            tensor.name, f"shape {shape} needs {count} values in contents.{contents}, got {len(values)}"
        )
    return np.asarray(values, dtype=dtype)


def _seed(values: np.ndarray | None, n: int, parameter: int | None) -> int | None:
    """One seed from the SEED input (one value, or one per shower, all equal) and/or the ``seed`` parameter."""
    seed = None
    if values is not None:
        if values.size not in (1, n) or np.any(values != values[0]):
            raise InvalidArgumentError(
                INPUT_SEED, f"must hold one seed, or {n} equal seeds (one per shower), got {values.size} values"
            )
        seed = int(values[0])
    if parameter is not None and seed is not None and parameter != seed:
        raise InvalidArgumentError(INPUT_SEED, f"{seed} differs from the seed parameter {parameter}: give one")
    return seed if seed is not None else parameter


def _int_parameter(parameters: Mapping[str, pb.InferParameter], key: str) -> int | None:
    if key not in parameters:
        return None
    parameter = parameters[key]
    kind = parameter.WhichOneof("parameter_choice")
    if kind == "int64_param":
        return parameter.int64_param
    if kind == "uint64_param":
        return parameter.uint64_param
    if kind == "string_param":
        try:
            return int(parameter.string_param)
        except ValueError:
            pass
    raise InvalidArgumentError(
        f"parameters.{key}", f"must be an integer (int64, uint64 or a decimal string), got {kind}"
    )


def _str_parameter(parameters: Mapping[str, pb.InferParameter], key: str) -> str | None:
    if key not in parameters:
        return None
    parameter = parameters[key]
    if parameter.WhichOneof("parameter_choice") != "string_param":
        raise InvalidArgumentError(f"parameters.{key}", "must be a string")
    return parameter.string_param


def _bool_parameter(parameters: Mapping[str, pb.InferParameter], key: str) -> bool:
    if key not in parameters:
        return False
    parameter = parameters[key]
    if parameter.WhichOneof("parameter_choice") != "bool_param":
        raise InvalidArgumentError(f"parameters.{key}", "must be a bool")
    return parameter.bool_param


def check_outputs(request: pb.ModelInferRequest) -> None:
    for output in request.outputs:
        if output.name != OUTPUT_SHOWERS:
            raise InvalidArgumentError("outputs", f"unknown output {output.name!r}: the model has {OUTPUT_SHOWERS}")
        for unsupported in ("shared_memory_region", "classification"):
            if unsupported in output.parameters:
                raise InvalidArgumentError(OUTPUT_SHOWERS, f"the output parameter {unsupported!r} is not supported")


def oip_error(error: Exception) -> Exception:
    """Rename the service's request fields to the OIP names (``energies_mev[3]`` -> ``INCIDENT_ENERGY[3]``)."""
    if isinstance(error, InvalidArgumentError) and error.field.startswith("energies_mev"):
        return InvalidArgumentError(INPUT_ENERGY + error.field[len("energies_mev") :], error.reason)
    return error


# ---------------------------------------------------------------------------------------- results
async def collect(stream: GenerationStream) -> np.ndarray:
    """Every shower of the stream in one ``(count, n_voxels)`` little-endian float32 array."""
    header = stream.header
    showers = np.empty((header.count, header.n_voxels), dtype="<f4")
    async with stream:
        async for chunk in stream:
            offset = chunk.start_index - header.start_index
            showers[offset : offset + chunk.n_showers] = chunk.showers
    return showers


async def _to_bytes(showers: np.ndarray) -> bytes:
    """The array's bytes; megabytes are copied in a worker thread, off the event loop."""
    if showers.nbytes < _COPY_IN_THREAD_BYTES:
        return showers.tobytes()
    return await asyncio.to_thread(showers.tobytes)


def infer_response(request: pb.ModelInferRequest, stream: GenerationStream, data: bytes) -> pb.ModelInferResponse:
    header, trailer = stream.header, stream.trailer
    return pb.ModelInferResponse(
        model_name=header.model,
        model_version=str(header.version),
        id=request.id,
        parameters={
            "seed": pb.InferParameter(uint64_param=header.seed),
            "start_index": pb.InferParameter(uint64_param=header.start_index),
            "artifact_sha256": pb.InferParameter(string_param=header.sha256),
            "showers_sha256": pb.InferParameter(string_param=trailer.sha256),
            "precision": pb.InferParameter(string_param=header.precision),
        },
        outputs=[
            pb.ModelInferResponse.InferOutputTensor(
                name=OUTPUT_SHOWERS, datatype="FP32", shape=[header.count, *header.shower_shape]
            )
        ],
        raw_output_contents=[data],
    )


# ------------------------------------------------------------------------------------ descriptions
def _tensor_metadata(name: str, datatype: str, shape: list[int]) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(name=name, datatype=datatype, shape=shape)


def model_metadata(loaded: LoadedModel, versions: list[int]) -> pb.ModelMetadataResponse:
    """Inputs and outputs with the batch dimension (-1); SEED too has one, as every input of a batching model."""
    return pb.ModelMetadataResponse(
        name=loaded.model,
        versions=[str(version) for version in versions],
        platform=PLATFORMS.get(loaded.artifact.format, loaded.artifact.format),
        inputs=[_tensor_metadata(INPUT_ENERGY, "FP32", [-1, 1]), _tensor_metadata(INPUT_SEED, "UINT64", [-1, 1])],
        outputs=[_tensor_metadata(OUTPUT_SHOWERS, "FP32", [-1, *loaded.manifest.shower_shape])],
    )


def model_config(loaded: LoadedModel, versions: list[int], max_batch_size: int) -> mc.ModelConfig:
    """Triton's view of the model (dims without the batch dimension); the caller adds the batcher's settings."""
    manifest = loaded.manifest
    device = loaded.runtime.device
    gpu = device.startswith("cuda")
    low, high = manifest.energy_range_mev
    parameters = {
        "particle": manifest.particle,
        "dataset": manifest.dataset,
        "shower_shape": ",".join(str(n) for n in manifest.shower_shape),
        "file_layout": manifest.file_layout,
        "geometry_kind": manifest.geometry_kind,
        "n_voxels": str(manifest.n_voxels),
        "noise_dim": str(manifest.noise_dim),
        "energy_range_mev": f"{low:g},{high:g}",
        "artifact_sha256": loaded.sha256,
        "standin": str(manifest.standin).lower(),
        "device": device,
    }
    return mc.ModelConfig(
        name=loaded.model,
        platform=PLATFORMS.get(loaded.artifact.format, loaded.artifact.format),
        backend="caloflow",
        version_policy=mc.ModelVersionPolicy(specific=mc.ModelVersionPolicy.Specific(versions=versions)),
        max_batch_size=max_batch_size,
        input=[
            mc.ModelInput(name=INPUT_ENERGY, data_type=mc.TYPE_FP32, dims=[1]),
            mc.ModelInput(name=INPUT_SEED, data_type=mc.TYPE_UINT64, dims=[1], optional=True),
        ],
        output=[mc.ModelOutput(name=OUTPUT_SHOWERS, data_type=mc.TYPE_FP32, dims=list(manifest.shower_shape))],
        instance_group=[
            mc.ModelInstanceGroup(
                name=f"{loaded.model}_{'gpu' if gpu else 'cpu'}",
                kind=mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU,
                count=1,
                gpus=[int(device.partition(":")[2] or 0)] if gpu else [],
            )
        ],
        default_model_filename=loaded.artifact.filename,
        dynamic_batching=mc.ModelDynamicBatching(),
        parameters={key: mc.ModelParameter(string_value=value) for key, value in parameters.items()},
    )
