"""``caloflow bench generate``: the command and its JSON records, the nflows reference (the published
architecture) computing the same showers as our pipeline, and the fast path giving the plain path's showers.

No timing is asserted: the figures are printed by the command, these tests check what they are made of.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from caloflow.bench._generate_runners import untrained
from caloflow.bench.nflows_reference import reference_from_sampler
from caloflow.cli import main
from caloflow.export.fast import fast_sampler
from caloflow.export.packing import folded_copy
from caloflow.export.parity import compare, parity_inputs
from caloflow.flows.blocked import FastMAFInverse
from caloflow.flows.spline import rqs_inverse
from caloflow.flows.spline_few_ops import rqs_inverse_few_ops
from caloflow.flows.spline_pm import rqs_inverse_param_major
from caloflow.sampler import CaloFlowSampler
from caloflow.training.models import count_parameters, make_teacher
from caloflow.training.presets import get_preset

RECORD_FIELDS = {
    "model",
    "format",
    "device",
    "batch_size",
    "threads",
    "calls",
    "ms_per_shower",
    "ms_per_shower_p25",
    "ms_per_shower_p75",
    "ms_per_shower_min",
    "ms_per_shower_max",
    "showers_per_s",
    "reference_ratio",
    "max_shower_l1_vs_eager",
    "peak_host_rss_bytes",
    "peak_device_memory_bytes",
    "device_utilisation_percent",
    "cpu_ms_per_shower",
}


def _showers(module: torch.nn.Module, noise_dim: int, batch: int) -> np.ndarray:
    energies, noise = parity_inputs(noise_dim, batch, seed=batch)
    with torch.inference_mode():
        return module(torch.from_numpy(energies), torch.from_numpy(noise)).numpy()


def test_command_writes_one_record_per_format_and_batch(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "generate", "--model", "tiny-photon", "--batch-sizes", "1,40", "--formats", "eager,fast"]
    assert (
        main(
            [*args, "--threads", "1", "--seconds", "0.05", "--repeats", "3", "--compare-reference", "--json", str(out)]
        )
        == 0
    )
    records = json.loads(out.read_text())
    assert {(r["format"], r["batch_size"]) for r in records} == {
        (f, b) for f in ("eager", "fast", "nflows_reference") for b in (1, 40)
    }
    for r in records:
        assert set(r) == RECORD_FIELDS
        assert r["device"] == "cpu" and r["threads"] == 1 and r["calls"] >= 3
        figures = [
            r[k] for k in RECORD_FIELDS if k.startswith(("ms_", "cpu_")) or k in ("showers_per_s", "reference_ratio")
        ]
        assert all(math.isfinite(v) and v > 0 for v in figures)
        assert r["ms_per_shower_min"] <= r["ms_per_shower_p25"] <= r["ms_per_shower"] <= r["ms_per_shower_p75"]
        assert r["ms_per_shower_p75"] <= r["ms_per_shower_max"]
        assert r["max_shower_l1_vs_eager"] < 1e-4  # every format generated the eager showers
        assert r["peak_host_rss_bytes"] > 50 * 2**20  # torch alone takes more; the CPU has no device figures
        assert r["peak_device_memory_bytes"] is None and r["device_utilisation_percent"] is None
    by_batch = {r["batch_size"]: r["peak_host_rss_bytes"] for r in records}
    assert by_batch[1] <= by_batch[40]  # a process peak: it never decreases
    table = capsys.readouterr().out
    assert "x vs reference" in table and "batch 40: (peak host RSS" in table and "CPU " in table


def test_fast_aoti_compiles_the_fast_graph_and_generates_the_eager_showers(tmp_path: Path) -> None:
    """AOTInductor (gcc over the generated C++: about a minute for the tiny model) on batches 1 and 300,
    the second above ``--chunk``, so the compiled graph also runs chunk by chunk."""
    out = tmp_path / "bench.json"
    args = ["bench", "generate", "--model", "tiny-photon", "--batch-sizes", "1,300", "--formats", "eager,fast_aoti"]
    assert main([*args, "--threads", "1", "--seconds", "0.05", "--repeats", "3", "--json", str(out)]) == 0
    records = {(r["format"], r["batch_size"]): r for r in json.loads(out.read_text())}
    assert set(records) == {(f, b) for f in ("eager", "fast_aoti") for b in (1, 300)}
    assert all(records["fast_aoti", b]["max_shower_l1_vs_eager"] < 1e-4 for b in (1, 300))


def test_bad_options_name_the_field(capsys) -> None:
    assert main(["bench", "generate", "--model", "tiny-photon", "--batch-sizes", "1,x"]) == 2
    assert "--batch-sizes" in capsys.readouterr().err
    assert main(["bench", "generate", "--model", "tiny-photon", "--formats", "eager,warp"]) == 2
    assert "--formats" in capsys.readouterr().err
    assert main(["bench", "generate", "--model", "no-such-model"]) == 2
    assert "--model" in capsys.readouterr().err


def test_nflows_reference_has_the_published_paper_parameter_counts() -> None:
    """Built from nflows with the paper preset's sizes: flow-I 97 842 and student 56 457 088 parameters,
    the published photon counts (method notes 3.6), equal to our flows' counts."""
    sampler, prep = untrained("paper", "photon", device="meta")
    with torch.device("meta"):
        reference = reference_from_sampler(sampler, prep, copy=False)
    assert sum(p.numel() for p in reference.flow1.parameters()) == count_parameters(sampler.flow1) == 97_842
    assert sum(p.numel() for p in reference.student.parameters()) == count_parameters(sampler.flow2) == 56_457_088


def test_nflows_reference_with_copied_weights_generates_our_showers() -> None:
    """Same weights, same noise: the published generation path gives our showers (float32 rounding)."""
    sampler, prep = untrained("tiny", "photon", seed=3)
    reference = reference_from_sampler(sampler, prep)
    for batch in (1, 200):
        result = compare(
            _showers(reference, sampler.noise_dim, batch), _showers(sampler, sampler.noise_dim, batch), 0.01
        )
        assert result["violations"] == 0 and result["max_shower_l1"] < 1e-4, result


@pytest.mark.parametrize(("preset", "groups", "chunk"), [("tiny", 4, 64), ("tiny", 1, None), ("small", 8, 32)])
def test_fast_path_generates_the_plain_showers(preset: str, groups: int, chunk: int | None) -> None:
    sampler, _ = untrained(preset, "photon", seed=4)
    plain = folded_copy(sampler, float16=False)
    fast = fast_sampler(plain, groups=groups, chunk=chunk)
    for batch in (1, 150):
        result = compare(_showers(fast, sampler.noise_dim, batch), _showers(plain, sampler.noise_dim, batch), 0.01)
        assert result["violations"] == 0 and result["max_shower_l1"] < 1e-4, result


def test_fast_teacher_samples_the_plain_teachers_showers() -> None:
    """A MAF flow-II (the teacher) in the fast form: one feature per pass, same showers."""
    sampler, prep = untrained("tiny", "photon", seed=5)
    config = get_preset("tiny", "photon", sampler.n_voxels)
    teacher = CaloFlowSampler(sampler.flow1, make_teacher(config, prep, seed=6), prep).eval()
    plain = folded_copy(teacher, float16=False)
    fast = fast_sampler(plain, chunk=None)
    assert all(isinstance(block, FastMAFInverse) for block in fast.flow2.blocks)
    for batch in (1, 60):
        result = compare(_showers(fast, teacher.noise_dim, batch), _showers(plain, teacher.noise_dim, batch), 0.01)
        assert result["violations"] == 0 and result["max_shower_l1"] < 1e-4, result


@pytest.mark.parametrize("inverse", [rqs_inverse_param_major, rqs_inverse_few_ops])
def test_param_major_spline_inverse_equals_the_plain_one(inverse) -> None:
    generator = torch.Generator().manual_seed(0)
    params = 2.0 * torch.randn(300, 50, 23, generator=generator)
    y = 6.0 * torch.randn(300, 50, generator=generator)
    y[0, :4] = torch.tensor([14.0, -14.0, 20.0, -20.0])  # bounds and both linear tails
    expected, _ = rqs_inverse(y.double(), params.double())
    exact = inverse(y.double(), params.transpose(1, 2).contiguous().double())
    assert torch.allclose(exact, expected, atol=1e-9, rtol=0)  # the same function, in float64
    got = inverse(y, params.transpose(1, 2).contiguous())
    assert torch.equal(got[0, 2:4], y[0, 2:4])
    # float32 rounding: a few steep bins amplify it to ~3e-4 here, in rqs_inverse's float32 as well (1.8e-4)
    assert torch.allclose(got.double(), expected, atol=1e-3, rtol=0)
    assert (got.double() - expected).abs().mean() < 2e-6
