"""The native gRPC API's messages, transport-free: request -> ``GenerateRequest`` message, ``ShowerChunk``
messages -> events, gRPC statuses -> typed errors, ``ListModels`` -> ``ModelInfo``. Shared by both gRPC clients.

The generated message classes are built from ``proto/`` at install time (``_protogen``); a source checkout
without them generates them on first import (needs grpcio-tools, as the repository's dev install has).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import numpy as np

from caloflow_client._events import DataEvent, Event, HeaderEvent, TrailerEvent
from caloflow_client.errors import CaloflowClientError, ClientTimeoutError, ProtocolError, TransportError, server_error
from caloflow_client.request import GenerateRequest
from caloflow_client.results import GenerationInfo, ModelInfo, ModelVersionInfo

try:
    from caloflow_client._proto import showers_pb2 as pb
except ImportError:  # a checkout before the build step: generate the stubs from proto/ now
    from caloflow_client._protogen import ensure

    ensure()
    from caloflow_client._proto import showers_pb2 as pb

__all__ = ["GENERATE", "LIST_MODELS", "error_from_rpc", "event_of", "model_infos", "pb", "request_message"]

NEXT_INDEX_KEY = "caloflow-next-index"
ERROR_FIELD_KEY = "caloflow-error-field"
_SERVICE = pb.DESCRIPTOR.services_by_name["ShowerService"]
GENERATE = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['Generate'].name}"
LIST_MODELS = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['ListModels'].name}"
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


def request_message(request: GenerateRequest) -> pb.GenerateRequest:
    message = pb.GenerateRequest(
        model=request.model or "",
        particle=request.particle or "",
        dataset=request.dataset or "",
        start_index=request.start_index,
        allow_extrapolation=request.allow_extrapolation,
        chunk_showers=request.chunk_showers or 0,
    )
    if request.model_version is not None:
        message.model_version = str(request.model_version)
    if request.energies_mev is not None:
        message.energies_mev.extend(request.energies_mev.tolist())
    else:
        assert request.energy_mev is not None and request.count is not None
        message.energy_mev = float(request.energy_mev)
        message.count = request.count
    if request.seed is not None:
        message.seed = request.seed
    return message


def info_of(header: pb.StreamHeader, server: str) -> GenerationInfo:
    return GenerationInfo(
        server=server,
        transport="grpc",
        model=header.model,
        version=header.version,
        particle=header.particle,
        artifact_sha256=header.artifact_sha256,
        seed=header.seed,
        seed_drawn=header.seed_drawn,
        start_index=header.start_index,
        count=header.count,
        n_voxels=header.n_voxels,
        chunk_showers=header.chunk_showers,
        deterministic=header.deterministic,
        extrapolated=header.extrapolated,
        standin=header.standin,
        energy_mev=header.energy_mev if header.HasField("energy_mev") else None,
        dataset=header.dataset or f"ds1-{header.particle}",  # a server from before datasets: Dataset 1
        shower_shape=tuple(header.shower_shape) or (header.n_voxels,),
        file_layout=header.file_layout or "calochallenge",
    )


def event_of(message: pb.ShowerChunk, server: str, n_voxels: int | None) -> Event:
    """One stream message as an event; data needs the attempt's ``n_voxels`` (from its header)."""
    marker = message.WhichOneof("marker")
    if marker == "header":
        return HeaderEvent(info_of(message.header, server))
    if marker == "trailer":
        return _trailer(message.trailer)
    if n_voxels is None:
        raise ProtocolError("shower data before the stream header")
    n = message.n_showers
    if len(message.data) != 4 * n * n_voxels or len(message.incident_energy_mev) != n:
        raise ProtocolError(f"data chunk of {n} showers has {len(message.data)} bytes")
    showers = np.frombuffer(message.data, dtype="<f4").reshape(n, n_voxels).astype(np.float32)
    return DataEvent(message.start_index, showers, np.asarray(message.incident_energy_mev, dtype=np.float32))


def _trailer(trailer: pb.StreamTrailer) -> TrailerEvent:
    error = None
    if trailer.status != "ok":
        message = trailer.error_message or f"the stream ended with status {trailer.status!r}"
        error = server_error(trailer.error_code or "UNKNOWN", message, next_index=trailer.next_index)
    return TrailerEvent(trailer.status, trailer.showers_sent, trailer.next_index, trailer.sha256, error)


def error_from_rpc(
    code: grpc.StatusCode | None,
    details: str | None,
    trailing: Sequence[tuple[str, str | bytes]] | None,
    *,
    timed_out: bool = False,
    server: str = "",
) -> CaloflowClientError:
    """The typed error of a failed call: the status code's class, the server's message, field and next index."""
    if timed_out or code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ClientTimeoutError(f"{server}: no answer in time")
    if code == grpc.StatusCode.INTERNAL and details and "RST_STREAM" in details:
        # An HTTP/2 proxy (Envoy) resets the stream when the server behind it dies mid-stream: gRPC reports the
        # reset as INTERNAL, but it is a lost connection, and the stream resumes on another server.
        return TransportError(f"{server}: the stream was reset ({details})")
    metadata = {key: value if isinstance(value, str) else value.decode() for key, value in trailing or ()}
    next_index = metadata.get(NEXT_INDEX_KEY)
    name = code.name if code is not None else "UNKNOWN"
    return server_error(
        name,
        details or name,
        field=metadata.get(ERROR_FIELD_KEY),
        next_index=int(next_index) if next_index is not None else None,
    )


def model_infos(response: pb.ListModelsResponse) -> list[ModelInfo]:
    return [
        ModelInfo(
            name=model.name,
            particle=model.particle,
            default_version=model.default_version,
            versions=tuple(_version(version) for version in model.versions),
            particle_default=model.particle_default,
            dataset=model.dataset or f"ds1-{model.particle}",
            dataset_default=model.dataset_default if model.dataset else model.particle_default,
            shower_shape=tuple(model.shower_shape),
            file_layout=model.file_layout,
        )
        for model in response.models
    ]


def _version(version: pb.ModelVersionInfo) -> ModelVersionInfo:
    return ModelVersionInfo(
        version=version.version,
        artifact_sha256=version.artifact_sha256,
        n_voxels=version.n_voxels,
        energy_min_mev=version.energy_min_mev,
        energy_max_mev=version.energy_max_mev,
        standin=version.standin,
        backend=version.backend,
        device=version.device,
        description=version.description,
        deterministic=version.deterministic,
        max_count=version.max_count,
    )
