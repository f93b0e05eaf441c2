"""``caloflow bench generate --model PRESET-ds2|ds3``: the iCaloFlow chains through the command's timing loop, and
the published generation chain rebuilt from nflows (its parameter count, and the same showers as our chains
given the same weights and noise: what makes the speed ratio meaningful). No timing is asserted."""

import json
import math
from pathlib import Path

import numpy as np
import torch

from caloflow.cli import main
from caloflow.data.datasets import dataset
from caloflow.export.parity import compare
from caloflow.families.icaloflow.bench import icaloflow_bench_model
from caloflow.families.icaloflow.context import Conditioning
from caloflow.families.icaloflow.export import parity_inputs
from caloflow.families.icaloflow.fast import fast_icaloflow_sampler
from caloflow.families.icaloflow.models import parameter_counts
from caloflow.families.icaloflow.nflows_reference import copy_chain_weights, reference_chain
from caloflow.families.icaloflow.presets import get_preset

DS2 = dataset("ds2-electron")
COND2 = Conditioning(DS2.n_layers, DS2.n_voxels // DS2.n_layers)


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _showers(module: torch.nn.Module, noise_dim: int, batch: int) -> np.ndarray:
    energies, noise = parity_inputs(DS2, noise_dim, batch, seed=batch)
    with torch.inference_mode():
        return module(torch.from_numpy(energies), torch.from_numpy(noise)).numpy()


def test_nflows_reference_chain_has_the_published_ds2_parameter_count() -> None:
    """Built from nflows at paper size (real tensors, about 1 s and 1 GB with the teachers it takes the
    permutations from): flow-1 + the flow-2 / flow-3 students = 24 519 512, the published DS2 student chain,
    equal to ours; each piece as the note's table 2.4 gives it."""
    chain = reference_chain(get_preset("paper", DS2), COND2)
    flow1, student2, student3 = chain.transforms()
    assert [_parameters(f) for f in (flow1, student2, student3)] == [2_752_600, 8_165_248, 13_601_664]
    assert _parameters(chain) == 24_519_512 == parameter_counts(get_preset("paper", DS2), COND2)["student_chain"]
    nflows = __import__("nflows.transforms", fromlist=["InverseTransform"])
    assert type(flow1._transforms[0]) is nflows.MaskedPiecewiseRationalQuadraticAutoregressiveTransform  # a MAF
    assert all(isinstance(s._transforms[0], nflows.InverseTransform) for s in (student2, student3))  # IAF
    assert isinstance(flow1._transforms[1], nflows.ReversePermutation)
    assert len(flow1._transforms) == 15  # 8 blocks, 7 permutations: the last one deleted


def test_nflows_reference_chain_has_the_published_ds3_parameter_count() -> None:
    ds3 = dataset("ds3-electron")
    cond = Conditioning(ds3.n_layers, ds3.n_voxels // ds3.n_layers)
    with torch.device("meta"):
        chain = reference_chain(get_preset("paper", ds3), cond)
    assert _parameters(chain) == 95_088_152


def test_nflows_reference_with_copied_weights_generates_our_fast_chains_showers() -> None:
    """Same weights, same noise: the nflows chain gives the showers of our fast chain (float32 rounding); with
    its own weights it does not (so the comparison can fail)."""
    model = icaloflow_bench_model("tiny-ds2")
    assert model is not None
    reference = reference_chain(model.preset, model.cond, cut_mev=model.student.cut_mev)
    unrelated = _showers(reference, model.student.noise_dim, 16)
    copy_chain_weights(reference, model.student)
    fast = fast_icaloflow_sampler(model.student)
    for batch in (1, 64):
        ours, theirs = (
            _showers(fast, model.student.noise_dim, batch),
            _showers(reference, model.student.noise_dim, batch),
        )
        result = compare(theirs, ours, 0.01)
        assert result["violations"] == 0 and result["max_shower_l1"] < 1e-4, result
        assert (ours > 0).mean() > 0.5  # untrained, but showers with energy in them
    assert compare(unrelated, _showers(fast, model.student.noise_dim, 16), 0.01)["max_shower_l1"] > 0.1


def test_command_times_the_icaloflow_chains_beside_the_reference(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "generate", "--model", "tiny-ds2", "--batch-sizes", "1,7", "--formats", "eager,fast"]
    options = ["--threads", "1", "--seconds", "0.05", "--repeats", "3", "--compare-reference", "--json", str(out)]
    assert main([*args, *options]) == 0
    records = json.loads(out.read_text())
    assert {(r["format"], r["batch_size"]) for r in records} == {
        (f, b) for f in ("eager", "fast", "nflows_reference") for b in (1, 7)
    }
    for r in records:
        assert r["model"] == "tiny-ds2 (untrained)" and r["calls"] >= 3 and r["threads"] == 1
        assert math.isfinite(r["reference_ratio"]) and r["reference_ratio"] > 0
        assert r["ms_per_shower_min"] <= r["ms_per_shower"] <= r["ms_per_shower_max"]
        assert r["max_shower_l1_vs_eager"] < 1e-4  # the reference is a parity figure: same weights, same noise
        assert r["peak_host_rss_bytes"] > 50 * 2**20
    table = capsys.readouterr().out
    assert "nflows_reference / fast = " in table and "batch 10000: 77.6 / 8,179" in table


def test_command_times_the_exported_student_and_the_teacher_chain(tmp_path: Path, capsys) -> None:
    """fast_onnx (the served form, exported compact: float16 student weights) and the teacher chain (its fast
    form: the eager teacher costs twice as much again; both go through the same chain selection) at batch 1."""
    out = tmp_path / "bench.json"
    args = [
        "bench",
        "generate",
        "--model",
        "tiny-ds2",
        "--batch-sizes",
        "1",
        "--formats",
        "eager,fast_onnx,teacher_fast",
    ]
    assert main([*args, "--threads", "1", "--repeats", "1", "--json", str(out)]) == 0
    records = {r["format"]: r for r in json.loads(out.read_text())}
    assert set(records) == {"eager", "fast_onnx", "teacher_fast"}
    assert records["fast_onnx"]["max_shower_l1_vs_eager"] < 1e-3  # the student chain, float16-stored weights
    assert records["teacher_fast"]["max_shower_l1_vs_eager"] > 0.1  # another model: the teachers
    assert all(r["reference_ratio"] is None and r["calls"] == 1 for r in records.values())
    assert "teacher_fast / fast_onnx = " in capsys.readouterr().out


def test_model_names_resolve_to_the_family_and_its_dataset() -> None:
    ds3 = icaloflow_bench_model("tiny-ds3-electron")
    assert ds3 is not None and ds3.ds.name == "ds3-electron" and ds3.preset.name == "tiny"
    assert icaloflow_bench_model("tiny-ild") is None and icaloflow_bench_model("tiny-photon") is None


def test_bad_format_names_the_field(capsys) -> None:
    assert main(["bench", "generate", "--model", "tiny-ds2", "--formats", "eager,warp", "--batch-sizes", "1"]) == 2
    assert "--formats warp" in capsys.readouterr().err
