"""A dataset-aware API end to end: manifests, routing by dataset, shapes on every protocol, the framed stream's
per-frame energies, the listings' defaults, the clients' official files, and old DS1 requests unchanged.

The DS2- and ILD-sized models are ``test_server_support.ShapedSampler``: a tiny synthetic fixture of the
datasets' output shapes (6480 voxels, 30 x 30 x 30), not a trained model.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import h5py
import httpx
import numpy as np
import pytest
import torch
from test_server_grpc import ServerThread
from test_server_http_support import LiveServer, Served, build_served, run
from test_server_support import DS2_SHAPE, ILD_SHAPE, N_VOXELS, make_dataset_repository, shaped_manifest

from caloflow.data.dataset_files import validate_dataset_file
from caloflow.data.datasets import dataset
from caloflow.data.hdf5 import read_showers
from caloflow_client import GrpcClient, HttpClient
from caloflow_client.errors import ServerError
from caloflow_repo import DATASET_FIELDS, Manifest, ManifestError, ModelRepository
from caloflow_server import LoadedModel, load_runtime
from caloflow_server._proto.caloflow.v1 import showers_pb2 as pb
from caloflow_server._proto.caloflow.v1 import showers_pb2_grpc as pb_grpc
from caloflow_server.http_framing import decode_framed

DEFAULTS = {"ds2-electron": "tiny_ds2"}
README_BODY = {"particle": "photon", "energy_mev": 65536, "count": 1000, "seed": 1}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    torch.set_num_threads(1)
    return make_dataset_repository(tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="module")
def loaded(repository: ModelRepository) -> list[LoadedModel]:
    names = ("tiny_photon", "tiny_pion", "tiny_ds2", "tiny_ds2_b", "tiny_ild")
    return [load_runtime(repository, name, 1, intra_op_threads=1) for name in names]


@pytest.fixture
def served(repository: ModelRepository, loaded: list[LoadedModel]) -> Served:
    return build_served(repository, loaded, dataset_models=DEFAULTS, max_batch_showers=16)


def call(served: Served, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return posts(served, [kwargs], method, path)[0]


def posts(served: Served, requests: list[dict[str, Any]], method: str = "POST", path: str = "/generate") -> list[Any]:
    """Several requests on one event loop (a served app's batchers serve the loop of their first request)."""

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=served.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as http:
            return [await http.request(method, path, **kwargs) for kwargs in requests]

    return run(go)


# ------------------------------------------------------------------------------------------ manifests
def test_manifest_without_dataset_fields_reads_as_dataset_1(repository: ModelRepository) -> None:
    data = repository.manifest("tiny_pion").to_dict()
    for name in DATASET_FIELDS:
        del data[name]
    manifest = Manifest.from_json(json.dumps(data))
    assert (manifest.dataset, manifest.dataset_aliases) == ("ds1-pion", ("pion",))
    assert (manifest.geometry_kind, manifest.shower_shape, manifest.file_layout) == (
        "cylindrical",
        (N_VOXELS,),
        "calochallenge",
    )


def test_committed_demo_manifests_load_as_dataset_1_unchanged(tmp_path: Path) -> None:
    """The demo manifests without the dataset fields (as exported before the fields existed; recording a precision
    gate since rewrote them with the fields) load as Dataset 1, and loading leaves the file alone."""
    demo = ModelRepository(Path(__file__).resolve().parents[1] / "model_repo")
    legacy_models = [m for m in demo.models() if demo.manifest(m).dataset.startswith("ds1-")]
    assert sorted(legacy_models) == ["caloflow_photon", "caloflow_pion"]  # the models exported before the fields
    for model in legacy_models:
        version = demo.default_version(model)
        legacy = json.loads((demo.root / model / str(version) / "manifest.json").read_bytes())
        for name in DATASET_FIELDS:
            legacy.pop(name, None)
        path = tmp_path / model / str(version) / "manifest.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(legacy, indent=2) + "\n")
        (tmp_path / model / "default").write_text(f"{version}\n")
        before = path.read_bytes()
        manifest = ModelRepository(tmp_path).manifest(model)
        assert manifest.dataset == f"ds1-{manifest.particle}" and manifest.shower_shape == (manifest.n_voxels,)
        assert manifest == demo.manifest(model)  # the fields the committed manifest carries are the inferred ones
        assert path.read_bytes() == before


@pytest.mark.parametrize("name", ["ds1-photon", "ds2-electron", "ds3-electron", "ild-photon"])
def test_registry_manifest_fields_validate_in_the_repository_format(name: str) -> None:
    ds = dataset(name)
    fields = ds.manifest_fields()
    assert fields["file_layout"] == ds.layout
    base = shaped_manifest("m", "ild-photon" if ds.layout == "ild" else "ds2-electron").to_dict()
    base.update(fields, geometry=ds.geometry.to_dict(), n_voxels=ds.n_voxels, particle=ds.particle)
    base["outputs"][0]["shape"] = [-1, ds.n_voxels]
    base["artifacts"][0].update(sha256="ab" * 32, size_bytes=1)
    manifest = Manifest.from_json(json.dumps(base))
    assert manifest.shower_shape == ds.shower_shape and manifest.dataset == ds.name


def test_manifest_shape_must_hold_the_voxels(repository: ModelRepository) -> None:
    data = repository.manifest("tiny_ild").to_dict()
    data["shower_shape"] = [30, 30, 29]
    with pytest.raises(ManifestError, match=r"'shower_shape'.*26100.*27000"):
        Manifest.from_json(json.dumps(data))


# ------------------------------------------------------------------------------------------ HTTP
@pytest.mark.parametrize(
    ("body", "model", "shape"),
    [
        ({"dataset": "ds2-electron"}, "tiny_ds2", DS2_SHAPE),
        ({"dataset": "ild-photon"}, "tiny_ild", ILD_SHAPE),
        ({"model": "tiny_ild", "dataset": "ild-photon"}, "tiny_ild", ILD_SHAPE),
        ({"dataset": "ds1-photon"}, "tiny_photon", (N_VOXELS,)),
        ({"dataset": "photon"}, "tiny_photon", (N_VOXELS,)),
    ],
)
def test_npy_answer_has_the_datasets_shape_and_headers_say_so(
    served: Served, body: dict[str, Any], model: str, shape: tuple[int, ...]
) -> None:
    request = {**body, "energy_mev": 20_000.0 if model != "tiny_photon" else 4096.0, "count": 5, "seed": 3}
    answer = call(served, "POST", "/generate", json=request, headers={"accept": "application/x-npy"})
    assert answer.status_code == 200, answer.text
    showers = np.load(io.BytesIO(answer.content))
    assert showers.shape == (5, *shape) and showers.dtype == np.float32
    assert answer.headers["x-model-name"] == model
    assert answer.headers["x-shower-shape"] == ",".join(str(n) for n in shape)
    assert answer.headers["x-dataset"] == served.service.resolve(model).manifest.dataset
    assert answer.headers["x-file-layout"] == ("ild" if model == "tiny_ild" else "calochallenge")


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"model": "tiny_photon", "dataset": "ds2-electron"}, "dataset", ["tiny_photon", "ds1-photon", "ds2-electron"]),
        ({"model": "tiny_ild", "particle": "photon"}, "particle", ["tiny_ild", "ild-photon"]),
        ({"dataset": "ds9-muon"}, "dataset", ["ds9-muon", "ds2-electron", "ild-photon"]),
        ({"particle": "electron"}, "particle", ["electron", "'dataset'"]),
        ({"dataset": "ild-photon", "energy_mev": 500.0}, "energy_mev", ["500", "ild-photon", "allow_extrapolation"]),
    ],
)
def test_bad_dataset_requests_name_the_field_and_the_dataset(
    served: Served, body: dict[str, Any], field: str, words: list[str]
) -> None:
    request = {"energy_mev": 20_000.0, "count": 2, **body}
    answer = call(served, "POST", "/generate", json=request)
    assert answer.status_code == 400, answer.headers
    document = answer.json()
    assert document["field"] == field and document["code"] == "INVALID_ARGUMENT"
    assert all(word in document["error"] for word in words), document["error"]


def test_a_dataset_served_by_two_models_without_a_default_is_refused(
    repository: ModelRepository, loaded: list[LoadedModel]
) -> None:
    served = build_served(repository, loaded)
    answer = call(served, "POST", "/generate", json={"dataset": "ds2-electron", "energy_mev": 2e4, "count": 1})
    assert answer.status_code == 400 and answer.json()["field"] == "dataset"
    assert "tiny_ds2" in answer.json()["error"] and "tiny_ds2_b" in answer.json()["error"]
    listing = call(served, "GET", "/models").json()
    assert "ds2-electron" not in listing["dataset_defaults"]


def test_framed_v2_carries_each_frames_energies_and_lists_none_in_the_header(served: Served) -> None:
    energies = np.linspace(11_000.0, 99_000.0, 40).astype(np.float32)
    body = {"dataset": "ild-photon", "energies_mev": energies.tolist(), "seed": 9, "chunk_showers": 7}
    v2, v1 = posts(
        served,
        [
            {"json": body, "headers": {"accept": "application/vnd.caloflow.framed-v2"}},
            {"json": body, "headers": {"accept": "application/octet-stream"}},
        ],
    )
    new, old = decode_framed(v2.content), decode_framed(v1.content)
    assert new.version == 2 and "energies_mev" not in new.header and new.header["energies"] == "per-frame"
    assert new.energies_mev is not None and np.array_equal(new.energies_mev, energies)
    assert new.header["shower_shape"] == list(ILD_SHAPE) and new.header["file_layout"] == "ild"
    assert len(new.frames) == 6 and new.status is not None and new.status["status"] == "ok"
    assert old.version == 1 and old.header["energies_mev"] == energies.tolist()
    assert np.array_equal(new.showers, old.showers)  # the same showers, the energies moved
    assert new.status["sha256"] == old.status["sha256"]


def test_old_ds1_request_and_old_clients_get_what_they_got(served: Served) -> None:
    """The README's curl (``Accept: application/x-npy``) and the framed form every pre-dataset client asks for."""
    npy, framed = posts(
        served,
        [
            {"json": README_BODY, "headers": {"accept": "application/x-npy"}},
            {"json": {**README_BODY, "format": "framed"}},
        ],
    )
    assert npy.status_code == 200 and npy.headers["content-type"] == "application/x-npy"
    showers = np.load(io.BytesIO(npy.content))
    assert showers.shape == (1000, N_VOXELS) and int(npy.headers["content-length"]) == len(npy.content)
    assert (npy.headers["x-model-name"], npy.headers["x-particle"], npy.headers["x-voxels"]) == (
        "tiny_photon",
        "photon",
        str(N_VOXELS),
    )
    assert framed.status_code == 200
    assert framed.content[:8] == b"CALO" + struct.pack("<I", 1)
    decoded = decode_framed(framed.content)
    assert decoded.header["energy_mev"] == 65536 and decoded.header["n_voxels"] == N_VOXELS
    assert np.array_equal(decoded.showers, showers)
    offset, sizes = 8, []  # version 1 DATA frames: the 16-byte block, then the showers, nothing else
    while offset < len(framed.content):
        kind, _, _, length = struct.unpack_from("<BBHI", framed.content, offset)
        if kind == 2:
            _, n, n_voxels = struct.unpack_from("<QII", framed.content, offset + 8)
            sizes.append(length - 16 - 4 * n * n_voxels)
        offset += 8 + length
    assert sizes and set(sizes) == {0}


def test_model_listing_names_each_datasets_default_as_grpc_does(
    served: Served, repository: ModelRepository, loaded: list[LoadedModel]
) -> None:
    listing = call(served, "GET", "/models").json()
    expected = {
        "ds1-photon": "tiny_photon",
        "ds1-pion": "tiny_pion",
        "ds2-electron": "tiny_ds2",
        "ild-photon": "tiny_ild",
    }
    assert listing["dataset_defaults"] == expected
    by_name = {model["name"]: model for model in listing["models"]}
    assert by_name["tiny_ild"]["shower_shape"] == list(ILD_SHAPE) and by_name["tiny_ild"]["dataset_default"]
    assert not by_name["tiny_ds2_b"]["dataset_default"] and by_name["tiny_photon"]["particle_default"]
    server = ServerThread(repository, loaded, dataset_models=DEFAULTS)
    try:
        with grpc.insecure_channel(server.address) as channel:
            models = pb_grpc.ShowerServiceStub(channel).ListModels(pb.ListModelsRequest()).models
    finally:
        server.stop()
    assert {m.dataset: m.name for m in models if m.dataset_default} == expected
    assert {m.name: list(m.shower_shape) for m in models}["tiny_ild"] == list(ILD_SHAPE)


def test_both_python_clients_list_each_datasets_default(served: Served, grpc_server: ServerThread) -> None:
    with LiveServer(served) as live, HttpClient(live.url) as client:
        over_http = client.models()
    with GrpcClient(grpc_server.address) as client:
        over_grpc = client.models()
    defaults = {"ds1-photon": "tiny_photon", "ds1-pion": "tiny_pion", "ds2-electron": "tiny_ds2"}
    defaults["ild-photon"] = "tiny_ild"
    for models in (over_http, over_grpc):
        assert {m.dataset: m.name for m in models if m.dataset_default} == defaults
        by_name = {m.name: m for m in models}
        assert by_name["tiny_ds2_b"].dataset_default is False and by_name["tiny_photon"].particle_default
        assert by_name["tiny_ild"].shower_shape == ILD_SHAPE and by_name["tiny_ild"].file_layout == "ild"


def test_http_client_listing_is_optional_on_other_oip_servers() -> None:
    from caloflow_client._http_wire import listing_of

    assert listing_of(404, b'{"error": "Not Found"}') is None and listing_of(405, b"") is None
    assert listing_of(200, b'{"models": "not a list"}') is None
    assert listing_of(200, b'{"models": [], "dataset_defaults": {}}') == {"models": [], "dataset_defaults": {}}
    with pytest.raises(ServerError, match="overloaded"):
        listing_of(503, b'{"code": "UNAVAILABLE", "error": "overloaded"}')


def test_oip_states_the_shape_in_metadata_config_and_outputs(served: Served) -> None:
    metadata = call(served, "GET", "/v2/models/tiny_ild").json()
    assert metadata["outputs"][0]["shape"] == [-1, *ILD_SHAPE]
    config = call(served, "GET", "/v2/models/tiny_ds2/config").json()
    assert config["output"][0]["dims"] == list(DS2_SHAPE)
    assert config["parameters"]["dataset"]["string_value"] == "ds2-electron"
    body = {"inputs": [{"name": "INCIDENT_ENERGY", "datatype": "FP32", "shape": [2, 1], "data": [2e4, 3e4]}]}
    answer = call(served, "POST", "/v2/models/tiny_ild/infer", json=body).json()
    assert answer["outputs"][0]["shape"] == [2, *ILD_SHAPE] and len(answer["outputs"][0]["data"]) == 2 * 27000


# ------------------------------------------------------------------------------------------ gRPC and clients
@pytest.fixture(scope="module")
def grpc_server(repository: ModelRepository, loaded: list[LoadedModel]) -> Iterator[ServerThread]:
    server = ServerThread(repository, loaded, dataset_models=DEFAULTS)
    yield server
    server.stop()


def test_native_grpc_header_states_dataset_and_shape(grpc_server: ServerThread) -> None:
    request = pb.GenerateRequest(dataset="ild-photon", energy_mev=3e4, count=3, seed=1)
    with grpc.insecure_channel(grpc_server.address) as channel:
        messages = list(pb_grpc.ShowerServiceStub(channel).Generate(request))
    header = messages[0].header
    assert (header.dataset, list(header.shower_shape), header.file_layout) == ("ild-photon", [30, 30, 30], "ild")
    assert header.geometry_kind == "cartesian" and header.n_voxels == 27000
    with grpc.insecure_channel(grpc_server.address) as channel, pytest.raises(grpc.RpcError) as refused:
        list(
            pb_grpc.ShowerServiceStub(channel).Generate(
                pb.GenerateRequest(model="tiny_photon", dataset="ild-photon", energy_mev=3e4, count=1)
            )
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "ild-photon" in str(refused.value.details())


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_python_client_writes_the_official_ild_file(
    transport: str, served: Served, grpc_server: ServerThread, tmp_path: Path
) -> None:
    energies = np.linspace(12_000.0, 95_000.0, 30)
    path = tmp_path / f"ild-{transport}.h5"
    fields: dict[str, Any] = {"dataset": "ild-photon", "energies_mev": energies, "seed": 4, "chunk_showers": 8}
    if transport == "http":
        with LiveServer(served) as live, HttpClient(live.url) as client:
            info = client.generate_to_file(path, **fields)
            result = client.generate(**fields)
    else:
        with GrpcClient(grpc_server.address) as client:
            info = client.generate_to_file(path, **fields)
            result = client.generate(**fields)
    assert info.dataset == "ild-photon" and info.shape == ILD_SHAPE and info.file_layout == "ild"
    with h5py.File(path, "r") as h5:
        assert set(h5.keys()) == {"30x30"} and h5["30x30/layers"].shape == (30, *ILD_SHAPE)
        np.testing.assert_allclose(h5["30x30/energy"][:, 0], energies / 1000.0, rtol=1e-6)  # GeV
        assert h5.attrs["dataset"] == "ild-photon"
    validate_dataset_file(path, dataset("ild-photon"))  # the project's own reader accepts it
    read_energies, read = read_showers(path, layout="ild")
    np.testing.assert_allclose(read_energies[:, 0], energies, rtol=1e-6)
    assert np.array_equal(read, result.showers)


def test_python_client_npy_has_the_natural_shape(grpc_server: ServerThread, tmp_path: Path) -> None:
    path = tmp_path / "ds2.npy"
    with GrpcClient(grpc_server.address) as client:
        client.generate_to_file(path, dataset="ds2-electron", energy_mev=5e4, count=4, seed=2)
    assert np.load(path).shape == (4, *DS2_SHAPE)
