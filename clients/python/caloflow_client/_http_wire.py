"""The HTTP API's documents, transport-free: request body, header -> ``GenerationInfo``, error answers, model
listing from the OIP repository index and model configs. Shared by the sync and async HTTP clients."""

from __future__ import annotations

import json
import math
from typing import Any

from caloflow_client.errors import ServerError, server_error
from caloflow_client.request import GenerateRequest
from caloflow_client.results import GenerationInfo, ModelInfo, ModelVersionInfo

__all__ = [
    "FRAMED",
    "error_from_response",
    "info_from_header",
    "model_info",
    "request_body",
    "standin_of",
    "version_info",
]

FRAMED_FORMAT = "framed-v2"  # the framed stream whose DATA frames carry their incident energies
FRAMED = {"Accept": "application/vnd.caloflow.framed-v2"}
_CODE_OF_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    406: "INVALID_ARGUMENT",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def request_body(request: GenerateRequest) -> dict[str, Any]:
    """The ``POST /generate`` JSON (float32 energies written as their exact decimal value)."""
    body: dict[str, Any] = {"start_index": request.start_index, "format": FRAMED_FORMAT}
    optional = {
        "particle": request.particle,
        "dataset": request.dataset,
        "model": request.model,
        "model_version": request.model_version,
        "energy_mev": None if request.energy_mev is None else float(request.energy_mev),
        "count": request.count,
        "seed": request.seed,
        "chunk_showers": request.chunk_showers,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if request.energies_mev is not None:
        body["energies_mev"] = request.energies_mev.astype(float).tolist()
    if request.allow_extrapolation:
        body["allow_extrapolation"] = True
    return body


def info_from_header(document: dict[str, Any], server: str) -> GenerationInfo:
    """The stream's metadata; a server from before datasets states none: its models are Dataset 1's."""
    energy = document.get("energy_mev")
    n_voxels = int(document["n_voxels"])
    particle = str(document["particle"])
    return GenerationInfo(
        server=server,
        transport="http",
        model=str(document["model"]),
        version=int(document["model_version"]),
        particle=particle,
        artifact_sha256=str(document["sha256"]),
        seed=int(document["seed"]),
        seed_drawn=bool(document.get("seed_drawn", False)),
        start_index=int(document["start_index"]),
        count=int(document["count"]),
        n_voxels=n_voxels,
        chunk_showers=int(document.get("chunk_showers", 0)),
        deterministic=bool(document.get("deterministic", False)),
        extrapolated=bool(document.get("extrapolated", False)),
        standin=bool(document["standin"]),
        energy_mev=None if energy is None else float(energy),
        dataset=str(document.get("dataset") or f"ds1-{particle}"),
        shower_shape=tuple(int(n) for n in document.get("shower_shape") or (n_voxels,)),
        file_layout=str(document.get("file_layout") or "calochallenge"),
    )


def error_from_response(status_code: int, content: bytes) -> ServerError:
    """The typed error of a non-200 answer: the server's ``{"error", "code", "field", "next_index"}`` body."""
    try:
        document = json.loads(content)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        text = content.decode("utf-8", errors="replace").strip()[:500]
        document = {"error": text or f"HTTP {status_code}"}
    code = document.get("code") or _CODE_OF_STATUS.get(status_code, "INTERNAL" if status_code >= 500 else "UNKNOWN")
    message = document.get("error") or document.get("detail") or f"HTTP {status_code}"
    next_index = document.get("next_index")
    return server_error(
        str(code),
        str(message),
        field=document.get("field"),
        next_index=int(next_index) if next_index is not None else None,
        http_status=status_code,
    )


def _parameter(config: dict[str, Any], name: str) -> str:
    return str(config.get("parameters", {}).get(name, {}).get("string_value", ""))


def standin_of(config: dict[str, Any]) -> bool:
    """The stand-in flag of an OIP model config (``parameters.standin``)."""
    return _parameter(config, "standin").lower() == "true"


def version_info(config: dict[str, Any]) -> ModelVersionInfo:
    low, _, high = _parameter(config, "energy_range_mev").partition(",")
    return ModelVersionInfo(
        version=int(config["version_policy"]["specific"]["versions"][0]),
        artifact_sha256=_parameter(config, "sha256"),
        n_voxels=math.prod(int(n) for n in config["output"][0]["dims"]),
        energy_min_mev=float(low),
        energy_max_mev=float(high),
        standin=standin_of(config),
        backend=str(config.get("backend", "")),
    )


def model_info(
    default: dict[str, Any], versions: list[dict[str, Any]], listing: dict[str, Any] | None = None
) -> ModelInfo:
    """A model from its default version's config and every loaded version's config, and - from a caloflow
    server's ``GET /models`` (``listing``; None from any other KServe / Triton server) - whether a request naming
    only its dataset or particle gets it and its file layout."""
    infos = sorted((version_info(config) for config in versions), key=lambda v: v.version)
    entry = _listing_entry(listing, str(default["name"]))
    return ModelInfo(
        name=str(default["name"]),
        particle=_parameter(default, "particle"),
        default_version=version_info(default).version,
        versions=tuple(infos),
        dataset=_parameter(default, "dataset") or f"ds1-{_parameter(default, 'particle')}",
        particle_default=None if entry is None else bool(entry.get("particle_default")),
        dataset_default=None if entry is None else bool(entry.get("dataset_default")),
        shower_shape=tuple(int(n) for n in default["output"][0]["dims"]),
        file_layout="" if entry is None else str(entry.get("file_layout") or ""),
    )


def listing_of(status_code: int, content: bytes) -> dict[str, Any] | None:
    """``GET /models``'s answer: the caloflow listing, or None where the server has none (404 / 405 from a
    Triton or KServe server, or a body that is not the listing); other failures raise the server's error."""
    if status_code in (404, 405):
        return None
    if status_code != 200:
        raise error_from_response(status_code, content)
    try:
        document = json.loads(content)
    except ValueError:
        return None
    return document if isinstance(document, dict) and isinstance(document.get("models"), list) else None


def _listing_entry(listing: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    if listing is None:
        return None
    entries: list[dict[str, Any]] = listing.get("models", [])
    return next((entry for entry in entries if entry.get("name") == name), None)
