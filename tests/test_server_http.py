"""The HTTP adapter through the real FastAPI app (httpx, ASGI transport): formats, negotiation, the error table,
limits, admission, draining, OIP v2 REST and model control."""

from __future__ import annotations

import hashlib
import io
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from test_server_http_support import ADMIN_TOKEN, Served, build_served, run
from test_server_support import ENERGY_RANGE_MEV, N_VOXELS, POISON_MEV, make_repository

from caloflow_repo import ModelRepository
from caloflow_server import GenerateRequest, LoadedModel, load_runtime
from caloflow_server.http_app import negotiate
from caloflow_server.http_framing import PREAMBLE, FrameType, decode_framed, iter_frames

PHOTON = {"particle": "photon", "energy_mev": 1000.0, "count": 10}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    torch.set_num_threads(1)
    return make_repository(tmp_path_factory.mktemp("http"))


@pytest.fixture(scope="module")
def photon(repository: ModelRepository) -> list[LoadedModel]:
    """tiny_photon versions 1 and 2 (no pion model: a pion request finds no model)."""
    return [load_runtime(repository, "tiny_photon", version, intra_op_threads=1) for version in (1, 2)]


def client(served: Served) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=served.app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60)


async def post_generate(served: Served, body: dict[str, Any], accept: str | None = None) -> httpx.Response:
    async with client(served) as http:
        headers = {"accept": accept} if accept else {}
        return await http.post("/generate", json=body, headers=headers)


async def reference(served: Served, request: GenerateRequest) -> np.ndarray:
    """The same request straight through the service, for bit comparisons."""
    async with served.service.generate(request) as stream:
        return np.concatenate([chunk.showers async for chunk in stream])


# ------------------------------------------------------------------------------------------ native formats
def test_npy_stream_is_a_valid_npy_file(repository: ModelRepository, photon: list[LoadedModel]) -> None:
    served = build_served(repository, photon)
    body = {"particle": "photon", "energy_mev": 5000.0, "count": 300, "seed": 42, "chunk_showers": 64}

    async def main() -> tuple[httpx.Response, np.ndarray]:
        response = await post_generate(served, body, "application/x-npy")
        expected = await reference(served, GenerateRequest(particle="photon", energy_mev=5000.0, count=300, seed=42))
        return response, expected

    response, expected = run(main)
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-npy"
    showers = np.load(io.BytesIO(response.content))
    assert showers.shape == (300, N_VOXELS) and showers.dtype == np.float32
    np.testing.assert_array_equal(showers, expected)
    assert int(response.headers["content-length"]) == len(response.content)
    headers = response.headers
    assert (headers["x-model-name"], headers["x-model-version"], headers["x-seed"]) == ("tiny_photon", "1", "42")
    assert (headers["x-count"], headers["x-voxels"], headers["x-dtype"]) == ("300", str(N_VOXELS), "float32-le")
    assert headers["x-model-sha256"] == repository.manifest("tiny_photon", 1).artifact("model.onnx").sha256
    assert float(headers["x-incident-energy-mev"]) == 5000.0


def test_framed_stream_frames_status_and_checksum(repository: ModelRepository, photon: list[LoadedModel]) -> None:
    served = build_served(repository, photon)
    energies = [float(e) for e in np.geomspace(300.0, 4e6, 150).astype(np.float32)]
    body = {
        "model": "tiny_photon",
        "model_version": 2,
        "energies_mev": energies,
        "seed": 2**64 - 1,
        "chunk_showers": 40,
    }

    response = run(lambda: post_generate(served, body))
    assert response.status_code == 200 and response.headers["content-type"] == "application/octet-stream"
    assert response.content.startswith(PREAMBLE)
    kinds = [kind for kind, _ in iter_frames(response.content)]
    assert kinds == [FrameType.HEADER] + [FrameType.DATA] * 4 + [FrameType.STATUS]
    stream = decode_framed(response.content)
    assert stream.frames == [(0, 40), (40, 40), (80, 40), (120, 30)]
    assert stream.showers.shape == (150, N_VOXELS)
    assert stream.header["model_version"] == 2 and stream.header["seed"] == 2**64 - 1
    assert stream.header["energies_mev"] == energies and stream.header["count"] == 150
    assert stream.status == {
        "status": "ok",
        "showers_sent": 150,
        "next_index": 150,
        "sha256": hashlib.sha256(stream.showers.astype("<f4").tobytes()).hexdigest(),
    }
    assert "x-incident-energies-mev" not in response.headers  # 150 values: too long for a header


def test_framed_stream_reports_an_error_after_the_first_byte(
    repository: ModelRepository, photon: list[LoadedModel]
) -> None:
    served = build_served(repository, photon)
    energies = [1000.0] * 100
    energies[70] = POISON_MEV  # the tiny model answers NaN there: never sent
    body = {"particle": "photon", "energies_mev": energies, "seed": 1, "chunk_showers": 10}

    response = run(lambda: post_generate(served, body))
    assert response.status_code == 200
    stream = decode_framed(response.content)
    status = stream.status
    assert status is not None and status["status"] == "error" and status["code"] == "INTERNAL"
    assert status["http_status"] == 500 and "non-finite" in status["error"]
    assert status["next_index"] == status["showers_sent"] == len(stream.showers) <= 70
    assert status["sha256"] == hashlib.sha256(stream.showers.tobytes()).hexdigest()


def test_npy_stream_error_after_the_first_byte_cuts_the_body(
    repository: ModelRepository, photon: list[LoadedModel]
) -> None:
    served = build_served(repository, photon)
    energies = [1000.0] * 100
    energies[70] = POISON_MEV
    body = {"particle": "photon", "energies_mev": energies, "seed": 1, "chunk_showers": 10, "format": "npy"}

    response = run(lambda: post_generate(served, body))
    assert response.status_code == 200  # the status line went out before the error
    assert len(response.content) < int(response.headers["content-length"])
    with pytest.raises(ValueError):
        np.load(io.BytesIO(response.content))


def test_json_answer_for_small_counts_only(repository: ModelRepository, photon: list[LoadedModel]) -> None:
    served = build_served(repository, photon, json_max_showers=20)

    async def main() -> tuple[httpx.Response, httpx.Response, np.ndarray]:
        small = await post_generate(served, {**PHOTON, "count": 5, "seed": 9}, "application/json")
        big = await post_generate(served, {**PHOTON, "count": 21, "format": "json"})
        expected = await reference(served, GenerateRequest(particle="photon", energy_mev=1000.0, count=5, seed=9))
        return small, big, expected

    small, big, expected = run(main)
    assert small.status_code == 200 and small.headers["content-type"] == "application/json"
    document = small.json()
    showers = np.array(document["showers"], dtype=np.float32)
    np.testing.assert_array_equal(showers, expected)
    assert document["incident_energies_mev"] == [1000.0] * 5 and document["status"]["status"] == "ok"
    assert (document["model"], document["seed"], document["n_voxels"]) == ("tiny_photon", 9, N_VOXELS)
    assert big.status_code == 400 and big.json()["field"] == "count"
    assert "application/x-npy" in big.json()["error"]


@pytest.mark.parametrize(
    ("accept", "requested", "expected"),
    [
        (None, None, "framed"),
        ("*/*", None, "framed"),
        ("application/x-npy", None, "npy"),
        ("application/json;q=0.5, application/x-npy;q=0.9", None, "npy"),
        ("text/html, application/json", None, "json"),
        ("application/x-npy", "json", "json"),
    ],
)
def test_negotiation(accept: str | None, requested: Any, expected: str) -> None:
    assert negotiate(accept, requested) == expected


def test_unacceptable_accept_is_406(repository: ModelRepository, photon: list[LoadedModel]) -> None:
    served = build_served(repository, photon)
    response = run(lambda: post_generate(served, PHOTON, "text/html"))
    assert response.status_code == 406 and response.json()["field"] == "Accept"


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("body", "status", "field", "text"),
    [
        ({"particle": "pion", "energy_mev": 1000.0, "count": 1}, 404, "particle", "no loaded model"),
        ({"particle": "electron", "energy_mev": 1000.0, "count": 1}, 400, "particle", "photon"),
        ({"model": "tiny_electron", "energy_mev": 1000.0, "count": 1}, 404, "model", "no model"),
        ({**PHOTON, "model_version": 7}, 404, "model_version", "no version 7"),
        ({**PHOTON, "model_version": "01"}, 400, "model_version", "leading zero"),
        ({**PHOTON, "energy_mev": 100.0}, 400, "energy_mev", f"[{ENERGY_RANGE_MEV[0]}, {ENERGY_RANGE_MEV[1]}]"),
        ({**PHOTON, "count": 0}, 400, "count", "[1, 100000]"),
        ({**PHOTON, "count": -5}, 400, "count", "[1, 100000]"),
        ({**PHOTON, "count": "10"}, 400, "count", "integer"),
        ({**PHOTON, "count": 2.5}, 400, "count", "integer"),
        ({**PHOTON, "energies_mev": [1000.0]}, 400, "energy_mev", "not both"),
        ({"particle": "photon", "energies_mev": [1000.0, "x"]}, 400, "energies_mev[1]", "number"),
        ({"particle": "photon", "energies_mev": [1000.0, 1e9]}, 400, "energies_mev[1]", "outside the trained range"),
        ({**PHOTON, "seed": 2**64}, 400, "seed", "18446744073709551615"),
        ({**PHOTON, "seed": -1}, 400, "seed", ""),
        ({**PHOTON, "start_index": -1}, 400, "start_index", ""),
        ({**PHOTON, "chunk_showers": 0}, 400, "chunk_showers", ""),
        ({**PHOTON, "energy": 1.0}, 400, "energy", "unknown field"),
        ({**PHOTON, "format": "hdf5"}, 400, "format", "npy"),
        ({"energy_mev": 1000.0, "count": 1}, 400, "model", "model name or a particle"),
    ],
)
def test_errors_name_the_field_with_the_status_of_the_table(
    repository: ModelRepository, photon: list[LoadedModel], body: dict[str, Any], status: int, field: str, text: str
) -> None:
    served = build_served(repository, photon)
    response = run(lambda: post_generate(served, body))
    document = response.json()
    assert response.status_code == status, document
    assert document["field"] == field and text in document["error"]
    assert document["code"] == ("NOT_FOUND" if status == 404 else "INVALID_ARGUMENT")


@pytest.mark.parametrize("raw", [b"{bad json", b"", b"[1, 2]", b'"photon"', b"\xff\xfe"])
def test_malformed_bodies_are_400(repository: ModelRepository, photon: list[LoadedModel], raw: bytes) -> None:
    served = build_served(repository, photon)

    async def main() -> httpx.Response:
        async with client(served) as http:
            return await http.post("/generate", content=raw, headers={"content-type": "application/json"})

    response = run(main)
    assert response.status_code == 400 and response.json()["code"] == "INVALID_ARGUMENT"


def test_bodies_over_the_limit_are_413(repository: ModelRepository, photon: list[LoadedModel]) -> None:
    served = build_served(repository, photon, max_body_bytes=4096)
    body = {"particle": "photon", "energies_mev": [1000.0] * 1000}

    async def chunked() -> AsyncIterator[bytes]:
        data = json.dumps(body).encode()
        for start in range(0, len(data), 1000):
            yield data[start : start + 1000]

    async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with client(served) as http:
            declared = await http.post("/generate", json=body)
            streamed = await http.post("/generate", content=chunked())
            oip = await http.post("/v2/models/tiny_photon/infer", content=chunked())
            return declared, streamed, oip

    for response in run(main):
        assert response.status_code == 413 and "4096" in response.json()["error"]


def test_queue_full_is_429_at_once(repository: ModelRepository, photon: list[LoadedModel]) -> None:
    served = build_served(repository, photon, max_count=1000, max_queue_showers=1000)

    async def main() -> tuple[httpx.Response, httpx.Response]:
        holder = served.service.generate(GenerateRequest(particle="photon", energy_mev=1000.0, count=1000))
        try:
            refused = await post_generate(served, {**PHOTON, "count": 10})
        finally:
            await holder.aclose()
        accepted = await post_generate(served, {**PHOTON, "count": 10})
        return refused, accepted

    refused, accepted = run(main)
    assert refused.status_code == 429 and refused.json()["code"] == "RESOURCE_EXHAUSTED"
    assert refused.headers["retry-after"] == "1"
    assert accepted.status_code == 200
    failures = served.metrics.failures.labels(model="tiny_photon", version="1", protocol="http", reason="rejected")
    assert failures._value.get() == 1


def test_health_and_draining(repository: ModelRepository, photon: list[LoadedModel]) -> None:
    served = build_served(repository, photon, ready=False)

    async def main() -> list[httpx.Response]:
        async with client(served) as http:
            answers = [await http.get("/v2/health/live"), await http.get("/v2/health/ready")]
            served.state.models_loaded = True
            answers.append(await http.get("/v2/health/ready"))
            served.state.draining = True
            await served.service.aclose(1.0)
            answers += [await http.get("/v2/health/ready"), await http.post("/generate", json=PHOTON)]
            return answers

    live, loading, ready, draining, refused = run(main)
    assert live.status_code == 200 and live.json() == {"live": True}
    assert loading.status_code == 503 and loading.json()["ready"] is False
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert draining.status_code == 503 and draining.json()["draining"] is True
    assert refused.status_code == 503 and refused.json()["code"] == "UNAVAILABLE"


def test_unknown_routes_answer_json(repository: ModelRepository, photon: list[LoadedModel]) -> None:
    served = build_served(repository, photon)

    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with client(served) as http:
            return await http.get("/nothing"), await http.get("/generate")

    missing, wrong_method = run(main)
    assert missing.status_code == 404 and "error" in missing.json()
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


# ------------------------------------------------------------------------------------------ OIP v2 REST
def infer_body(energies: list[float], **extra: Any) -> dict[str, Any]:
    tensor = {"name": "INCIDENT_ENERGY", "datatype": "FP32", "shape": [len(energies), 1], "data": energies}
    return {"inputs": [tensor], **extra}


def test_oip_metadata_config_and_index(repository: ModelRepository, photon: list[LoadedModel]) -> None:
    served = build_served(repository, photon[:1], oip_max_batch_size=256, max_delay_ms=1.5)

    async def main() -> dict[str, httpx.Response]:
        async with client(served) as http:
            return {
                "server": await http.get("/v2"),
                "model": await http.get("/v2/models/tiny_photon"),
                "version": await http.get("/v2/models/tiny_photon/versions/1"),
                "config": await http.get("/v2/models/tiny_photon/config"),
                "ready": await http.get("/v2/models/tiny_photon/versions/1/ready"),
                "not_loaded": await http.get("/v2/models/tiny_photon/versions/2/ready"),
                "unknown": await http.get("/v2/models/tiny_electron"),
                "bad_name": await http.get("/v2/models/Tiny..Photon"),
                "bad_version": await http.get("/v2/models/tiny_photon/versions/0x1"),
                "particle": await http.get("/v2/models/photon"),
                "index": await http.post("/v2/repository/index"),
                "index_ready": await http.post("/v2/repository/index", json={"ready": True}),
            }

    answers = run(main)
    assert "binary_tensor_data" in answers["server"].json()["extensions"]
    model = answers["model"].json()
    assert model["name"] == "tiny_photon" and model["versions"] == ["1"]
    assert model["inputs"][0] == {"name": "INCIDENT_ENERGY", "datatype": "FP32", "shape": [-1, 1]}
    assert model["outputs"] == [{"name": "SHOWERS", "datatype": "FP32", "shape": [-1, N_VOXELS]}]
    config = answers["config"].json()
    assert config["max_batch_size"] == 256 and config["dynamic_batching"]["max_queue_delay_microseconds"] == 1500
    assert config["output"][0]["dims"] == [N_VOXELS] and config["input"][1]["optional"] is True
    assert answers["ready"].status_code == 200 and answers["ready"].json()["ready"] is True
    assert answers["not_loaded"].status_code == 503
    assert answers["unknown"].status_code == 404 and answers["unknown"].json()["field"] == "model"
    assert answers["bad_name"].status_code == 400 and answers["bad_name"].json()["field"] == "model"
    assert answers["bad_version"].status_code == 400 and answers["bad_version"].json()["field"] == "model_version"
    assert answers["particle"].status_code == 404
    index = {(e["name"], e["version"]): e["state"] for e in answers["index"].json()}
    assert index == {
        ("tiny_photon", "1"): "READY",
        ("tiny_photon", "2"): "UNAVAILABLE",
        ("tiny_pion", "1"): "UNAVAILABLE",
    }
    assert answers["index_ready"].json() == [{"name": "tiny_photon", "version": "1", "state": "READY"}]


def test_oip_infer_json_binary_and_raw(repository: ModelRepository, photon: list[LoadedModel]) -> None:
    served = build_served(repository, photon)
    energies = [300.0, 1000.0, 65536.0]

    async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response, np.ndarray]:
        async with client(served) as http:
            as_json = await http.post(
                "/v2/models/tiny_photon/versions/1/infer", json=infer_body(energies, parameters={"seed": 77}, id="a")
            )
            header = json.dumps(
                {
                    "inputs": [
                        {
                            "name": "INCIDENT_ENERGY",
                            "datatype": "FP32",
                            "shape": [3, 1],
                            "parameters": {"binary_data_size": 12},
                        },
                        {"name": "SEED", "datatype": "UINT64", "shape": [1], "parameters": {"binary_data_size": 8}},
                    ],
                    "outputs": [{"name": "SHOWERS", "parameters": {"binary_data": True}}],
                }
            ).encode()
            binary_body = header + np.array(energies, "<f4").tobytes() + struct.pack("<Q", 77)
            binary = await http.post(
                "/v2/models/tiny_photon/infer",
                content=binary_body,
                headers={"Inference-Header-Content-Length": str(len(header))},
            )
            raw = await http.post(
                "/v2/models/tiny_photon/infer",
                content=np.array(energies, "<f4").tobytes(),
                headers={"Inference-Header-Content-Length": "0"},
            )
        expected = await reference(served, GenerateRequest(particle="photon", energies_mev=energies, seed=77))
        return as_json, binary, raw, expected

    as_json, binary, raw, expected = run(main)
    document = as_json.json()
    assert as_json.status_code == 200 and document["id"] == "a" and document["model_version"] == "1"
    output = document["outputs"][0]
    assert output["shape"] == [3, N_VOXELS] and document["parameters"]["seed"] == 77
    np.testing.assert_array_equal(np.array(output["data"], np.float32).reshape(3, N_VOXELS), expected)
    length = int(binary.headers["inference-header-content-length"])
    header = json.loads(binary.content[:length])
    assert header["outputs"][0]["parameters"]["binary_data_size"] == 3 * N_VOXELS * 4
    np.testing.assert_array_equal(np.frombuffer(binary.content[length:], "<f4").reshape(3, N_VOXELS), expected)
    assert raw.status_code == 200
    raw_length = int(raw.headers["inference-header-content-length"])
    assert np.frombuffer(raw.content[raw_length:], "<f4").shape == (3 * N_VOXELS,)


@pytest.mark.parametrize(
    ("body", "headers", "field"),
    [
        (infer_body([1000.0], parameters={"seed": 1}) | {"inputs": []}, {}, "inputs"),
        (
            {"inputs": [{"name": "NOISE", "datatype": "FP32", "shape": [1, 16], "data": [0.0] * 16}]},
            {},
            "inputs[0].name",
        ),
        (
            {"inputs": [{"name": "INCIDENT_ENERGY", "datatype": "FP64", "shape": [1, 1], "data": [1e3]}]},
            {},
            "inputs[0].datatype",
        ),
        (
            {"inputs": [{"name": "INCIDENT_ENERGY", "datatype": "FP32", "shape": [2, 1], "data": [1e3]}]},
            {},
            "inputs[0]",
        ),
        (
            {"inputs": [{"name": "INCIDENT_ENERGY", "datatype": "FP32", "shape": [1, 1], "data": ["a"]}]},
            {},
            "inputs[0].data",
        ),
        (infer_body([1000.0] * 513), {}, "INCIDENT_ENERGY"),
        (infer_body([1000.0, 10.0]), {}, "INCIDENT_ENERGY[1]"),
        (
            {
                "inputs": [
                    *infer_body([1000.0])["inputs"],
                    {"name": "SEED", "datatype": "UINT64", "shape": [1], "data": [3]},
                ],
                "parameters": {"seed": 3},
            },
            {},
            "SEED",
        ),
        (infer_body([1000.0], parameters={"seed": -1}), {}, "seed"),
        (infer_body([1000.0], outputs=[{"name": "LATENT"}]), {}, "outputs[0].name"),
        (infer_body([1000.0]), {"Inference-Header-Content-Length": "100000"}, "Inference-Header-Content-Length"),
    ],
)
def test_oip_infer_errors_name_the_part(
    repository: ModelRepository, photon: list[LoadedModel], body: dict[str, Any], headers: dict[str, str], field: str
) -> None:
    served = build_served(repository, photon)

    async def main() -> httpx.Response:
        async with client(served) as http:
            return await http.post("/v2/models/tiny_photon/infer", content=json.dumps(body), headers=headers)

    response = run(main)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


# ------------------------------------------------------------------------------------------ model control
def test_model_control_needs_a_token(repository: ModelRepository, photon: list[LoadedModel]) -> None:
    disabled = build_served(repository, photon)
    enabled = build_served(repository, photon, admin_token=ADMIN_TOKEN)

    async def main() -> list[httpx.Response]:
        async with client(disabled) as http:
            off = await http.post("/v2/repository/models/tiny_photon/load", headers={"authorization": "Bearer x"})
        async with client(enabled) as http:
            missing = await http.post("/v2/repository/models/tiny_photon/unload")
            wrong = await http.post("/v2/repository/models/tiny_photon/unload", headers={"authorization": "Bearer x"})
        return [off, missing, wrong]

    off, missing, wrong = run(main)
    assert off.status_code == 403 and "CALOFLOW_ADMIN_TOKEN" in off.json()["error"]
    assert missing.status_code == wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert len(enabled.service.loaded_models) == 2  # nothing was unloaded


def test_load_default_switch_and_unload_keep_in_flight_streams(
    repository: ModelRepository, photon: list[LoadedModel]
) -> None:
    served = build_served(repository, photon[:1], admin_token=ADMIN_TOKEN)
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    request = GenerateRequest(particle="photon", energy_mev=2000.0, count=1000, seed=5, chunk_showers=50)

    async def main() -> dict[str, Any]:
        expected = await reference(served, request)
        async with client(served) as http:
            in_flight = served.service.generate(request)
            first = await in_flight.__anext__()
            answers: dict[str, Any] = {
                "load": await http.post(
                    "/v2/repository/models/tiny_photon/load", json={"parameters": {"version": "2"}}, headers=auth
                ),
                "default": await http.post("/v2/repository/models/tiny_photon/versions/2/default", headers=auth),
                "after_default": await http.post("/generate", json=PHOTON),
                "unload": await http.post(
                    "/v2/repository/models/tiny_photon/unload", json={"parameters": {"version": 1}}, headers=auth
                ),
                "v1_gone": await http.post("/generate", json={**PHOTON, "model_version": 1}),
                "config_refused": await http.post(
                    "/v2/repository/models/tiny_photon/load", json={"parameters": {"config": "{}"}}, headers=auth
                ),
                "unknown": await http.post("/v2/repository/models/tiny_electron/load", headers=auth),
                "bad_name": await http.post("/v2/repository/models/..%2F..%2Fetc/load", headers=auth),
            }
            rest = [chunk.showers async for chunk in in_flight]
            answers["in_flight"] = (in_flight.trailer, np.concatenate([first.showers, *rest]), expected)
        return answers

    answers = run(main)
    assert answers["load"].status_code == 200 and answers["load"].json()["version"] == "2"
    assert answers["default"].json() == {"name": "tiny_photon", "default_version": "2"}
    assert answers["after_default"].headers["x-model-version"] == "2"
    assert answers["unload"].status_code == 200 and answers["unload"].json()["versions"] == ["1"]
    assert answers["v1_gone"].status_code == 503 and answers["v1_gone"].json()["code"] == "UNAVAILABLE"
    assert (
        answers["config_refused"].status_code == 400
        and answers["config_refused"].json()["field"] == "parameters.config"
    )
    assert answers["unknown"].status_code == 404
    assert answers["bad_name"].status_code in (400, 404)
    trailer, showers, expected = answers["in_flight"]
    assert (trailer.status, trailer.showers_sent) == ("ok", 1000)  # the unload did not drop it
    np.testing.assert_array_equal(showers, expected)
    states = served.metrics.model_loaded
    assert states.labels(model="tiny_photon", version="1", state="unavailable")._value.get() == 1
    assert states.labels(model="tiny_photon", version="2", state="ready")._value.get() == 1


def test_openapi_documents_the_generate_body(repository: ModelRepository, photon: list[LoadedModel]) -> None:
    served = build_served(repository, photon)
    schema = served.app.openapi()
    operation = schema["paths"]["/generate"]["post"]
    body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"particle", "model", "energy_mev", "count", "energies_mev", "seed", "start_index"} <= set(
        body_schema["properties"]
    )
    framed = {"application/octet-stream", "application/vnd.caloflow.framed-v2"}
    assert framed | {"application/x-npy", "application/json"} == set(operation["responses"]["200"]["content"])
    assert body_schema["additionalProperties"] is False
