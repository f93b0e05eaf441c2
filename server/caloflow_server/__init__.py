"""caloflow_server: the protocol-neutral core of the CaloFlow shower-generation server.

Layers, imports pointing one way: ``service`` (requests, validation, streams) -> ``batcher`` (shower-count
batching) -> ``runtime`` (a verified model on a device) -> ``caloflow_repo`` (the model repository);
``noise`` gives the counter-based latent of every shower and ``errors`` the one error table both transports
read. Nothing here imports the training package or a transport. Nothing is configured at import.
"""

from __future__ import annotations

from caloflow_server.batcher import (
    Batcher,
    BatcherObserver,
    BatchStats,
    EnergySource,
    NullObserver,
    RequestStats,
    ShowerChunk,
    ShowerStream,
    constant_energies,
    listed_energies,
)
from caloflow_server.errors import (
    ERROR_STATUS,
    ArtifactIntegrityError,
    CaloflowServerError,
    DeviceOutOfMemoryError,
    DrainingError,
    ErrorStatus,
    InferenceError,
    InternalError,
    InvalidArgumentError,
    ModelNotLoadedError,
    NonFiniteOutputError,
    NotFoundError,
    QueueFullError,
    RequestCancelledError,
    RuntimeLoadError,
    UnavailableError,
    UnknownModelError,
    UnknownVersionError,
    status_for,
)
from caloflow_server.noise import draw_seed, shower_noise
from caloflow_server.runtime import (
    LoadedModel,
    OnnxRuntimeBackend,
    Runtime,
    TorchScriptBackend,
    check_showers,
    load_runtime,
)
from caloflow_server.service import (
    GenerateRequest,
    GenerationPlan,
    GenerationService,
    GenerationStream,
    StreamHeader,
    StreamTrailer,
)

__all__ = [
    "ERROR_STATUS",
    "ArtifactIntegrityError",
    "BatchStats",
    "Batcher",
    "BatcherObserver",
    "CaloflowServerError",
    "DeviceOutOfMemoryError",
    "DrainingError",
    "EnergySource",
    "ErrorStatus",
    "GenerateRequest",
    "GenerationPlan",
    "GenerationService",
    "GenerationStream",
    "InferenceError",
    "InternalError",
    "InvalidArgumentError",
    "LoadedModel",
    "ModelNotLoadedError",
    "NonFiniteOutputError",
    "NotFoundError",
    "NullObserver",
    "OnnxRuntimeBackend",
    "QueueFullError",
    "RequestCancelledError",
    "RequestStats",
    "Runtime",
    "RuntimeLoadError",
    "ShowerChunk",
    "ShowerStream",
    "StreamHeader",
    "StreamTrailer",
    "TorchScriptBackend",
    "UnavailableError",
    "UnknownModelError",
    "UnknownVersionError",
    "check_showers",
    "constant_energies",
    "draw_seed",
    "listed_energies",
    "load_runtime",
    "shower_noise",
    "status_for",
]
