"""Export: every format reproduces the eager sampler (batch 1 and 1000), loads without caloflow, keeps the
batch dimension dynamic; compact artifacts are small and ONNX Runtime folds their weights back at load; the
fast ONNX graph keeps the ONNX contract and the float16 weights, and the server prefers it."""

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

import caloflow.export
from caloflow.data.standin import write_standin_file
from caloflow.export import (
    DEFAULT_MEAN_RTOL,
    DEFAULT_RTOL,
    ExportError,
    ParityError,
    check_parity,
    export_sampler,
    io_spec,
    load_runner,
    reference_sampler,
)
from caloflow.export.fast import DEFAULT_GROUPS, fast_sampler
from caloflow.export.onnx_float16 import is_float16_exact, store_float16
from caloflow.export.onnx_format import export_onnx
from caloflow.export.packing import PackedMaskedLinear, prepare_for_export
from caloflow.export.parity import compare, parity_inputs
from caloflow.flows import MADE, MaskedLinear
from caloflow.publish import build_manifest
from caloflow.training import runner
from caloflow.training.run_dir import TrainedRun, load_run
from caloflow_repo import ModelRepository
from caloflow_server import OnnxRuntimeBackend, load_runtime

FORMATS = ("onnx", "fast_onnx", "torchscript", "torch_export")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> TrainedRun:
    root = tmp_path_factory.mktemp("export_run")
    data = write_standin_file("photon", root / "photon.h5", seed=5, scale=0.01, progress=False)
    runner.run_training(
        particle="photon",
        data_path=str(data),
        preset=runner.resolve_preset("tiny", "photon", 1, 1, 1),
        out=str(root / "run"),
        stages=("flow1", "teacher", "student"),
        progress=False,
    )
    return load_run(root / "run")


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("export_compact")
    return out, export_sampler(trained.sampler(), out, FORMATS, compact=True)


def test_public_api_is_pinned() -> None:
    assert sorted(caloflow.export.__all__) == sorted(
        [
            "DEFAULT_ATOL_MEV",
            "DEFAULT_FORMATS",
            "DEFAULT_MEAN_RTOL",
            "DEFAULT_RTOL",
            "FILENAMES",
            "ExportError",
            "ExportedArtifact",
            "ParityError",
            "check_parity",
            "export_sampler",
            "io_spec",
            "load_runner",
            "reference_sampler",
        ]
    )


def test_artifacts_are_named_and_versioned(exported) -> None:
    out, artifacts = exported
    assert [(a.filename, a.format) for a in artifacts] == [
        ("model.onnx", "onnx"),
        ("model.fast.onnx", "fast_onnx"),
        ("model.pt", "torchscript"),
        ("model.pt2", "torch_export"),
    ]
    assert all((out / a.filename).stat().st_size > 0 for a in artifacts)
    assert artifacts[0].format_version == artifacts[1].format_version == "onnx opset 18 / ir 10"
    assert artifacts[2].format_version.startswith("torchscript torch 2.")
    assert artifacts[3].format_version.startswith("torch.export torch 2.")


def test_every_format_matches_eager_at_batch_1_and_1000(trained, exported) -> None:
    out, artifacts = exported
    report = check_parity(out, artifacts, reference_sampler(trained, compact=True), batch_sizes=(1, 1000))
    assert set(report) == set(FORMATS)
    for fmt, by_batch in report.items():
        assert set(by_batch) == {1, 1000}
        for result in by_batch.values():
            assert result["violations"] == 0, fmt
            assert result["max_shower_l1"] <= DEFAULT_RTOL and result["mean_shower_l1"] <= DEFAULT_MEAN_RTOL, fmt


def test_parity_check_fails_on_a_different_model(trained, exported) -> None:
    out, artifacts = exported
    other = reference_sampler(trained, compact=False)  # float32 weights: differs from the float16 artifact
    with pytest.raises(ParityError, match="differ from the float64 reference"):
        check_parity(out, artifacts[:1], other, batch_sizes=(200,), atol=0.0, rtol=1e-6)


def test_comparison_is_per_shower_and_excuses_threshold_straddles() -> None:
    expected = np.array([[0.0, 0.0100001, 5.0, 1000.0], [0.0, 0.0, 0.0, 2.0]], dtype=np.float32)
    showers = np.array([[0.0100002, 0.0, 5.0, 1000.5], [0.0, 0.0, 0.0, 2.0]], dtype=np.float32)
    result = compare(showers, expected, threshold_mev=0.01)
    assert result["threshold_straddles"] == 2 and result["violations"] == 0
    assert result["max_abs_mev"] == pytest.approx(0.5, rel=1e-3)
    assert result["max_shower_l1"] == pytest.approx(0.5 / 1005.0100001, rel=1e-3)
    showers[1, 3] = 2.1  # 5 % of that shower's energy
    assert compare(showers, expected, threshold_mev=0.01)["violations"] == 1
    many = np.repeat(expected[:1], 100, axis=0)
    assert compare(many * (1 + 1e-4), many, threshold_mev=0.01)["violations"] == 1  # systematic: the mean fails


def test_onnx_keeps_constants_near_zero_and_one(tmp_path: Path) -> None:
    """onnxscript's default rewrites drop ``x * c`` for c within 1e-5 of 1 and ``x + c`` for |c| <= 1e-8."""

    class NearNoOps(torch.nn.Module):
        def forward(self, INCIDENT_ENERGY: torch.Tensor, NOISE: torch.Tensor) -> torch.Tensor:
            return torch.log10(INCIDENT_ENERGY + 1e-8) + NOISE * 0.999996

    program = torch.export.export(NearNoOps(), (torch.zeros(3, 1), torch.ones(3, 2)))
    export_onnx(program, tmp_path / "m.onnx", {})
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"INCIDENT_ENERGY": np.zeros((3, 1), np.float32), "NOISE": np.ones((3, 2), np.float32)}
    np.testing.assert_allclose(session.run(None, feeds)[0], np.full((3, 2), -8.0 + 0.999996), rtol=1e-7)


def test_float16_storage_rebuilds_every_band_exactly_and_skips_inexact_weights() -> None:
    rng = np.random.default_rng(0)
    banded = np.tril(rng.standard_normal((40, 120)).astype(np.float16).astype(np.float32), k=60)
    banded[3] = 0.0  # an empty row
    banded[5, :10], banded[5, 50:] = 0.0, 0.0  # leading and trailing zeros
    banded[7, 20] = 0.0  # a zero inside the band
    inexact = rng.standard_normal((40, 120)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "banded"], ["sum"]), helper.make_node("Add", ["sum", "inexact"], ["Y"])],
        "bands",
        [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [40, 120])],
        [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [40, 120])],
        [numpy_helper.from_array(banded, "banded"), numpy_helper.from_array(inexact, "inexact")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    assert store_float16(model, min_elements=1) == ["banded"]
    onnx.checker.check_model(model, full_check=True)
    stored = {i.name: i.data_type for i in model.graph.initializer}
    assert stored["inexact"] == onnx.TensorProto.FLOAT and "banded" not in stored
    x = rng.standard_normal((40, 120)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"X": x})[0], (x + banded) + inexact)


_WITHOUT_CALOFLOW = textwrap.dedent(
    """
    import sys
    sys.modules["caloflow"] = None  # any import of caloflow now raises ImportError
    sys.path = [p for p in sys.path if "training" not in p and "server" not in p]
    import json
    import numpy as np, onnxruntime as ort, torch

    out = sys.argv[1]
    result = {}
    for batch in (2, 7):
        energies = np.full((batch, 1), 65536.0, dtype=np.float32)
        noise = np.random.default_rng(batch).standard_normal((batch, int(sys.argv[2]))).astype(np.float32)
        session = result.setdefault("session", ort.InferenceSession(
            out + "/model.onnx", providers=["CPUExecutionProvider"]))
        onnx_out = session.run(None, {"INCIDENT_ENERGY": energies, "NOISE": noise})[0]
        fast = result.setdefault("fast", ort.InferenceSession(
            out + "/model.fast.onnx", providers=["CPUExecutionProvider"]))
        fast_out = fast.run(None, {"INCIDENT_ENERGY": energies, "NOISE": noise})[0]
        module = result.setdefault("ts", torch.jit.load(out + "/model.pt"))
        if batch == 2:
            result["materialized"] = int(module.materialize())
        program = result.setdefault("pt2", torch.export.load(out + "/model.pt2").module())
        with torch.inference_mode():
            ts_out = module(torch.from_numpy(energies), torch.from_numpy(noise)).numpy()
            pt2_out = program(torch.from_numpy(energies), torch.from_numpy(noise)).numpy()
        result[batch] = [a.tolist() for a in (energies, noise, onnx_out, fast_out, ts_out, pt2_out)]
    assert not any(name.startswith("caloflow") for name in sys.modules if sys.modules[name] is not None)
    print(json.dumps({k: v for k, v in result.items() if k not in ("session", "fast", "ts", "pt2")}))
    """
)


def test_artifacts_load_and_run_without_caloflow_and_batch_is_dynamic(trained, exported) -> None:
    out, _ = exported
    sampler = reference_sampler(trained, compact=True)
    done = subprocess.run(
        [sys.executable, "-I", "-c", _WITHOUT_CALOFLOW, str(out), str(sampler.noise_dim)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["materialized"] > 0
    for batch in ("2", "7"):  # two batch sizes through the same session / module
        energies, noise, *outputs = (np.asarray(a, dtype=np.float32) for a in result[batch])
        with torch.inference_mode():
            expected = sampler(torch.from_numpy(energies), torch.from_numpy(noise)).numpy()
        for showers in outputs:
            assert showers.shape == (int(batch), sampler.n_voxels)
            assert compare(showers, expected, sampler.threshold_mev)["violations"] == 0


def test_io_spec_matches_the_graphs(trained, exported) -> None:
    out, _ = exported
    spec = io_spec(trained.sampler())
    noise_dim, voxels = trained.prep.n_layers + trained.prep.n_voxels, trained.prep.n_voxels
    assert spec["inputs"] == [
        {"name": "INCIDENT_ENERGY", "dtype": "float32", "shape": [-1, 1], "unit": "MeV"},
        {"name": "NOISE", "dtype": "float32", "shape": [-1, noise_dim], "unit": "standard normal"},
    ]
    assert spec["outputs"] == [{"name": "SHOWERS", "dtype": "float32", "shape": [-1, voxels], "unit": "MeV"}]
    for name in ("model.onnx", "model.fast.onnx"):
        graph = onnx.load(str(out / name), load_external_data=False).graph
        for value, described in zip([*graph.input, *graph.output], [*spec["inputs"], *spec["outputs"]], strict=True):
            dims = value.type.tensor_type.shape.dim
            assert value.name == described["name"]
            assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
            assert [d.dim_param or d.dim_value for d in dims] == ["batch", described["shape"][1]]
    module = torch.jit.load(str(out / "model.pt"))
    assert [a.name for a in module.forward.schema.arguments][1:] == ["INCIDENT_ENERGY", "NOISE"]


def test_outputs_are_finite_and_non_negative_at_the_extremes(trained, exported) -> None:
    out, artifacts = exported
    energies = np.array([[256.0], [4194304.0]] * 50, dtype=np.float32)
    noise = 4.0 * np.random.default_rng(0).standard_normal((100, trained.sampler().noise_dim)).astype(np.float32)
    sampler = reference_sampler(trained, compact=True)
    with torch.inference_mode():
        expected = sampler(torch.from_numpy(energies), torch.from_numpy(noise)).numpy()
    for artifact in artifacts:
        showers = load_runner(out / artifact.filename, artifact.format)(energies, noise)
        assert np.isfinite(showers).all() and (showers >= 0).all(), artifact.format
        result = compare(showers, expected, sampler.threshold_mev)
        assert result["violations"] == 0, (artifact.format, result)


def test_compact_artifacts_are_much_smaller_than_dense(trained, exported, tmp_path: Path) -> None:
    out, _ = exported
    dense = export_sampler(trained.sampler(), tmp_path, ["torchscript"], compact=False)[0]
    dense_bytes = (tmp_path / dense.filename).stat().st_size
    student_weight_bytes = 4 * sum(m.weight.numel() for m in trained.student.modules() if isinstance(m, MaskedLinear))
    assert dense_bytes > student_weight_bytes  # the dense file holds every float32 weight
    for name in ("model.pt", "model.onnx", "model.fast.onnx", "model.pt2"):
        # unmasked half in float16: a quarter of the weights, plus graph and degree vectors
        assert (out / name).stat().st_size < 0.4 * dense_bytes, name


@pytest.mark.parametrize("filename", ["model.onnx", "model.fast.onnx"])
def test_onnxruntime_folds_the_packed_weights_at_session_creation(exported, tmp_path: Path, filename: str) -> None:
    out, _ = exported
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(str(out / filename), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    initializers = {i.name: i for i in optimized.graph.initializer}
    assert not [i.name for i in initializers.values() if i.data_type == onnx.TensorProto.FLOAT16]
    weights = [n.input[1] for n in optimized.graph.node if n.op_type in ("Gemm", "FusedGemm", "MatMul")]
    assert weights and all(w in initializers for w in weights), "a MADE weight is still computed at run time"
    energies, noise = parity_inputs(session.get_inputs()[1].shape[1], 1)
    feeds = {"INCIDENT_ENERGY": energies, "NOISE": noise}
    session.run(None, feeds)
    start = time.perf_counter()
    session.run(None, feeds)
    assert time.perf_counter() - start < 1.0


def test_torchscript_materialize_keeps_the_showers(trained, exported) -> None:
    out, _ = exported
    module = torch.jit.load(str(out / "model.pt"))
    energies, noise = (torch.from_numpy(a) for a in parity_inputs(trained.sampler().noise_dim, 5))
    with torch.inference_mode():
        rebuilt_per_call = module(energies, noise)
        entries = int(module.materialize())
        materialized = module(energies, noise)
    student = sum(m.weight.numel() for m in trained.student.modules() if isinstance(m, MaskedLinear))
    assert entries == student  # every student MADE weight, dense
    assert torch.equal(rebuilt_per_call, materialized)


def test_compact_packs_the_student_in_float16_and_keeps_flow1_float32(trained) -> None:
    sampler = trained.sampler()
    reference = reference_sampler(trained, compact=True)
    packed = prepare_for_export(sampler, compact=True)
    for ref_made, packed_made in zip(_mades(reference.flow2), _mades(packed.flow2), strict=True):
        pairs = [(ref_made.initial_layer, packed_made.initial_layer), (ref_made.final_layer, packed_made.final_layer)]
        for ref_layer, packed_layer in pairs:
            assert isinstance(packed_layer, PackedMaskedLinear)
            assert packed_layer.packed.dtype == torch.float16
            assert packed_layer.packed.numel() == int(ref_layer.mask.sum())
            assert torch.equal(packed_layer.dense_weight(), ref_layer.weight)
    student = [m.weight for m in reference.flow2.modules() if isinstance(m, MaskedLinear)]
    assert all(torch.equal(w, w.half().float()) for w in student)
    flow1 = [(m.weight, m.mask) for m in reference.flow1.modules() if isinstance(m, MaskedLinear)]
    trained_flow1 = [m.weight * m.mask for m in sampler.flow1.modules() if isinstance(m, MaskedLinear)]
    assert all(torch.equal(w, t) for (w, _), t in zip(flow1, trained_flow1, strict=True))
    assert not any(isinstance(m, MaskedLinear | PackedMaskedLinear) for m in packed.flow1.modules())

    n_student = sum(isinstance(m, MaskedLinear) for m in sampler.flow2.modules())
    scripted = prepare_for_export(sampler, compact=True, materializing=True)
    assert sum(isinstance(m, torch.jit.ScriptModule) for m in scripted.modules()) == n_student
    dense = prepare_for_export(sampler, compact=False)
    assert not any(isinstance(m, MaskedLinear | PackedMaskedLinear) for m in dense.modules())


def _mades(flow: torch.nn.Module) -> list[MADE]:
    return [m for m in flow.modules() if isinstance(m, MADE)]


def _metadata(path: Path) -> dict[str, object]:
    return {p.key: json.loads(p.value) for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_fast_onnx_is_the_fast_graph_with_the_onnx_contract(exported) -> None:
    out, _ = exported
    fast, plain = _metadata(out / "model.fast.onnx"), _metadata(out / "model.onnx")
    assert fast["caloflow.form"] == "fast" and fast["caloflow.fast_groups"] == DEFAULT_GROUPS
    assert fast["caloflow.io"] == plain["caloflow.io"] and fast["caloflow.compact"] is plain["caloflow.compact"] is True
    assert "caloflow.form" not in plain


def test_compact_fast_onnx_stores_the_float16_student_weights(trained, exported) -> None:
    """The student's weight matrices are the float16-rounded ones of model.onnx, stored as float16 in the file
    (no float32 copy left) and rebuilt to exactly those values; the file is about as small as model.onnx."""
    out, _ = exported
    fast = fast_sampler(reference_sampler(trained, compact=True), chunk=None)
    flow2 = {f"sampler.{k}": v for k, v in fast.state_dict().items() if k.startswith("flow2.")}
    expected = {k: v for k, v in flow2.items() if v.ndim == 2 and v.numel() >= 4096 and is_float16_exact(v.numpy())}
    assert sum(v.numel() for v in expected.values()) > 0.9 * sum(v.numel() for v in flow2.values())
    model = onnx.load(str(out / "model.fast.onnx"))
    large_float32 = [numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    assert not [a.shape for a in large_float32 if a.size >= 4096 and is_float16_exact(a)]
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    weights = onnx.utils.Extractor(model).extract_model([], list(expected))  # the rebuild subgraphs, no inputs
    session = ort.InferenceSession(weights.SerializeToString(), providers=["CPUExecutionProvider"])
    for name, rebuilt in zip(expected, session.run(list(expected), {}), strict=True):
        np.testing.assert_array_equal(rebuilt, expected[name].numpy(), err_msg=name)
    assert (out / "model.fast.onnx").stat().st_size < 1.1 * (out / "model.onnx").stat().st_size


def test_server_prefers_the_fast_artifact_and_its_showers_match_onnx(trained, exported, tmp_path: Path) -> None:
    out, artifacts = exported
    repository = ModelRepository(tmp_path / "repo")
    repository.add_version(
        "caloflow_photon", out, build_manifest(trained, "caloflow_photon", artifacts, {}, True, None)
    )
    loaded = load_runtime(repository, "caloflow_photon", backend="auto", intra_op_threads=1)
    assert (loaded.artifact.filename, loaded.runtime.backend) == ("model.fast.onnx", "onnx")
    plain = OnnxRuntimeBackend(out / "model.onnx", intra_op_threads=1)
    energies, noise = parity_inputs(loaded.manifest.noise_dim, 1000, seed=3)
    result = compare(loaded.run(energies, noise), plain.run(energies, noise), trained.sampler().threshold_mev)
    assert result["violations"] == 0, result


def test_unknown_format_is_refused(trained, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown export format"):
        export_sampler(trained.sampler(), tmp_path, ["savedmodel"])


def test_fast_program_is_the_fast_onnx_function_for_the_server_to_compile(trained, exported, tmp_path: Path) -> None:
    """``model.fast.pt2`` (optional format ``fast_torch_export``): the fast graph as a torch.export program,
    which the server's aoti backend compiles and checks against ``model.fast.onnx``."""
    out, _ = exported
    (artifact,) = export_sampler(trained.sampler(), tmp_path, ["fast_torch_export"], compact=True)
    assert (artifact.filename, artifact.format) == ("model.fast.pt2", "fast_torch_export")
    energies = np.geomspace(256.0, 4194304.0, 40, dtype=np.float32).reshape(-1, 1)
    noise = np.random.default_rng(1).standard_normal((40, trained.sampler().noise_dim)).astype(np.float32)
    program = load_runner(tmp_path / artifact.filename, artifact.format)(energies, noise)
    fast_onnx = load_runner(out / "model.fast.onnx", "fast_onnx")(energies, noise)
    assert compare(program, fast_onnx, trained.sampler().threshold_mev)["violations"] == 0
    np.testing.assert_allclose(program, fast_onnx, rtol=1e-3, atol=1e-3)
