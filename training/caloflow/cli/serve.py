"""``caloflow serve``: run the shower-generation server (HTTP, gRPC and metrics in one process).

The common options are flags here; every other server option is an environment variable ``CALOFLOW_<NAME>``
(``caloflow_server.settings.Settings``; e.g. ``CALOFLOW_ADMIN_TOKEN``, ``CALOFLOW_MAX_BATCH_SHOWERS``). Flags win
over the environment. The server package is imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from caloflow.cli import CLIError

# flag destination -> Settings field
_FIELDS = (
    "repo",
    "models",
    "host",
    "http_port",
    "grpc_port",
    "metrics_port",
    "device",
    "backend",
    "compile_cache",
    "tls_cert",
    "tls_key",
    "drain_timeout_s",
    "deterministic",
    "max_batch_showers",
    "max_delay_ms",
)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="serve the model repository over HTTP (native + OIP v2), gRPC and Prometheus metrics"
    )
    parser.add_argument("--repo", type=Path, help="model repository (default: $CALOFLOW_REPO, else model_repo)")
    parser.add_argument(
        "--models", help="comma-separated NAME or NAME@VERSION to load (default: every model's default version)"
    )
    parser.add_argument("--host", help="listen address (default 0.0.0.0)")
    parser.add_argument("--http-port", type=int, help="HTTP port (default 8000; 0: any free port)")
    parser.add_argument("--grpc-port", type=int, help="gRPC port (default 8001)")
    parser.add_argument("--metrics-port", type=int, help="Prometheus metrics port (default 8002)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default cpu")
    parser.add_argument(
        "--backend",
        choices=("auto", "onnx", "torchscript", "aoti"),
        help="default auto: the compiled program (with --compile-cache), else model.fast.onnx, else model.onnx, "
        "else TorchScript (onnx: either ONNX file, fast first; aoti: model.pt2 compiled for this CPU)",
    )
    parser.add_argument(
        "--compile-cache", type=Path, help="directory of AOTInductor packages compiled here (default: none compiled)"
    )
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate: HTTPS and gRPC over TLS (with --tls-key)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key")
    parser.add_argument(
        "--drain-timeout", dest="drain_timeout_s", type=float, help="seconds open streams may finish at shutdown (30)"
    )
    parser.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        help="fixed model-call shape: bit-identical showers whatever the batching (default on)",
    )
    parser.add_argument("--max-batch-showers", type=int, help="showers per model batch (default 64 on cpu, 8192 cuda)")
    parser.add_argument("--max-delay-ms", type=float, help="how long a batch waits to fill (default 2 ms)")
    parser.set_defaults(handler=_handle)


def settings_values(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Settings`` fields given on the command line (the others come from the environment or defaults)."""
    return {name: getattr(args, name) for name in _FIELDS if getattr(args, name, None) is not None}


def _handle(args: argparse.Namespace) -> int:
    import asyncio

    from pydantic import ValidationError

    from caloflow_server.main import configure_malloc, serve
    from caloflow_server.settings import Settings

    try:
        settings = Settings(**settings_values(args))
    except ValidationError as exc:
        raise CLIError(f"invalid server settings: {exc}") from exc
    configure_malloc(settings.malloc_mmap_threshold_bytes)  # as python -m caloflow_server.main does
    return asyncio.run(serve(settings))
