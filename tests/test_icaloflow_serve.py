"""iCaloFlow end to end on tiny models: stand-in file -> train (all five stages) -> export (the fast one-graph
ONNX, its loops as Scan loops, what the server prefers; float64 parity) -> a real server process, for Dataset 2
and Dataset 3; a seeded DS2 request gives the same bits over native HTTP, native gRPC and the Python client over
both, and bad requests name their field."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnx
import pytest
import torch
from server_process import ServerProcess, server_process

from caloflow.data.datasets import dataset
from caloflow.data.standin import write_standin_file
from caloflow.families.icaloflow.data import load_layer_data
from caloflow.families.icaloflow.export import publish_run
from caloflow.families.icaloflow.presets import get_preset
from caloflow.families.icaloflow.training import TrainContext, make_conditioning, train_run
from caloflow_client import GrpcClient, HttpClient
from caloflow_repo import Manifest, ModelRepository

SEED = 20260
ENERGIES = np.geomspace(1.5e3, 8e5, 6).astype(np.float32)
MODELS = {"ds2-electron": "icf_ds2", "ds3-electron": "icf_ds3"}


Published = dict[str, tuple[Manifest, dict[str, dict[int, dict[str, float | int]]]]]


def _train_and_publish(
    name: str, root: Path, repo: Path
) -> tuple[Manifest, dict[str, dict[int, dict[str, float | int]]]]:
    ds = dataset(name)
    path = write_standin_file(name, root / f"{name}.h5", seed=7, scale=0.002, progress=False)
    preset = get_preset("tiny", ds)
    data = load_layer_data(path, ds)
    ctx = TrainContext(
        root / name, ds, preset, make_conditioning(ds, preset, data), data, 0, torch.device("cpu"), False
    )
    train_run(ctx)
    _, manifest, parity = publish_run(ctx.directory, repo, MODELS[name], formats=("fast_onnx",), parity_batches=(2,))
    return manifest, parity


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("icf_serve")


@pytest.fixture(scope="module")
def published(root: Path) -> Published:
    torch.set_num_threads(1)
    return {name: _train_and_publish(name, root, root / "repo") for name in MODELS}


@pytest.fixture(scope="module")
def server(root: Path, published: Published) -> Iterator[ServerProcess]:
    env = {"CALOFLOW_MODELS": ",".join(MODELS.values()), "CALOFLOW_WARMUP_BATCH_SIZES": "1"}
    with server_process(root / "repo", root / "server.log", env) as running:
        yield running.wait_ready()


@pytest.mark.parametrize("name", list(MODELS))
def test_export_holds_parity_and_the_manifest_comes_from_the_registry(published: Published, name: str) -> None:
    ds, (manifest, parity) = dataset(name), published[name]
    assert manifest.dataset == name and manifest.shower_shape == ds.shower_shape
    assert manifest.energy_range_mev == (ds.energies.min_mev, ds.energies.max_mev)
    assert manifest.standin and "not Geant4" in manifest.description
    assert manifest.noise_dim == ds.n_layers + (ds.n_voxels // ds.n_layers) * (1 + 2 * (ds.n_layers - 1))
    assert [a.format for a in manifest.artifacts] == ["fast_onnx"]
    assert parity["fast_onnx"][2]["violations"] == 0 and parity["fast_onnx"][2]["max_shower_l1"] < 1e-3


@pytest.mark.parametrize("name", list(MODELS))
def test_served_graph_holds_its_loops_as_scan_loops(root: Path, published: Published, name: str) -> None:
    repo = ModelRepository(root / "repo")
    manifest = published[name][0]
    path = repo.artifact_path(MODELS[name], manifest.version, manifest.artifacts[0].filename)
    graph = onnx.load(str(path)).graph
    blocks = get_preset("tiny", dataset(name)).flow1.n_blocks
    assert sum(node.op_type == "Scan" for node in graph.node) == blocks + 1  # flow-1's blocks, the flow-3 steps
    assert len(graph.node) < 1_000  # not unrolled: 45 features x blocks MAF passes and 44 flow-3 steps


def _http(server: ServerProcess, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{server.url}/generate", json={**body, "format": "npy"}, timeout=120)


def _grpc(server: ServerProcess) -> np.ndarray:
    from caloflow_server._proto.caloflow.v1 import showers_pb2 as pb
    from caloflow_server._proto.caloflow.v1 import showers_pb2_grpc as pb_grpc

    request = pb.GenerateRequest(model="icf_ds2", energies_mev=ENERGIES.tolist(), seed=SEED, chunk_showers=4)
    with grpc.insecure_channel(server.grpc_target) as channel:
        chunks = list(pb_grpc.ShowerServiceStub(channel).Generate(request, timeout=120))
    assert chunks[-1].trailer.status == "ok"
    return np.frombuffer(b"".join(c.data for c in chunks[1:-1]), dtype="<f4").reshape(len(ENERGIES), -1)


def _clients(server: ServerProcess) -> list[np.ndarray]:
    """The same request through the project's Python client over HTTP and over gRPC."""
    results = []
    for client in (HttpClient(server.url), GrpcClient(server.grpc_target)):
        with client:
            results.append(client.generate(dataset="ds2-electron", energies_mev=ENERGIES, seed=SEED).showers)
    return results


def test_seeded_ds2_request_is_bit_identical_across_protocols(server: ServerProcess) -> None:
    answer = _http(server, {"dataset": "ds2-electron", "energies_mev": ENERGIES.tolist(), "seed": SEED})
    assert answer.status_code == 200, answer.text
    showers = np.load(io.BytesIO(answer.content))
    assert showers.shape == (len(ENERGIES), dataset("ds2-electron").n_voxels) and np.isfinite(showers).all()
    np.testing.assert_array_equal(_grpc(server), showers)
    for through_client in _clients(server):
        np.testing.assert_array_equal(through_client.reshape(showers.shape), showers)
    other = _http(server, {"model": "icf_ds2", "energies_mev": ENERGIES[:2].tolist(), "seed": SEED + 1})
    assert not np.array_equal(np.load(io.BytesIO(other.content)), showers[:2])


def test_ds3_model_serves_its_dataset(server: ServerProcess) -> None:
    answer = _http(server, {"dataset": "ds3-electron", "energy_mev": 5e4, "count": 2, "seed": 1})
    assert answer.status_code == 200, answer.text
    assert np.load(io.BytesIO(answer.content)).shape == (2, dataset("ds3-electron").n_voxels)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"model": "icf_ds2", "energy_mev": 500.0}, "energy_mev", ["500", "allow_extrapolation"]),
        ({"model": "icf_ds2", "energy_mev": 2e6}, "energy_mev", ["allow_extrapolation"]),
        ({"model": "icf_ds2", "dataset": "ds1-photon", "energy_mev": 4096.0}, "dataset", ["icf_ds2", "ds1-photon"]),
    ],
)
def test_bad_requests_name_the_field(
    server: ServerProcess, body: dict[str, object], field: str, words: list[str]
) -> None:
    answer = _http(server, {"count": 1, **body})
    assert answer.status_code in (400, 422), answer.text
    document = answer.json()
    assert document["field"] == field and all(w in document["error"] for w in words), document


def test_repository_lists_both_models_with_their_datasets(root: Path, published: Published) -> None:
    repo = ModelRepository(root / "repo")
    assert {repo.manifest(model).dataset for model in MODELS.values()} == set(MODELS)


@pytest.mark.parametrize("chain", ["teacher", "student"])
def test_sample_writes_either_chain_seeded_into_a_calochallenge_file(
    root: Path, published: Published, chain: str
) -> None:
    """``caloflow sample RUN --flow teacher|student`` on an iCaloFlow run: the dataset's CaloChallenge layout at the
    given file's energies, the chain's showers for the seed's noise (the student against its eager float64 chain,
    the teacher against its fast form in float64 - the eager MAF inverse is O(D^2) passes, and the fast form's
    parity with it is tested in test_icaloflow.py), the chain and renormalisation recorded (on by default);
    ``--no-renormalise`` changes the showers."""
    from caloflow.cli import main
    from caloflow.data.dataset_files import check_dataset_file
    from caloflow.data.hdf5 import read_incident_energies, read_showers
    from caloflow.families.icaloflow.export import load_run
    from caloflow.families.icaloflow.fast import fast_icaloflow_sampler

    ds, run_dir = dataset("ds2-electron"), root / "ds2-electron"
    energies_from = root / "energies_20.h5"
    if not energies_from.exists():
        write_standin_file(ds.name, energies_from, seed=3, scale=0.0002, progress=False)

    def sample(out: Path, *extra: str) -> tuple[dict[str, object], np.ndarray]:
        argv = ["sample", str(run_dir), "--out", str(out), "--flow", chain, "--seed", "2", "--device", "cpu"]
        assert main([*argv, "--energies-from", str(energies_from), "--no-progress", *extra]) == 0
        energies, showers = read_showers(out, ds.geometry)
        np.testing.assert_allclose(energies[:, 0], read_incident_energies(energies_from), rtol=1e-6)
        return dict(check_dataset_file(out, ds).attrs), np.asarray(showers)

    attrs, showers = sample(root / f"{chain}.h5")
    run = load_run(run_dir)
    recorded = (attrs["flow"], attrs["family"], attrs["dataset"], attrs["renormalise"])
    assert recorded == (chain, "icaloflow", ds.name, int(run.preset.renormalise)) and run.preset.renormalise
    assert "not Geant4" in str(attrs["description"]) and showers.shape == (20, ds.n_voxels)
    energies = torch.as_tensor(read_incident_energies(energies_from)[:, None], dtype=torch.float64)
    noise = torch.randn(len(energies), run.sampler().noise_dim, generator=torch.Generator().manual_seed(2))
    chain_model = run.sampler(chain) if chain == "student" else fast_icaloflow_sampler(run.sampler(chain))
    with torch.no_grad():
        expected = chain_model.double()(energies, noise.double()).numpy()
    assert np.abs(showers - expected).sum() <= 1e-4 * np.abs(expected).sum()
    plain_attrs, plain = sample(root / f"{chain}_plain.h5", "--no-renormalise")  # the reference's path
    assert plain_attrs["renormalise"] == 0 and not np.array_equal(plain, showers)


def test_renormalise_is_refused_for_a_run_of_another_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from caloflow.cli import main
    from caloflow.training.sampling import sample_to_file

    (tmp_path / "run.json").write_text('{"family": "l2lflows"}')
    with pytest.raises(ValueError, match="--renormalise applies to iCaloFlow runs"):
        sample_to_file(tmp_path, tmp_path / "x.h5", renormalise=True)
    assert main(["export", str(tmp_path), "--repo", str(tmp_path / "repo"), "--model", "m", "--no-renormalise"]) != 0
    assert "--renormalise applies to iCaloFlow runs" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()
