"""Python client of caloflow-serve: calorimeter showers over HTTP or gRPC as numpy arrays, streamed, resumable.

Torch-free: it needs numpy, httpx, grpcio, protobuf, h5py and tqdm, and nothing from the training or server
code. The gRPC classes are imported on first use, so an HTTP-only program never loads grpc::

    from caloflow_client import HttpClient
    with HttpClient("http://127.0.0.1:8000") as client:
        result = client.generate(particle="photon", energy_mev=65536.0, count=1000, seed=1)
    result.showers.shape  # (1000, 368) float32, MeV
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from caloflow_client._client import AsyncShowerStream, ShowerStream
from caloflow_client.errors import (
    CaloflowClientError,
    ClientTimeoutError,
    InternalServerError,
    InvalidArgumentError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RequestCancelledError,
    ResourceExhaustedError,
    ResumeMismatchError,
    ServerError,
    TransportError,
    UnauthenticatedError,
    UnavailableError,
)
from caloflow_client.files import read_energies_file
from caloflow_client.http_client import AsyncHttpClient, HttpClient
from caloflow_client.request import GenerateRequest
from caloflow_client.results import GenerationInfo, GenerationResult, ModelInfo, ModelVersionInfo, ShowerChunk

if TYPE_CHECKING:
    from caloflow_client._client import ClientBase
    from caloflow_client.grpc_client import AsyncGrpcClient, GrpcClient

__version__ = "0.1.0"

__all__ = [
    "AsyncGrpcClient",
    "AsyncHttpClient",
    "AsyncShowerStream",
    "CaloflowClientError",
    "ClientTimeoutError",
    "GenerateRequest",
    "GenerationInfo",
    "GenerationResult",
    "GrpcClient",
    "HttpClient",
    "InternalServerError",
    "InvalidArgumentError",
    "InvalidRequestError",
    "ModelInfo",
    "ModelVersionInfo",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "RequestCancelledError",
    "ResourceExhaustedError",
    "ResumeMismatchError",
    "ServerError",
    "ShowerChunk",
    "ShowerStream",
    "TransportError",
    "UnauthenticatedError",
    "UnavailableError",
    "__version__",
    "connect",
    "read_energies_file",
]

_LAZY = {"GrpcClient": "caloflow_client.grpc_client", "AsyncGrpcClient": "caloflow_client.grpc_client"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'caloflow_client' has no attribute {name!r}")


def connect(
    server: str, *, grpc: bool = False, timeout_s: float = 60.0, max_retries: int = 5, backoff_s: float = 0.5
) -> ClientBase:
    """A blocking client of ``server``: ``http://host:port`` or ``host:port`` is HTTP (default port 8000);
    with ``grpc=True``, ``host:port`` is the gRPC server (default port 8001)."""
    if grpc:
        from caloflow_client.grpc_client import GrpcClient

        return GrpcClient(server, timeout_s=timeout_s, max_retries=max_retries, backoff_s=backoff_s)
    return HttpClient(server, timeout_s=timeout_s, max_retries=max_retries, backoff_s=backoff_s)
