"""The precision gate bites: on a tiny exported model, the unmutated fp32 graph passes every fidelity check, and
each mutation the note names (an fp16 cast on MeV outputs, fractions below 6e-5 flushed to zero, a bfloat16 layer
renormalisation) fails one. ``caloflow repo gate`` writes its record into the manifest and verify still passes."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from precision_support import GEOMETRY, bfloat16, make_spread_repository

from caloflow.cli import main
from caloflow.precision.gate import Float64Graph, GateSettings, GateShape, evaluate_gate
from caloflow_repo import ManifestError, ModelRepository, enabled_precisions
from caloflow_server.runtime import build_runtime

SETTINGS = GateSettings(n=1500, seed=3, batch=500, classifier_hidden=64, classifier_epochs=4, speed_repeats=2)


class Mutated:
    """The fp32 runner with ``mutate(showers, incident)`` applied to its output: a deliberately wrong mode."""

    def __init__(self, runner: Any, mutate: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        self._runner = runner
        self._mutate = mutate

    def run(self, incident_mev: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return self._mutate(self._runner.run(incident_mev, noise), incident_mev)


def fp16_output(showers: np.ndarray, incident: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return showers.astype(np.float16).astype(np.float32)  # MeV in float16: inf above 65 504


def flush_small_fractions(showers: np.ndarray, incident: np.ndarray) -> np.ndarray:
    return np.where(showers / incident.reshape(-1, 1) < 6e-5, np.float32(0), showers)


def bf16_renormalisation(showers: np.ndarray, incident: np.ndarray) -> np.ndarray:
    """Each layer rescaled to its float32 energy, with the voxels and the running sum in bfloat16."""
    result = showers.copy()
    offsets = GEOMETRY["layer_offsets"]
    for start, stop in itertools.pairwise(offsets):
        voxels = bfloat16(showers[:, start:stop])
        total = np.zeros(len(showers), np.float32)
        for column in range(voxels.shape[1]):
            total = bfloat16(total + voxels[:, column])
        target = showers[:, start:stop].sum(axis=1)
        result[:, start:stop] = voxels * (target / np.where(total > 0, total, 1))[:, None]
    return result


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    torch.set_num_threads(1)
    return make_spread_repository(tmp_path_factory.mktemp("gate"))


@pytest.fixture(scope="module")
def runners(repository: ModelRepository) -> tuple[Any, Float64Graph, GateShape]:
    manifest = repository.verify("tiny_spread")
    artifact = manifest.artifacts[0]
    data = (repository.root / "tiny_spread" / "1" / artifact.filename).read_bytes()
    return build_runtime(data, artifact, manifest, "cpu", 1), Float64Graph(data, 1), GateShape.of(manifest)


def test_unmutated_fp32_passes_every_fidelity_check(runners: tuple[Any, Float64Graph, GateShape]) -> None:
    fp32, exact, shape = runners
    outcome = evaluate_gate(fp32, fp32, exact, shape, SETTINGS)
    assert outcome["failed"] == ["speed"], outcome["failed"]  # the same graph is not 1.10x faster than itself
    assert outcome["checks"]["paired"]["mode_vs_float64"]["flip_rate"] == 0.0


@pytest.mark.parametrize(
    ("mutate", "bites"),
    [(fp16_output, "sanity"), (flush_small_fractions, "paired"), (bf16_renormalisation, "paired")],
    ids=["fp16-mev-output", "flush-below-6e-5", "bf16-renormalisation"],
)
def test_each_mutation_fails_the_gate(
    runners: tuple[Any, Float64Graph, GateShape], mutate: Callable[[np.ndarray, np.ndarray], np.ndarray], bites: str
) -> None:
    fp32, exact, shape = runners
    outcome = evaluate_gate(Mutated(fp32, mutate), fp32, exact, shape, SETTINGS)
    assert outcome["verdict"] == "fail"
    assert bites in outcome["failed"], outcome["failed"]


def test_gate_command_records_int8_in_the_manifest(repository: ModelRepository, tmp_path: Path) -> None:
    out = tmp_path / "gate.json"
    args = ["repo", "gate", "tiny_spread", "--precision", "int8", "--repo", str(repository.root), "--threads", "1"]
    assert main([*args, "--n", "600", "--batch", "300", "--epochs", "2", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    manifest = repository.verify("tiny_spread")  # the artifacts are untouched: verify passes
    assert manifest.extra["precision_gates"]["int8"] == record
    assert record["device_class"] == "cpu" and record["n"] == 600 and record["versions"]["onnxruntime"]
    assert set(record["checks"]) == {"sanity", "paired", "classifier", "distribution", "speed"}
    assert record["checks"]["paired"]["mode_vs_float64"]["mean_shower_l1"] > 0  # int8 really ran
    expected = ("fp32-strict", "int8") if record["verdict"] == "pass" else ("fp32-strict",)
    assert enabled_precisions(manifest.extra, "cpu", manifest.artifacts[0].sha256) == expected


def test_a_malformed_gate_record_is_refused_naming_the_field(repository: ModelRepository) -> None:
    with pytest.raises(ManifestError, match=r"precision_gates\.int8\.verdict"):
        repository.record_precision_gate(
            "tiny_spread", 1, "int8", {"device_class": "cpu", "verdict": "maybe", "timestamp_utc": "x"}
        )
    with pytest.raises(ManifestError, match=r"precision_gates\.fp32-strict"):
        repository.record_precision_gate(
            "tiny_spread", 1, "fp32-strict", {"device_class": "cpu", "verdict": "pass", "timestamp_utc": "x"}
        )
