"""The server's one configuration object: every option is a field, and also an environment variable ``CALOFLOW_<NAME>``.

Built in ``main()`` (from the environment, then overridden by command-line values), never at import. Components
never see it: ``main`` hands each of them plain typed arguments.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from caloflow_server.malloc import MAX_MMAP_THRESHOLD

__all__ = ["Settings"]

_MiB = 1024 * 1024
# Default showers per batch. On a CPU a model call of 64 showers already runs at ~85 % of the best per-shower
# rate (measured on the photon demo model: 1.15 ms/shower at 64 vs 0.98 at 256 and 1.44 at 1024, one thread),
# and a short batch is what keeps a one-shower request's wait behind a running stream short. A GPU needs
# thousands of rows to be busy.
_CPU_BATCH = 64
_CUDA_BATCH = 8192


class Settings(BaseSettings):
    """Server options; ``CALOFLOW_HTTP_PORT=9000`` sets ``http_port``. Lists are comma-separated in the environment."""

    model_config = SettingsConfigDict(env_prefix="CALOFLOW_", extra="forbid", frozen=True)

    # ------------------------------------------------------------------------------------ models
    repo: Path = Field(Path("model_repo"), description="model repository root")
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="models to load at start, 'name' (its default version) or 'name@version'; empty: every model",
    )
    device: Literal["cpu", "cuda"] = "cpu"
    backend: Literal["auto", "onnx", "torchscript", "aoti"] = "auto"
    compile_cache: Path | None = Field(
        None,
        description="directory of AOTInductor packages compiled here from torch_export artifacts (backend aoti; "
        "with it, auto prefers the compiled program); unset: nothing is compiled",
    )
    intra_op_threads: int | None = Field(
        None, ge=1, description="ONNX Runtime intra-op threads per model call; default: the CPU cores per batch worker"
    )
    warmup_batch_sizes: Annotated[list[int], NoDecode] = Field(
        default_factory=list, description="batch sizes run once before the server is ready; empty: 1 and the max"
    )

    # ------------------------------------------------------------------------------------ network
    host: str = "0.0.0.0"
    http_port: int = Field(8000, ge=0, le=65535)
    grpc_port: int = Field(8001, ge=0, le=65535)
    metrics_port: int = Field(8002, ge=0, le=65535)
    metrics_host: str | None = Field(None, description="default: host")
    grpc_enabled: bool = Field(True, description="serve gRPC (native streaming + OIP) on grpc_port")
    tls_cert: Path | None = Field(None, description="PEM certificate: HTTPS and gRPC over TLS (needs tls_key)")
    tls_key: Path | None = None
    admin_token: SecretStr | None = Field(
        None, description="bearer token of the model-control endpoints; unset: they are disabled"
    )
    max_body_bytes: int = Field(64 * _MiB, ge=1024, description="largest HTTP request body (413 above)")
    grpc_max_message_bytes: int = Field(64 * _MiB, ge=4 * _MiB, description="largest gRPC message, both ways")

    # ------------------------------------------------------------------------------------ requests and batching
    max_count: int = Field(1_000_000, ge=1, description="most showers in one request")
    max_chunk_showers: int = Field(65_536, ge=1)
    chunk_bytes: int = Field(2 * _MiB, ge=1024, description="default stream chunk, in shower bytes")
    json_max_showers: int = Field(1024, ge=1, description="most showers in an application/json answer")
    oip_max_batch_size: int = Field(4096, ge=1, description="max_batch_size of the OIP infer endpoint")
    max_batch_showers: int | None = Field(
        None, ge=1, description=f"showers per model batch; default {_CPU_BATCH} on cpu, {_CUDA_BATCH} on cuda"
    )
    max_delay_ms: float = Field(2.0, ge=0.0)
    max_queue_showers: int = Field(4_194_304, ge=1)
    max_active_requests: int = Field(4096, ge=1)
    max_concurrent_batches: int | None = Field(
        None, ge=1, description="model calls in flight at once; default one per CPU core on cpu, 2 on cuda"
    )
    buffer_chunks: int = Field(2, ge=1)
    deterministic: bool = Field(True, description="fixed model-call shape: bit-identical showers for any batching")
    compute_showers: int | None = Field(None, ge=1, description="model-call rows in deterministic mode")
    shape_buckets: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="smaller call shapes tried in deterministic mode, each served only if its rows' bits verify "
        "at load against the compute_showers-row call; empty: the powers of two below it",
    )
    verify_shape_buckets: bool = Field(True, description="try shape_buckets at load; off: every call is full size")
    latency_lane_showers: int = Field(
        8, ge=0, description="requests of at most this many showers run in their own lane and thread; 0: no lane"
    )
    lane_priority: bool = Field(
        True,
        description="while the latency lane has work, streams run at most max_concurrent_batches - 1 calls (min 1)",
    )

    # ------------------------------------------------------------------------------------ lifecycle
    drain_grace_s: float = Field(
        0.0, ge=0.0, description="after SIGTERM: seconds not-ready but still taking requests (de-registration)"
    )
    drain_timeout_s: float = Field(30.0, ge=0.0, description="after that: seconds in-flight streams may finish")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    malloc_mmap_threshold_bytes: int = Field(
        _MiB,
        ge=0,
        le=MAX_MMAP_THRESHOLD,
        description="glibc: allocations above this size get their own mapping, returned when freed (a fixed "
        "threshold: glibc's dynamic one keeps freed batch buffers in its heaps); 0: leave glibc's default",
    )

    @field_validator("models", "warmup_batch_sizes", "shape_buckets", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        if self.max_count > self.max_queue_showers:
            raise ValueError(f"max_count {self.max_count} exceeds max_queue_showers {self.max_queue_showers}")
        return self

    @property
    def batch_showers(self) -> int:
        """``max_batch_showers``, or the device's default."""
        if self.max_batch_showers is not None:
            return self.max_batch_showers
        return _CUDA_BATCH if self.device == "cuda" else _CPU_BATCH

    @property
    def concurrent_batches(self) -> int:
        """``max_concurrent_batches``, or the default: one model call per CPU core (each on one thread) on cpu,
        two on cuda (one computes while the other's inputs and outputs move)."""
        if self.max_concurrent_batches is not None:
            return self.max_concurrent_batches
        return 2 if self.device == "cuda" else _cpu_cores()

    @property
    def op_threads(self) -> int | None:
        """``intra_op_threads``, or on cpu the cores shared out over the concurrent model calls."""
        if self.intra_op_threads is not None or self.device == "cuda":
            return self.intra_op_threads
        return max(1, _cpu_cores() // self.concurrent_batches)

    @property
    def batcher_options(self) -> dict[str, Any]:
        """The ``Batcher`` keyword arguments."""
        return {
            "max_batch_showers": self.batch_showers,
            "max_delay_ms": self.max_delay_ms,
            "max_queue_showers": self.max_queue_showers,
            "max_active_requests": self.max_active_requests,
            "max_concurrent_batches": self.concurrent_batches,
            "buffer_chunks": self.buffer_chunks,
            "deterministic": self.deterministic,
            "compute_showers": self.compute_showers,
            "latency_lane_showers": self.latency_lane_showers,
            "lane_priority": self.lane_priority,
        }

    @property
    def bucket_candidates(self) -> list[int] | None:
        """The ``shape_buckets`` argument of the service: None when verification is off."""
        return list(self.shape_buckets) if self.verify_shape_buckets else None

    @property
    def admin_token_value(self) -> str | None:
        """The token, or None (admin operations off) when unset or empty: ``CALOFLOW_ADMIN_TOKEN=`` in a compose
        file must not turn model control on with the empty string as its password."""
        token = self.admin_token.get_secret_value() if self.admin_token is not None else ""
        return token or None


def _cpu_cores() -> int:
    """The cores this process may run on (the container's CPU set, not the host's count)."""
    return len(os.sched_getaffinity(0))
