"""The service core without a transport: resolution, validation naming the field, streams, the error table."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import torch
from test_server_support import ENERGY_RANGE_MEV, N_VOXELS, POISON_MEV, make_repository

import caloflow_server
from caloflow_repo import ModelRepository
from caloflow_server import (
    ERROR_STATUS,
    CaloflowServerError,
    DrainingError,
    GenerateRequest,
    GenerationService,
    GenerationStream,
    InvalidArgumentError,
    ModelNotLoadedError,
    NonFiniteOutputError,
    QueueFullError,
    UnknownModelError,
    UnknownVersionError,
    errors,
    load_runtime,
    status_for,
)

T = TypeVar("T")


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    torch.set_num_threads(1)
    return make_repository(tmp_path_factory.mktemp("service"))


@pytest.fixture(scope="module")
def loaded(repository: ModelRepository) -> list[Any]:
    """tiny_photon 1 and 2 and tiny_pion 1; ``make_service`` serves a subset."""
    return [
        load_runtime(repository, model, version, intra_op_threads=1)
        for model, version in (("tiny_photon", 1), ("tiny_photon", 2), ("tiny_pion", 1))
    ]


def make_service(repository: ModelRepository, loaded: list[Any], **options: Any) -> GenerationService:
    options = {"max_count": 10_000, "max_batch_showers": 64, "deterministic": True, **options}
    return GenerationService(repository, loaded, **options)


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout=60)

    return asyncio.run(bounded())


async def read_all(stream: GenerationStream) -> np.ndarray:
    async with stream:
        return np.concatenate([chunk.showers async for chunk in stream])


def test_resolution(repository: ModelRepository, loaded: list[Any]) -> None:
    service = make_service(repository, loaded)
    assert (service.resolve("photon").model, service.resolve("photon").version) == ("tiny_photon", 1)
    assert service.resolve("tiny_photon", "2").version == 2
    assert service.resolve("pion").model == "tiny_pion"
    with pytest.raises(UnknownModelError) as model_error:
        service.resolve("tiny_electron")
    assert model_error.value.field == "model"
    with pytest.raises(UnknownVersionError) as version_error:
        service.resolve("tiny_photon", 7)
    assert version_error.value.field == "model_version"
    only_v2 = make_service(repository, loaded[1:2])
    assert only_v2.resolve("photon").version == 2  # the default (1) is not loaded: the newest loaded one
    with pytest.raises(ModelNotLoadedError):
        only_v2.resolve("tiny_photon", 1)
    with pytest.raises(ModelNotLoadedError):
        only_v2.resolve("tiny_pion")
    with pytest.raises(UnknownModelError) as particle_error:
        only_v2.validate(GenerateRequest(particle="pion", energy_mev=1000.0, count=1))
    assert particle_error.value.field == "particle"


OK = {"particle": "photon", "energy_mev": 1000.0, "count": 10}


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        ({"particle": None}, "model", "model name or a particle"),
        ({"particle": "electron"}, "particle", "photon"),
        ({"model": "tiny_pion"}, "particle", "generates pion"),
        ({"model": ""}, "model", "non-empty"),
        ({"model_version": "v1"}, "model_version", ""),
        ({"energy_mev": None, "count": None}, "energy_mev", "energies_mev"),
        ({"energy_mev": None}, "energy_mev", ""),
        ({"count": None}, "count", "required"),
        ({"energies_mev": [1000.0]}, "energy_mev", "not both"),
        ({"energy_mev": float("nan")}, "energy_mev", "finite"),
        ({"energy_mev": -5.0}, "energy_mev", "positive"),
        ({"energy_mev": 0.0}, "energy_mev", "positive"),
        ({"energy_mev": "1000"}, "energy_mev", "number"),
        ({"energy_mev": 100.0}, "energy_mev", f"[{ENERGY_RANGE_MEV[0]}, {ENERGY_RANGE_MEV[1]}]"),
        ({"energy_mev": 1e7}, "energy_mev", "allow_extrapolation"),
        ({"count": 0}, "count", "[1, 10000]"),
        ({"count": 10_001}, "count", "10000"),
        ({"count": 2.0}, "count", "integer"),
        ({"count": True}, "count", "integer"),
        ({"seed": -1}, "seed", "18446744073709551615"),
        ({"seed": 2**64}, "seed", ""),
        ({"start_index": -1}, "start_index", ""),
        ({"chunk_showers": 0}, "chunk_showers", ""),
        ({"energy_mev": None, "count": None, "energies_mev": []}, "energies_mev", "1 to"),
        ({"energy_mev": None, "count": None, "energies_mev": [1000.0, float("inf")]}, "energies_mev[1]", "finite"),
        ({"energy_mev": None, "count": None, "energies_mev": [1000.0, 2000.0, 50.0]}, "energies_mev[2]", "range"),
        ({"energy_mev": None, "count": None, "energies_mev": [[1000.0]]}, "energies_mev", "flat"),
        ({"energy_mev": None, "count": None, "energies_mev": ["a"]}, "energies_mev", "numbers"),
        ({"energy_mev": None, "count": None, "energies_mev": "1000"}, "energies_mev", "list"),
    ],
)
def test_validation_errors_name_the_field(
    repository: ModelRepository, loaded: list[Any], changes: dict[str, Any], field: str, text: str
) -> None:
    service = make_service(repository, loaded)
    with pytest.raises(InvalidArgumentError) as info:
        service.validate(GenerateRequest(**{**OK, **changes}))
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ") and text in str(info.value)
    assert status_for(info.value).http_status == 400 and status_for(info.value).grpc_code == "INVALID_ARGUMENT"


def test_valid_plans(repository: ModelRepository, loaded: list[Any]) -> None:
    service = make_service(repository, loaded)
    plan = service.validate(GenerateRequest(**OK))
    assert plan.seed_drawn and 0 <= plan.seed < 2**64 and plan.chunk_showers == 2 * 1024 * 1024 // (4 * N_VOXELS)
    extrapolated = service.validate(GenerateRequest(**{**OK, "energy_mev": 1e7, "allow_extrapolation": True}))
    assert extrapolated.extrapolated
    listed = service.validate(GenerateRequest(model="tiny_photon", model_version=2, energies_mev=np.array([300.0])))
    assert listed.count == 1 and listed.loaded.version == 2 and listed.energies_mev is not None


def test_generate_streams_header_chunks_and_trailer(repository: ModelRepository, loaded: list[Any]) -> None:
    service = make_service(repository, loaded)
    energies = list(np.geomspace(300.0, 4e6, 300))
    request = GenerateRequest(particle="photon", energies_mev=energies, seed=2**63 + 1, chunk_showers=64)

    async def main() -> tuple[GenerationStream, list[Any]]:
        stream = service.generate(request)
        chunks = [chunk async for chunk in stream]
        await service.aclose()
        return stream, chunks

    stream, chunks = run(main)
    header, trailer = stream.header, stream.trailer
    assert (header.model, header.version, header.particle, header.n_voxels) == ("tiny_photon", 1, "photon", N_VOXELS)
    assert header.sha256 == repository.manifest("tiny_photon", 1).artifact("model.onnx").sha256
    assert (header.seed, header.seed_drawn, header.count, header.start_index) == (2**63 + 1, False, 300, 0)
    assert header.deterministic and header.energies_mev is not None and header.energy_mev is None
    assert [c.start_index for c in chunks] == [0, 64, 128, 192, 256]
    np.testing.assert_array_equal(
        np.concatenate([c.energies_mev for c in chunks]), np.asarray(energies, dtype=np.float32)
    )
    showers = np.concatenate([c.showers for c in chunks])
    assert (trailer.status, trailer.showers_sent, trailer.next_index) == ("ok", 300, 300)
    assert trailer.sha256 == hashlib.sha256(showers.astype("<f4").tobytes()).hexdigest()
    assert trailer.stats is not None and trailer.stats.status == "ok"


def test_drawn_seed_reproduces_and_resumes(repository: ModelRepository, loaded: list[Any]) -> None:
    service = make_service(repository, loaded)

    async def main() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        first = service.generate(GenerateRequest(particle="photon", energy_mev=5000.0, count=500, chunk_showers=100))
        full = await read_all(first)
        seed = first.header.seed
        again = await read_all(
            service.generate(
                GenerateRequest(model="tiny_photon", energy_mev=5000.0, count=500, seed=seed, chunk_showers=7)
            )
        )
        tail = await read_all(
            service.generate(
                GenerateRequest(particle="photon", energy_mev=5000.0, count=100, seed=seed, start_index=400)
            )
        )
        await service.aclose()
        return full, again, tail

    full, again, tail = run(main)
    np.testing.assert_array_equal(full, again)
    np.testing.assert_array_equal(full[400:], tail)


def test_non_finite_output_ends_the_stream_with_an_error_trailer(
    repository: ModelRepository, loaded: list[Any]
) -> None:
    service = make_service(repository, loaded)
    energies = [1000.0] * 300
    energies[200] = POISON_MEV

    async def main() -> GenerationStream:
        stream = service.generate(GenerateRequest(particle="photon", energies_mev=energies, seed=1, chunk_showers=50))
        with pytest.raises(NonFiniteOutputError):
            async for _ in stream:
                pass
        await service.aclose()
        return stream

    trailer = run(main).trailer
    assert trailer.status == "error" and trailer.error_code == "INTERNAL"
    assert trailer.showers_sent == trailer.next_index and 0 < trailer.next_index <= 200


def test_cancelled_stream_trailer(repository: ModelRepository, loaded: list[Any]) -> None:
    service = make_service(repository, loaded)

    async def main() -> GenerationStream:
        stream = service.generate(GenerateRequest(particle="photon", energy_mev=1000.0, count=10_000, chunk_showers=10))
        await stream.__anext__()
        await stream.aclose()
        assert service.batcher("tiny_photon", 1).pending_requests == 0
        await service.aclose()
        return stream

    trailer = run(main).trailer
    assert (trailer.status, trailer.showers_sent, trailer.next_index) == ("cancelled", 10, 10)


def test_admission_and_draining(repository: ModelRepository, loaded: list[Any]) -> None:
    service = make_service(repository, loaded, max_queue_showers=10_000)

    async def main() -> None:
        first = service.generate(GenerateRequest(particle="photon", energy_mev=1000.0, count=9_000))
        with pytest.raises(QueueFullError) as info:
            service.generate(GenerateRequest(particle="photon", energy_mev=1000.0, count=2_000))
        assert status_for(info.value).http_status == 429
        await first.aclose()
        await service.aclose()
        with pytest.raises(DrainingError) as draining:
            service.generate(GenerateRequest(**OK))
        assert (status_for(draining.value).http_status, status_for(draining.value).grpc_code) == (503, "UNAVAILABLE")

    run(main)
    with pytest.raises(ValueError, match="max_count"):
        make_service(repository, loaded, max_count=20_000, max_queue_showers=10_000)


def test_every_error_type_has_one_row() -> None:
    defined = {
        obj
        for obj in vars(errors).values()
        if inspect.isclass(obj) and issubclass(obj, CaloflowServerError) and obj.__module__ == errors.__name__
    }
    assert defined == set(ERROR_STATUS)
    for error_type, row in ERROR_STATUS.items():
        assert error_type.__name__.endswith("Error")
        assert 400 <= row.http_status < 600 and row.grpc_code.isupper() and row.reason
    assert status_for(UnknownModelError("x")).http_status == 404
    assert status_for(asyncio.CancelledError()).grpc_code == "CANCELLED"
    assert status_for(KeyError("bug")).grpc_code == "INTERNAL"


def test_public_api_is_pinned() -> None:
    assert sorted(caloflow_server.__all__) == sorted(
        [
            "ERROR_STATUS", "ArtifactIntegrityError", "BatchStats", "Batcher", "BatcherObserver",
            "CaloflowServerError", "DeviceOutOfMemoryError", "DrainingError", "EnergySource", "ErrorStatus",
            "GenerateRequest", "GenerationPlan", "GenerationService", "GenerationStream", "InferenceError",
            "InternalError", "InvalidArgumentError", "LoadedModel", "ModelNotLoadedError", "NonFiniteOutputError",
            "NotFoundError", "NullObserver", "OnnxRuntimeBackend", "QueueFullError", "RequestCancelledError",
            "RequestStats", "Runtime", "RuntimeLoadError", "ShowerChunk", "ShowerStream", "StreamHeader",
            "StreamTrailer", "TorchScriptBackend", "UnavailableError", "UnknownModelError", "UnknownVersionError",
            "check_showers", "constant_energies", "draw_seed", "listed_energies", "load_runtime", "shower_noise",
            "status_for",
        ]
    )  # fmt: skip
    assert all(hasattr(caloflow_server, name) for name in caloflow_server.__all__)


def test_core_imports_no_training_package_and_no_transport() -> None:
    """The core modules (not the transport adapters or metrics, which sit on top) import neither."""
    forbidden = ("caloflow", "fastapi", "starlette", "uvicorn", "grpc", "prometheus_client")
    package = Path(caloflow_server.__file__).parent
    core = [p for p in package.glob("*.py") if not p.name.startswith(("http_", "grpc_")) and p.name != "metrics.py"]
    assert {"service.py", "batcher.py", "runtime.py", "noise.py", "errors.py"} <= {p.name for p in core}
    for path in core:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            bad = [name for name in names if name.split(".")[0] in forbidden]
            assert not bad, f"{path.name} imports {bad}"
