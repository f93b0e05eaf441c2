"""``caloflow.v1.ShowerService``: the native streaming API over ``GenerationService`` (see proto/caloflow/v1).

Generate: wire request -> ``GenerateRequest`` -> ``GenerationService.generate`` -> header, data chunks, trailer.
Errors before the header end the call with the error table's status; an error after it is sent as a trailer
(status "error", ``next_index``) after the chunks computed before it, then the call ends with the error's
status and ``caloflow-next-index`` in the trailing metadata. Client cancellation or a deadline cancels the
handler task; ``async with stream`` then closes the request, so its unscheduled showers are dropped.
"""

from __future__ import annotations

import asyncio

import grpc
import numpy as np

from caloflow_server._proto.caloflow.v1 import showers_pb2 as pb
from caloflow_server.batcher import ShowerChunk
from caloflow_server.errors import status_for
from caloflow_server.grpc_common import NEXT_INDEX_KEY, Accounting, RequestTracker, abort_with
from caloflow_server.runtime import LoadedModel
from caloflow_server.service import GenerateRequest, GenerationService, GenerationStream, StreamHeader, StreamTrailer

__all__ = ["ShowerServicer", "chunk_message", "generate_request", "header_message", "trailer_message"]

PROTOCOL = "grpc"


class ShowerServicer:
    """The ``caloflow.v1.ShowerService`` handlers (register with ``add_ShowerServiceServicer_to_server``)."""

    def __init__(self, service: GenerationService, accounting: Accounting, max_count: int) -> None:
        self._service = service
        self._accounting = accounting
        self._max_count = max_count

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        tracker = self._accounting.track(PROTOCOL, "Generate")
        try:
            stream = self._service.generate(generate_request(request))
        except Exception as exc:
            tracker.failed(exc)
            await abort_with(context, exc)
        tracker.resolved(stream.header.model, stream.header.version)
        self._accounting.notify("on_stream_open", PROTOCOL)
        try:
            error = await self._send(stream, context, tracker)
        finally:
            self._accounting.notify("on_stream_close", PROTOCOL)
        if error is not None:
            trailer = stream.trailer
            await abort_with(context, error, [(NEXT_INDEX_KEY, str(trailer.next_index))])

    async def _send(
        self, stream: GenerationStream, context: grpc.aio.ServicerContext, tracker: RequestTracker
    ) -> Exception | None:
        """Header, chunks, trailer; the stream's error (after its chunks) is returned, not raised."""
        error: Exception | None = None
        async with stream:
            try:
                await context.write(header_message(stream.header))
                async for chunk in stream:
                    message = chunk_message(chunk)
                    await context.write(message)
                    tracker.sent(chunk.n_showers, len(message.data))
            except asyncio.CancelledError:
                tracker.stats = stream.stats
                tracker.cancelled()
                raise
            except Exception as exc:
                error = exc
        tracker.stats = stream.stats
        try:
            await context.write(trailer_message(stream.trailer, error))
        except asyncio.CancelledError:
            tracker.cancelled()
            raise
        except Exception as exc:
            if error is None:
                tracker.failed(exc)
                raise
            # the client may be gone; the error status still ends the call
        if error is None:
            tracker.ok()
        else:
            tracker.failed(error)
        return error

    async def ListModels(  # noqa: N802
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        by_model: dict[str, list[LoadedModel]] = {}
        for loaded in self._service.loaded_models:
            by_model.setdefault(loaded.model, []).append(loaded)
        return pb.ListModelsResponse(models=[self._model_info(name, by_model[name]) for name in sorted(by_model)])

    def _model_info(self, name: str, versions: list[LoadedModel]) -> pb.ModelInfo:
        default = self._service.resolve(name)
        manifest = default.manifest
        dataset_default = self._service.default_models().get(manifest.dataset) == name
        return pb.ModelInfo(
            name=name,
            particle=manifest.particle,
            default_version=default.version,
            particle_default=dataset_default and bool(manifest.dataset_aliases),
            versions=[self._version_info(loaded) for loaded in sorted(versions, key=lambda m: m.version)],
            dataset=manifest.dataset,
            dataset_aliases=list(manifest.dataset_aliases or ()),
            dataset_default=dataset_default,
            shower_shape=list(manifest.shower_shape),
            file_layout=manifest.file_layout,
        )

    def _version_info(self, loaded: LoadedModel) -> pb.ModelVersionInfo:
        manifest = loaded.manifest
        low, high = manifest.energy_range_mev
        return pb.ModelVersionInfo(
            version=loaded.version,
            artifact_sha256=loaded.sha256,
            backend=loaded.runtime.backend,
            device=loaded.runtime.device,
            n_voxels=manifest.n_voxels,
            noise_dim=manifest.noise_dim,
            energy_min_mev=low,
            energy_max_mev=high,
            standin=manifest.standin,
            description=manifest.description,
            deterministic=self._service.batcher(loaded.model, loaded.version).deterministic,
            max_count=self._max_count,
            precisions=list(loaded.precisions),
            default_precision=loaded.default_precision,
        )


def generate_request(request: pb.GenerateRequest) -> GenerateRequest:
    """The service request of a wire request: unset optional fields become None; validation is the service's."""
    energies = np.asarray(request.energies_mev, dtype=np.float32) if len(request.energies_mev) else None
    return GenerateRequest(
        model=request.model or None,
        particle=request.particle or None,
        dataset=request.dataset or None,
        model_version=request.model_version if request.HasField("model_version") else None,
        energy_mev=request.energy_mev if request.HasField("energy_mev") else None,
        count=request.count if request.HasField("count") else None,
        energies_mev=energies,
        seed=request.seed if request.HasField("seed") else None,
        start_index=request.start_index,
        allow_extrapolation=request.allow_extrapolation,
        chunk_showers=request.chunk_showers or None,
        precision=request.precision or None,
    )


def header_message(header: StreamHeader) -> pb.ShowerChunk:
    return pb.ShowerChunk(
        header=pb.StreamHeader(
            model=header.model,
            version=header.version,
            particle=header.particle,
            artifact_sha256=header.sha256,
            seed=header.seed,
            seed_drawn=header.seed_drawn,
            start_index=header.start_index,
            count=header.count,
            n_voxels=header.n_voxels,
            chunk_showers=header.chunk_showers,
            dtype=header.dtype,
            deterministic=header.deterministic,
            extrapolated=header.extrapolated,
            standin=header.standin,
            energy_mev=header.energy_mev,
            dataset=header.dataset,
            shower_shape=list(header.shower_shape),
            file_layout=header.file_layout,
            geometry_kind=header.geometry_kind,
            precision=header.precision,
        )
    )


def chunk_message(chunk: ShowerChunk) -> pb.ShowerChunk:
    """Showers as raw little-endian float32, row-major ``[n_showers, n_voxels]``."""
    return pb.ShowerChunk(
        data=np.ascontiguousarray(chunk.showers, dtype="<f4").tobytes(),
        start_index=chunk.start_index,
        n_showers=chunk.n_showers,
        incident_energy_mev=chunk.energies_mev.tolist(),
    )


def trailer_message(trailer: StreamTrailer, error: BaseException | None = None) -> pb.ShowerChunk:
    status = "ok" if error is None else "error"
    return pb.ShowerChunk(
        trailer=pb.StreamTrailer(
            status=status,
            showers_sent=trailer.showers_sent,
            next_index=trailer.next_index,
            sha256=trailer.sha256,
            error_code=status_for(error).grpc_code if error is not None else "",
            error_message=str(error) if error is not None else "",
        )
    )
