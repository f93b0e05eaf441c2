"""L2LFlows: per-layer contexts (checked by gradients), the renormalisation's guarantees, presets and parameter
counts, the crop, and a tiny train -> distil -> generate -> export -> serve run on a small ILD stand-in file
(stand-in, not Geant4)."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from test_server_datasets import posts
from test_server_grpc import ServerThread
from test_server_http_support import build_served

from caloflow.bench.generate import Timing
from caloflow.data.dataset_files import check_dataset_file
from caloflow.data.datasets import dataset
from caloflow.data.hdf5 import read_incident_energies, read_showers
from caloflow.data.standin import write_standin_file
from caloflow.families.l2lflows import (
    L2LPreprocessing,
    L2LSampler,
    centred_crop,
    context_widths,
    get_l2l_preset,
    layer_context,
    make_flow1,
    make_layer_students,
    make_layer_teachers,
    renormalize,
)
from caloflow.families.l2lflows.bench import l2l_bench_model, l2l_runners, print_l2l_summary
from caloflow.families.l2lflows.crop import CropError, LateralCrop
from caloflow.families.l2lflows.export import reference_l2l_sampler
from caloflow.families.l2lflows.inputs import batch_inputs
from caloflow.families.l2lflows.publish import publish_l2l_run
from caloflow.families.l2lflows.runner import describe_l2l_preset, l2l_parameter_counts, load_l2l_run, run_l2l
from caloflow.families.l2lflows.scan import scanned_sampler
from caloflow.publish import Published
from caloflow.training.data import ShowerTensors
from caloflow.training.pipeline import RunConfigError
from caloflow_client import GrpcClient
from caloflow_repo import ManifestError, ModelRepository
from caloflow_server import RuntimeLoadError, load_runtime

ILD = dataset("ild-photon")
N_LAYERS = ILD.n_layers
REPO_ROOT = Path(__file__).resolve().parents[1]


def tiny_sampler(chain: str = "student", seed: int = 0) -> L2LSampler:
    preset = get_l2l_preset("tiny", ILD)
    cells = preset.crop_cells**2
    teachers = make_layer_teachers(preset, N_LAYERS, cells, seed)
    layers = teachers if chain == "teacher" else make_layer_students(preset, teachers, seed)
    prep = L2LPreprocessing(N_LAYERS, cells, ILD.threshold_mev, ratio_scale=0.05)
    return L2LSampler(make_flow1(preset, N_LAYERS, seed), layers, prep, preset.window).eval()


# ------------------------------------------------------------------------------------------ contexts
def test_context_widths_follow_the_slides_table() -> None:
    assert context_widths(N_LAYERS, 100, 5)[:7] == [2, 102, 202, 302, 402, 502, 502]
    assert set(context_widths(N_LAYERS, 100, 5)[5:]) == {502}


def test_layer_context_reads_only_the_window_before_the_layer() -> None:
    images = [torch.randn(3, 4, requires_grad=True) for _ in range(N_LAYERS)]
    energy, incident = torch.randn(3, 1), torch.randn(3, 1)
    for layer in (0, 1, 3, 7, N_LAYERS - 1):
        context = layer_context(images, layer, 5, energy, incident)
        assert context.shape == (3, 2 + 4 * min(layer, 5))
        if layer == 0:
            assert not context.requires_grad  # no image at all
            continue
        grads = torch.autograd.grad(context.square().sum(), images, allow_unused=True)
        seen = [j for j, g in enumerate(grads) if g is not None and g.abs().sum() > 0]
        assert seen == list(range(max(layer - 5, 0), layer))


def test_a_generated_layer_never_depends_on_later_layers_noise() -> None:
    sampler = tiny_sampler("student")
    noise = torch.randn(2, N_LAYERS, sampler.cells_per_layer, requires_grad=True)
    energies = torch.full((2, N_LAYERS), 50.0)
    images = sampler.images(torch.full((2, 1), 5e4), energies, noise)
    for layer in (0, 6, 17):
        (grad,) = torch.autograd.grad(images[:, layer].sum(), noise, retain_graph=True)
        per_layer = grad.abs().sum(dim=(0, 2))
        assert per_layer[layer + 1 :].sum() == 0  # never a later layer
        assert per_layer[layer] > 0
        if layer > 0:
            assert per_layer[layer - 1] > 0  # the previous layer's image is in the context


def test_a_teachers_density_never_depends_on_later_layers() -> None:
    sampler = tiny_sampler("teacher")
    batch = ShowerTensors(torch.rand(3, N_LAYERS, sampler.cells_per_layer) * 5, torch.full((3, 1), 3e4))
    inputs = batch_inputs(batch, sampler.prep, torch.Generator().manual_seed(0))
    images = inputs.images.detach().requires_grad_(True)
    for layer in (0, 4, 12, N_LAYERS - 1):
        log_prob = sampler.layers[layer].log_prob(images[:, layer], inputs.context(layer, 5, images))
        (grad,) = torch.autograd.grad(log_prob.sum(), images)
        per_layer = grad.abs().sum(dim=(0, 2))
        assert per_layer[layer + 1 :].sum() == 0 and per_layer[layer] > 0
        assert (per_layer[max(layer - 5, 0) : layer] > 0).all()
        assert per_layer[: max(layer - 5, 0)].sum() == 0


# ------------------------------------------------------------------------------------------ renormalisation
def reference_renormalize(cells: np.ndarray, target: float, threshold: float) -> np.ndarray:
    """Method note 3.6, step by step: sort, reverse cumsum, smallest passing rank, scale and cut."""
    order = np.argsort(cells, kind="stable")
    s = cells[order]
    remaining = np.cumsum(s[::-1])[::-1]
    out = np.zeros_like(cells)
    for k in range(len(s)):
        if remaining[k] > 0 and s[k] * target / remaining[k] >= threshold:
            kept = order[k:]
            out[kept] = cells[kept] * target / remaining[k]
            return out
    return out


def test_renormalisation_keeps_cells_above_threshold_and_the_target_energy() -> None:
    rng = np.random.default_rng(3)
    cells = rng.lognormal(-4.0, 2.0, size=(400, 100)) * (rng.random((400, 100)) < 0.6)
    targets = np.exp(rng.uniform(np.log(0.01), np.log(500.0), size=400))
    threshold = ILD.threshold_mev
    out = renormalize(torch.from_numpy(cells), torch.from_numpy(targets), threshold).numpy()
    kept = out > 0
    assert (out[kept] >= threshold * (1 - 1e-12)).all()
    above = targets >= threshold
    assert above.any() and (~above).any()
    np.testing.assert_allclose(out[above].sum(axis=1), targets[above], rtol=1e-12)
    assert (out[~above] == 0).all()
    for row in range(0, 400, 7):
        np.testing.assert_allclose(out[row], reference_renormalize(cells[row], targets[row], threshold), rtol=1e-12)


def test_renormalisation_of_a_batch_of_layers() -> None:
    cells = torch.rand(5, N_LAYERS, 16, dtype=torch.float64)
    targets = torch.rand(5, N_LAYERS, dtype=torch.float64) * 10
    out = renormalize(cells, targets, 0.1)
    assert out.shape == cells.shape
    keep = targets >= 0.1
    torch.testing.assert_close(out.sum(-1)[keep], targets[keep])


# ------------------------------------------------------------------------------------------ presets
def made_parameters(d: int, c: int, h: int, bins: int) -> int:
    """nflows MADE with one hidden block, linear tails (3K - 1 spline parameters per feature)."""
    p = 3 * bins - 1
    return (d * h + h) + (c * h + h) + (h * h + h) + h * d * p + d * p


@pytest.mark.parametrize("name", ["paper", "small", "tiny"])
def test_preset_parameter_counts_follow_the_made_formula(name: str) -> None:
    preset = get_l2l_preset(name, ILD)
    cells = preset.crop_cells**2
    counts = l2l_parameter_counts(preset, ILD)
    if name == "paper":
        assert (preset.crop_cells, preset.window, preset.teacher.n_blocks, preset.bins) == (10, 5, 8, 8)
        assert 150e6 < counts["teachers"] < 250e6  # note 3.2 estimates ~180 M
    expected = sum(
        preset.teacher.n_blocks * made_parameters(cells, c, preset.teacher.hidden, preset.bins)
        for c in context_widths(N_LAYERS, cells, preset.window)
    )
    assert counts["teachers"] == expected
    assert counts["generation"] == counts["flow1"] + counts["students"]
    assert f"{counts['teachers']:,d}" in describe_l2l_preset(preset, ILD)


# ------------------------------------------------------------------------------------------ crop
def test_crop_is_centred_on_the_axis_and_keeps_the_cells() -> None:
    grid = ILD.geometry
    crop = centred_crop(grid, 10, (13.92, 14.87))  # the ILD gun position (note 2.3)
    assert (crop.x_start, crop.z_start, crop.shower_shape) == (9, 10, (N_LAYERS, 10, 10))
    showers = np.zeros((2, *ILD.shower_shape))
    showers[1, 4, 9, 19] = 7.0
    showers[1, 4, 8, 19] = 5.0  # outside the crop
    flat = crop.apply(showers.reshape(2, -1)).reshape(2, N_LAYERS, 10, 10)
    assert flat[1].sum() == 7.0 and flat[1, 4, 0, 9] == 7.0
    with pytest.raises(CropError, match="does not fit"):
        LateralCrop(N_LAYERS, 30, 30, 25, 0, 10)


# ------------------------------------------------------------------------------------------ train -> distil -> generate
@pytest.fixture(scope="module")
def ild_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("l2l") / "ild_standin.h5"
    return write_standin_file("ild-photon", path, seed=1, scale=0.0005, progress=False)


@pytest.fixture(scope="module")
def tiny_run(ild_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("l2l") / "run"
    run_l2l(
        ds=ILD,
        data_path=str(ild_file),
        preset=get_l2l_preset("tiny", ILD),
        out=str(out),
        stages=("flow1", "teacher", "student"),
        seed=3,
        progress=False,
    )
    return out


def test_tiny_run_trains_every_stage_and_reports_kl_and_drift(tiny_run: Path) -> None:
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert set(summary["stages"]) == {"flow1", "teacher", "student"} and summary["standin"]
    student = summary["stages"]["student"]
    assert len(student["kl_per_layer"]) == N_LAYERS and all(np.isfinite(student["kl_per_layer"]))
    drift = student["drift"]["student"]
    assert drift["layers"] == list(range(N_LAYERS - 5, N_LAYERS))
    assert len(drift["w1_hits_generated_context"]) == 5
    record = json.loads((tiny_run / "run.json").read_text())
    assert record["family"] == "l2lflows" and record["crop"]["x_cells"][1] - record["crop"]["x_cells"][0] == 4


def train_flow1(ild_file: Path, out: Path, seed: int = 3, resume: bool = False) -> None:
    preset = get_l2l_preset("tiny", ILD)
    run_l2l(ds=ILD, data_path=str(ild_file), preset=preset, out=str(out), stages=("flow1",), seed=seed, resume=resume)


def test_training_is_seeded_and_resume_keeps_a_finished_run(tiny_run: Path, ild_file: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    train_flow1(ild_file, again)
    first = torch.load(tiny_run / "flow1" / "best.pt", weights_only=True)
    second = torch.load(again / "flow1" / "best.pt", weights_only=True)
    assert all(torch.equal(first[k], second[k]) for k in first)
    before = (again / "flow1" / "summary.json").read_text()
    train_flow1(ild_file, again, resume=True)
    assert json.loads((again / "flow1" / "summary.json").read_text())["epochs"] == json.loads(before)["epochs"]
    with pytest.raises(RunConfigError, match="different seed"):
        train_flow1(ild_file, again, seed=4)


def test_generation_is_a_pure_function_of_energies_and_noise(tiny_run: Path) -> None:
    run = load_l2l_run(tiny_run)
    sampler = run.sampler()
    energies = torch.linspace(1e4, 1e5, 6).reshape(6, 1)
    noise = torch.randn(6, sampler.noise_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        showers = sampler(energies, noise)
        again = sampler(energies, noise)
        layer_energies = sampler.layer_energies(energies, noise[:, :N_LAYERS])
    assert torch.equal(showers, again) and showers.shape == (6, run.crop.n_voxels)
    kept = showers[showers > 0]
    assert (kept >= ILD.threshold_mev * (1 - 1e-6)).all()
    sums = showers.reshape(6, N_LAYERS, -1).sum(-1)
    above = layer_energies >= ILD.threshold_mev
    torch.testing.assert_close(sums[above], layer_energies[above], rtol=1e-5, atol=1e-4)
    assert (sums[~above] == 0).all()


def sample_file(run: Path, out: Path, chain: str, energies_from: Path) -> tuple[dict[str, object], np.ndarray]:
    """``caloflow sample`` into ``out`` (seed 2): the file's attributes (checked an ild-photon file) and showers."""
    from caloflow.cli import main

    argv = ["sample", str(run), "--out", str(out), "--flow", chain, "--seed", "2", "--device", "cpu"]
    assert main([*argv, "--energies-from", str(energies_from), "--batch-size", "16", "--no-progress"]) == 0
    energies, showers = read_showers(out, ILD.geometry, layout="ild")
    np.testing.assert_allclose(energies[:, 0], read_incident_energies(energies_from, layout="ild"), rtol=1e-6)
    return dict(check_dataset_file(out, ILD).attrs), np.asarray(showers)


def test_sample_writes_either_chain_seeded_as_an_ild_file_with_the_crop_embedded(
    tiny_run: Path, ild_file: Path, tmp_path: Path
) -> None:
    """``caloflow sample RUN --flow teacher|student`` on an L2LFlows run: the ILD layout at the given file's
    energies, the crop's cells the chain's showers for the seed's noise (the teacher's fast inverse is the MAF
    teacher chain), zeros outside, the crop and the chain recorded."""
    run, crop = load_l2l_run(tiny_run), load_l2l_run(tiny_run).crop
    attrs, showers = sample_file(tiny_run, tmp_path / "teacher.h5", "teacher", ild_file)
    cells = f"{crop.x_start}:{crop.x_start + crop.size},{crop.z_start}:{crop.z_start + crop.size}"
    assert attrs["flow"] == "teacher" and attrs["family"] == "l2lflows" and attrs["crop"] == cells
    assert "not Geant4" in str(attrs["description"]) and not showers[:, ~_crop_mask(crop)].any()
    energies = torch.as_tensor(read_incident_energies(ild_file, layout="ild")[:, None], dtype=torch.float32)
    noise = torch.randn(len(energies), run.prep.n_layers + crop.n_voxels, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = run.sampler("teacher")(energies, noise).numpy()
    np.testing.assert_allclose(crop.apply(showers), expected, rtol=1e-3, atol=1e-3)
    student_attrs, student = sample_file(tiny_run, tmp_path / "student.h5", "student", ild_file)
    assert student_attrs["flow"] == "student" and not np.array_equal(student, showers)


def _crop_mask(crop: LateralCrop) -> np.ndarray:
    """(V,) True on the crop's cells of the full grid."""
    grid = np.zeros((crop.n_layers, crop.full_x, crop.full_z), dtype=bool)
    grid[:, crop.x_start : crop.x_start + crop.size, crop.z_start : crop.z_start + crop.size] = True
    return grid.ravel()


# ------------------------------------------------------------------------------------------ export -> serve
@pytest.fixture(scope="module")
def published(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelRepository, Published]:
    repo_root = tmp_path_factory.mktemp("l2l_repo")
    return ModelRepository(repo_root), publish_l2l_run(tiny_run, repo_root, "l2l_tiny", make_default=True)


def test_export_is_one_scanned_graph_in_parity_with_a_manifest_declaring_the_crop(
    published: tuple[ModelRepository, Published], tiny_run: Path
) -> None:
    repository, result = published
    manifest = result.manifest
    crop = load_l2l_run(tiny_run).crop
    assert (manifest.dataset, manifest.shower_shape, manifest.n_voxels) == ("ild-photon", crop.shower_shape, 480)
    assert manifest.geometry["crop"]["x_cells"] == [crop.x_start, crop.x_start + 4]
    assert manifest.noise_dim == N_LAYERS + 480
    assert all(figures["violations"] == 0 for figures in result.parity["onnx"].values())
    graph = onnx.load(str(repository.root / "l2l_tiny" / "1" / "model.onnx")).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("Scan") == 1 + get_l2l_preset("tiny", ILD).flow1.n_blocks  # the chain + flow-I's MAF solves
    assert len(ops) < 1000  # one copy of each flow's ops, not one per layer and pass


def served_showers(repository: ModelRepository, body: dict[str, object]) -> tuple[np.ndarray, np.ndarray]:
    """The same request as ``.npy`` over HTTP (the real app) and over gRPC (a real server in a thread)."""
    loaded = [load_runtime(repository, "l2l_tiny", 1, intra_op_threads=1)]
    served = build_served(repository, loaded, dataset_models={"ild-photon": "l2l_tiny"})
    answer = posts(served, [{"json": body, "headers": {"accept": "application/x-npy"}}])[0]
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-shower-shape"] == ",".join(str(n) for n in (N_LAYERS, 4, 4))
    server = ServerThread(repository, loaded, dataset_models={"ild-photon": "l2l_tiny"})
    try:
        with GrpcClient(server.address) as client:
            over_grpc = client.generate(**body).showers  # type: ignore[arg-type]
    finally:
        server.stop()
    return np.load(io.BytesIO(answer.content)), over_grpc


def test_served_by_dataset_with_the_same_bits_over_http_and_grpc(published: tuple[ModelRepository, Published]) -> None:
    repository, _ = published
    body: dict[str, object] = {"dataset": "ild-photon", "energy_mev": 42_000.0, "count": 5, "seed": 11}
    over_http, over_grpc = served_showers(repository, body)
    assert over_http.shape == (5, N_LAYERS, 4, 4) and over_http.dtype == np.float32
    assert np.array_equal(over_http, np.asarray(over_grpc).reshape(over_http.shape))
    kept = over_http[over_http > 0]
    assert kept.size > 0 and (kept >= ILD.threshold_mev * (1 - 1e-6)).all()
    assert np.unique(over_http.reshape(5, -1), axis=0).shape[0] == 5  # five different showers


def test_energies_outside_the_dataset_range_are_refused_naming_the_field(
    published: tuple[ModelRepository, Published],
) -> None:
    repository, _ = published
    loaded = [load_runtime(repository, "l2l_tiny", 1, intra_op_threads=1)]
    served = build_served(repository, loaded, dataset_models={"ild-photon": "l2l_tiny"})
    answer = posts(served, [{"json": {"dataset": "ild-photon", "energy_mev": 5_000.0, "count": 1}}])[0]
    assert answer.status_code == 400 and answer.json()["field"] == "energy_mev"
    assert "allow_extrapolation" in answer.json()["error"]


def test_requests_for_another_datasets_shape_are_refused_naming_the_field(
    published: tuple[ModelRepository, Published], tmp_path: Path
) -> None:
    """A Dataset 1 request to the ILD model, an ILD request to a Dataset 1 model (the committed demo), OIP
    inputs shaped for Dataset 1: each a 4xx naming the field; the ILD model still serves after them."""
    repository, _ = published
    shutil.copytree(repository.root / "l2l_tiny", tmp_path / "l2l_tiny")
    shutil.copytree(REPO_ROOT / "model_repo" / "caloflow_photon", tmp_path / "caloflow_photon")
    both = ModelRepository(tmp_path)
    loaded = [load_runtime(both, name, intra_op_threads=1) for name in ("l2l_tiny", "caloflow_photon")]
    served = build_served(both, loaded, dataset_models={"ild-photon": "l2l_tiny"})
    ild = {"energy_mev": 42_000.0, "count": 1}
    refused = posts(
        served,
        [
            {"json": {"model": "l2l_tiny", "dataset": "ds1-photon", **ild}},
            {"json": {"model": "l2l_tiny", "particle": "photon", **ild}},
            {"json": {"model": "caloflow_photon", "dataset": "ild-photon", **ild}},
            {"json": {"dataset": "ds3-electron", **ild}},
        ],
    )
    fields = [answer.json().get("field") for answer in refused]
    assert [answer.status_code // 100 for answer in refused] == [4, 4, 4, 4], [a.text for a in refused]
    assert fields == ["dataset", "particle", "dataset", "dataset"], [a.text for a in refused]
    ds1_noise = {"name": "NOISE", "datatype": "FP32", "shape": [1, 373], "data": [0.0] * 373}
    ds1_energy = {"name": "INCIDENT_ENERGY", "datatype": "FP32", "shape": [1, 1], "data": [1_000.0]}
    oip = posts(
        served,
        [{"json": {"inputs": [ds1_energy]}}, {"json": {"inputs": [{**ds1_energy, "data": [42_000.0]}, ds1_noise]}}],
        path="/v2/models/l2l_tiny/infer",
    )
    assert [answer.status_code for answer in oip] == [400, 400], [a.text for a in oip]
    assert "allow_extrapolation" in oip[0].text and "inputs[1].name" in oip[1].text
    body = {"json": {"dataset": "ild-photon", **ild, "seed": 3}, "headers": {"accept": "application/json"}}
    still = posts(served, [body])[0]
    assert still.status_code == 200 and np.asarray(still.json()["showers"]).shape == (1, N_LAYERS, 4, 4)


@pytest.mark.parametrize("grid", ["shower_shape", "artifact"])
def test_an_artifact_whose_grid_disagrees_with_its_manifest_is_refused_at_load(
    published: tuple[ModelRepository, Published], tmp_path: Path, grid: str
) -> None:
    """``shower_shape`` edited to another 480-cell shape (the grid no longer the crop's), or the whole manifest
    moved to a 5 x 5 crop the 4 x 4 artifact does not produce: refused at load naming the field, the files kept."""
    repository, _ = published
    version = tmp_path / "l2l_tiny" / "1"
    shutil.copytree(repository.root / "l2l_tiny" / "1", version)
    manifest = json.loads((version / "manifest.json").read_text())
    if grid == "shower_shape":
        manifest["shower_shape"] = [N_LAYERS, 2, 8]
    else:
        cells = N_LAYERS * 25
        manifest.update(n_voxels=cells, shower_shape=[N_LAYERS, 5, 5])
        manifest["geometry"].update(n_voxels=cells, shape=[N_LAYERS, 5, 5])
        manifest["outputs"][0]["shape"] = [-1, cells]
    edited = json.dumps(manifest, indent=2)
    (version / "manifest.json").write_text(edited)
    expected = "shower_shape" if grid == "shower_shape" else "n_voxels is 480, the manifest says 750"
    with pytest.raises((ManifestError, RuntimeLoadError), match=expected):
        load_runtime(ModelRepository(tmp_path), "l2l_tiny", 1, intra_op_threads=1)
    assert (version / "manifest.json").read_text() == edited and (version / "model.onnx").exists()


# ------------------------------------------------------------------------------------------ benchmark
def test_bench_resolves_ild_models_and_runs_the_student_chain_on_the_datasets_energies() -> None:
    assert l2l_bench_model("tiny-photon") is None and l2l_bench_model("huge-ild") is None
    resolved = l2l_bench_model("tiny-ild")
    assert resolved is not None and l2l_bench_model("tiny-ild-photon") is not None
    name, ds, student, teacher = resolved
    assert ds is ILD and "untrained" in name and student.noise_dim == teacher.noise_dim == N_LAYERS * 17
    assert student.layers.flow(0).block(0).inverse_autoregressive
    assert not teacher.layers.flow(0).block(0).inverse_autoregressive
    runners, inputs = l2l_runners(ds, student, teacher, ["eager"], threads=1)
    energies, noise = inputs(4)
    assert energies.min() == ILD.energies.min_mev and energies.max() == ILD.energies.max_mev
    with torch.no_grad():
        expected = student(torch.from_numpy(energies), torch.from_numpy(noise)).numpy()
    np.testing.assert_allclose(runners["eager"](energies, noise), expected, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="eager, onnx and teacher"):
        l2l_runners(ds, student, teacher, ["fast"], threads=1)


def test_bench_summary_prints_teacher_student_ratios_and_the_published_figure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def timing(fmt: str, batch: int, ms: float) -> Timing:
        return Timing("paper-ild", fmt, "cpu", batch, 1, 1, ms, ms, ms, ms, ms, 1e3 / ms, None, None)

    print_l2l_summary([timing("onnx", 1, 500.0), timing("teacher", 1000, 800.0), timing("onnx", 1000, 10.0)])
    out = capsys.readouterr().out
    assert "batch 1000: teacher 800.000 / student (onnx) 10.000 = 80.0x" in out
    assert "batch 1:" not in out  # no teacher timed at batch 1: no ratio
    assert "2,066 ms per shower" in out and "hardware not stated" in out
    assert "ours, onnx: 10.000 ms per shower at batch 1000 (published / ours = 206.6)" in out


def test_the_scanned_export_form_samples_what_the_layer_loop_samples() -> None:
    """Four blocks: random permutations that differ per layer (two blocks share one fixed permutation)."""
    preset = get_l2l_preset("tiny", ILD)
    preset = replace(preset, teacher=replace(preset.teacher, n_blocks=4))
    cells = preset.crop_cells**2
    teachers = make_layer_teachers(preset, N_LAYERS, cells, 5)
    prep = L2LPreprocessing(N_LAYERS, cells, ILD.threshold_mev, ratio_scale=0.05)
    sampler = L2LSampler(make_flow1(preset, N_LAYERS, 5), make_layer_students(preset, teachers, 5), prep, 5).eval()
    energies = torch.linspace(1e4, 1e5, 3).reshape(3, 1)
    noise = torch.randn(3, sampler.noise_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = sampler(energies, noise)
        scanned = scanned_sampler(sampler)(energies, noise)
        compact = reference_l2l_sampler(sampler, compact=True)
        packed = scanned_sampler(compact, half=True)(energies, noise)
    # float rounding only (the padded context sums in another order); a wrong layer's weights moves whole showers
    torch.testing.assert_close(scanned, expected, rtol=1e-3, atol=1e-2)
    torch.testing.assert_close(packed, compact(energies, noise), rtol=1e-3, atol=1e-2)


def test_repo_quality_evaluates_the_crop_model_on_its_crop_only(
    published: tuple[ModelRepository, Published], ild_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``caloflow repo quality`` of the crop model against a full-grid ILD file: the served crop is written in
    the ILD layout and compared with the reference restricted to the manifest's crop; quality.json says so."""
    from caloflow.cli import main

    repository, result = published
    shutil.copytree(repository.root / "l2l_tiny", tmp_path / "l2l_tiny")
    n = len(read_incident_energies(ild_file, layout="ild"))
    argv = ["repo", "quality", "l2l_tiny", "--repo", str(tmp_path), "--reference", str(ild_file), "--n", str(n)]
    assert main([*argv, "--metrics", "w1", "--threads", "1", "--no-progress", "--keep", str(tmp_path / "kept")]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "l2l_tiny" / "1" / "quality.json").read_text())
    crop = result.manifest.geometry["crop"]
    cells = f"{crop['x_cells'][0]}:{crop['x_cells'][1]},{crop['z_cells'][0]}:{crop['z_cells'][1]}"
    assert report["evaluator"]["settings"]["crop"] == cells and report["metrics"]["crop"]["cells"] == cells
    assert f"crop region x0:x1,z0:z1 = {cells} only" in printed
    assert report["metrics"]["n_showers"] == n and np.isfinite(report["headline"]["w1_mean_normalised"])
    kept = json.loads((tmp_path / "kept" / "evaluation" / "metrics.json").read_text())  # --keep: the files stay
    assert kept["crop"]["cells"] == cells and (tmp_path / "kept" / "generated.h5").is_file()
