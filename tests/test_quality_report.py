"""The quality report of a served model version (evaluation note 5.2): ``caloflow repo quality`` writes it for a
copy of the committed DS1 photon demo model, ``repo verify`` catches a tampered one, ``repo show`` prints it,
``evaluate compare`` refuses reports of other evaluator settings, and the real server serves it (200 / 404)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import torch
from test_server_http_support import LiveServer, build_served

from caloflow.cli import main
from caloflow.data.standin import write_standin_file
from caloflow.evaluation import ClassifierSettings
from caloflow.evaluation.config import EvaluationConfig
from caloflow.evaluation.quality import gate_records
from caloflow.evaluation.settings import evaluator_settings, settings_hash
from caloflow_repo import (
    QUALITY_CHECKSUM_FILENAME,
    QUALITY_FILENAME,
    ManifestError,
    ModelRepository,
    sha256_file,
)
from caloflow_server import load_runtime

DEMO_REPO = Path(__file__).resolve().parents[1] / "model_repo"
QUICK = [
    "--n", "500", "--cls-hidden", "16", "--cls-epochs", "2", "--cls-batch-size", "100", "--fpd-min-samples", "100",
    "--fpd-max-samples", "400", "--kpd-batch-size", "200", "--prdc-max-samples", "500", "--no-progress",
    "--metrics", "corr,cls-high,fpd,kpd,w1,prdc",  # no histogram plots, no low-level classifiers: seconds, not a minute
]  # fmt: skip


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A copy of the photon and pion demo models; the photon's default version gets a quality report."""
    root = tmp_path_factory.mktemp("quality")
    repo = root / "repo"
    for model in ("caloflow_photon", "caloflow_pion"):
        shutil.copytree(DEMO_REPO / model, repo / model, ignore=shutil.ignore_patterns("quality.*"))
    reference = write_standin_file("photon", root / "standin_photon_2.h5", seed=2, scale=0.01, progress=False)
    argv = ["repo", "quality", "caloflow_photon", "--repo", str(repo), "--reference", str(reference), *QUICK]
    assert main(argv) == 0
    version = ModelRepository(repo).default_version("caloflow_photon")
    path = repo / "caloflow_photon" / str(version) / QUALITY_FILENAME
    return SimpleNamespace(repo=repo, reference=reference, version=version, path=path, root=root)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_repo_quality_writes_a_checksummed_report_of_the_served_version(made: SimpleNamespace) -> None:
    text = made.path.read_text()
    report = json.loads(text)
    sidecar = (made.path.parent / QUALITY_CHECKSUM_FILENAME).read_text().split()
    assert sidecar == [hashlib.sha256(text.encode()).hexdigest(), QUALITY_FILENAME]
    assert (report["model"], report["version"]) == ("caloflow_photon", made.version)
    ref = report["reference"]
    assert ref["file"] == "standin_photon_2.h5" and ref["sha256"] == sha256_file(made.reference)
    assert ref["standin"] is True and ref["label"] == "stand-in, not Geant4" and ref["n_used"] == 500
    assert "not Geant4" in report["notice"]
    assert len(report["evaluator"]["settings_hash"]) == 64 and report["evaluator"]["settings"]["n_showers"] == 500
    sample = report["sample"]
    assert sample["seed"] == 0 and sample["device"] == "cpu" and sample["precision"] == "fp32-strict"
    assert sample["artifact"] == "model.fast.onnx" and len(sample["artifact_sha256"]) == 64
    counts = {k: v for k, v in report["parameters"].items() if k != "source"}
    assert set(counts) == {"model.fast.onnx"} and min(counts.values()) > 10_000
    assert report["speed"]["showers_per_s"] > 0 and report["speed"]["batch"] == 1000
    assert report["speed"]["threads"] == 1 and report["speed"]["cpu_seconds"] > 0
    assert report["memory"]["peak_host_rss_bytes"] > 100 * 2**20
    manifest = ModelRepository(made.repo).manifest("caloflow_photon", made.version)
    gates = manifest.extra["precision_gates"]  # the demo model's int8 gate record, copied whole
    assert report["gates"] == [{**gates["int8"], "mode": "int8"}] and report["gates"][0]["verdict"] == "fail"
    metrics = report["metrics"]
    assert {"classifiers", "fpd", "kpd", "w1", "prdc", "layer_correlations"} <= set(metrics)
    assert report["evaluator"]["settings"]["metrics"] == ["corr", "cls-high", "fpd", "kpd", "w1", "prdc"]
    assert metrics["files"]["reference"]["path"] == "standin_photon_2.h5"  # no scratch paths
    assert metrics["prdc"]["n_reference"] == 500 and report["headline"]["prdc_coverage"] is not None


def test_verify_catches_a_tampered_or_unverifiable_report(
    made: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(made.repo, repo)
    report = repo / "caloflow_photon" / str(made.version) / QUALITY_FILENAME
    assert _run(capsys, "repo", "verify", "caloflow_photon", "--repo", str(repo))[0] == 0
    original = report.read_text()
    report.write_text(original.replace('"seed": 0', '"seed": 1', 1))
    code, _, err = _run(capsys, "repo", "verify", "caloflow_photon", "--repo", str(repo))
    assert code == 2 and QUALITY_FILENAME in err and "altered" in err
    report.write_text(original)
    report.with_name(QUALITY_CHECKSUM_FILENAME).unlink()
    code, _, err = _run(capsys, "repo", "verify", "caloflow_photon", "--repo", str(repo))
    assert code == 2 and QUALITY_CHECKSUM_FILENAME in err and "missing" in err


def test_repo_show_prints_the_report_summary(made: SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "repo", "show", "caloflow_photon", "--repo", str(made.repo))
    assert code == 0
    digest = sha256_file(made.path)
    report = json.loads(made.path.read_text())
    assert f"quality.json sha256 {digest[:16]} (verified)" in out
    assert "standin_photon_2.h5 (stand-in, not Geant4)" in out
    assert f"evaluator settings {report['evaluator']['settings_hash'][:16]}" in out
    assert "showers/s at batch 1000, 1 thread(s)" in out and "PRDC" in out
    assert "gates: 1 record(s) (int8 fail on cpu)" in out
    code, out, _ = _run(capsys, "repo", "show", "caloflow_pion", "--repo", str(made.repo))
    assert code == 0 and "quality:\n    none" in out


def test_compare_prints_deltas_and_refuses_other_settings_or_references(
    made: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = made.path
    code, out, _ = _run(capsys, "evaluate", "compare", str(a), str(a))
    assert code == 0 and "AUC cls-high" in out and "PRDC coverage" in out and "FORCED" not in out
    fpd_row = next(line for line in out.splitlines() if line.startswith("FPD x1e3"))
    assert fpd_row.split()[4] == "0"  # B - A of a report with itself
    report = json.loads(a.read_text())
    other_settings = tmp_path / "other_settings.json"
    other_settings.write_text(json.dumps(report | {"evaluator": report["evaluator"] | {"settings_hash": "0" * 64}}))
    code, _, err = _run(capsys, "evaluate", "compare", str(a), str(other_settings))
    assert code == 2 and "evaluator.settings_hash differs" in err
    code, out, _ = _run(capsys, "evaluate", "compare", str(a), str(other_settings), "--force")
    assert code == 0 and "FORCED" in out
    other_reference = tmp_path / "other_reference.json"
    other_reference.write_text(json.dumps(report | {"reference": report["reference"] | {"sha256": "1" * 64}}))
    code, _, err = _run(capsys, "evaluate", "compare", str(a), str(other_reference))
    assert code == 2 and "reference.sha256 differs" in err
    code, _, err = _run(capsys, "evaluate", "compare", str(a), str(made.reference))
    assert code == 2 and "not a readable JSON quality report" in err


@pytest.mark.parametrize(
    "change",
    [
        {"classifier": ClassifierSettings(hidden=17)},
        {"fpd_min_samples": 101},
        {"kpd_batch_size": 201},
        {"prdc_k": 4},
        {"prdc_max_samples": 499},
        {"min_energy_mev": 0.5},
        {"runs": 2},
        {"metrics": ("hist", "w1")},
    ],
)
def test_every_evaluator_setting_changes_the_hash(change: dict[str, Any], tmp_path: Path) -> None:
    base: dict[str, Any] = {"generated": tmp_path, "reference": tmp_path, "dataset": "photon", "out": tmp_path}
    before = settings_hash(evaluator_settings(EvaluationConfig(**base), 500))
    after = settings_hash(evaluator_settings(EvaluationConfig(**base, **change), 500))
    assert after != before
    assert settings_hash(evaluator_settings(EvaluationConfig(**base, seed=7), 500)) == before  # seeds compare
    assert settings_hash(evaluator_settings(EvaluationConfig(**base), 501)) != before  # so does N


def test_gate_records_are_copied_from_the_manifest_or_empty() -> None:
    record = {"device_class": "cpu", "verdict": "pass", "timestamp_utc": "2026-12-07T00:00:00Z", "n": 10}
    gates = {"int8": record, "bf16": {**record, "device_class": "gpu:H100"}}
    assert gate_records(SimpleNamespace(extra={"precision_gates": gates})) == [
        {**gates["bf16"], "mode": "bf16"},
        {**record, "mode": "int8"},
    ]
    assert gate_records(SimpleNamespace(extra={})) == []
    with pytest.raises(ManifestError, match=r"precision_gates\.int8\.verdict"):
        gate_records(SimpleNamespace(extra={"precision_gates": {"int8": {**record, "verdict": "maybe"}}}))


@pytest.fixture(scope="module")
def live(made: SimpleNamespace) -> Iterator[LiveServer]:
    torch.set_num_threads(1)
    repository = ModelRepository(made.repo)
    loaded = [load_runtime(repository, m, intra_op_threads=1) for m in ("caloflow_photon", "caloflow_pion")]
    with LiveServer(build_served(repository, loaded)) as server:
        yield server


def test_the_server_serves_the_report_and_404s_without_one(made: SimpleNamespace, live: LiveServer) -> None:
    with httpx.Client(base_url=live.url, timeout=60) as http:
        by_version = http.get(f"/v2/models/caloflow_photon/versions/{made.version}/quality")
        default = http.get("/v2/models/caloflow_photon/quality")
        missing = http.get("/v2/models/caloflow_pion/quality")
        unknown = http.get("/v2/models/caloflow_electron/quality")
    data = made.path.read_bytes()
    for answer in (by_version, default):
        assert answer.status_code == 200 and answer.content == data
        assert answer.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        assert answer.headers["content-type"] == "application/json" and answer.headers["x-standin"] == "true"
    assert missing.status_code == 404
    assert missing.json()["field"] == "quality" and "no quality report" in missing.json()["error"]
    assert unknown.status_code == 404 and unknown.json()["field"] == "model"
