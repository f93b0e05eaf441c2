"""``caloflow repo list|show|verify|set-default|prune`` on a real repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
from test_repo_support import make_manifest, stage

import caloflow.cli
from caloflow.cli import repo as repo_cli
from caloflow.errors import CaloflowError
from caloflow_repo import ModelRepository


def run(argv: list[str]) -> int:
    """Through ``caloflow.cli.main`` once the group is registered; until then a parser with main's error contract."""
    if "repo" in caloflow.cli._GROUPS:
        return caloflow.cli.main(argv)
    parser = argparse.ArgumentParser(prog="caloflow")
    repo_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except CaloflowError as exc:
        print(f"caloflow: error: {exc}", file=sys.stderr)
        return 2


@pytest.fixture
def root(tmp_path: Path) -> Path:
    repo = ModelRepository(tmp_path / "model_repo")
    for model, particle, count in (("caloflow_photon", "photon", 2), ("caloflow_pion", "pion", 1)):
        for i in range(count):
            staging = stage(tmp_path / f"staging-{model}-{i}")
            repo.add_version(model, staging, make_manifest(model, particle=particle))
    (repo.root / "README.md").write_text("readme\n")
    return repo.root


def test_list(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["repo", "list", "--repo", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"model repository {root} (* = default version)"
    assert lines[1].split()[:5] == ["MODEL", "VERSION", "PARTICLE", "DATA", "SIZE"]
    rows = [line.split() for line in lines[2:]]
    assert [row[:4] for row in rows] == [
        ["caloflow_photon", "*1", "photon", "stand-in"],
        ["caloflow_photon", "2", "photon", "stand-in"],
        ["caloflow_pion", "*1", "pion", "stand-in"],
    ]
    assert all("model.onnx," in line and "6.7 KiB" in line for line in lines[2:])


def test_list_uses_env_and_reports_missing_repo(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALOFLOW_REPO", str(root))
    assert run(["repo", "list"]) == 0
    assert "caloflow_pion" in capsys.readouterr().out
    assert run(["repo", "list", "--repo", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"caloflow: error: model repository {tmp_path / 'nowhere'} does not exist"


def test_show(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["repo", "show", "caloflow_photon", "--repo", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("caloflow_photon version 1 (default)\n")
    assert "STAND-IN showers, not Geant4" in out and "tiny (pid 22): 8 voxels in 2 layers" in out
    assert "256 - 4,194,304 MeV" in out and "NOISE float32 [-1, 8]" in out and '"preset": "small"' in out
    assert "model.onnx  onnx opset 17" in out and "created        2026-01-02T03:04:05Z by caloflow 0.1.0" in out
    assert run(["repo", "show", "caloflow_photon", "2", "--repo", str(root)]) == 0
    assert capsys.readouterr().out.startswith("caloflow_photon version 2\n")


def test_verify_all_then_corruption(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["repo", "verify", "--repo", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(out) == [
        "OK caloflow_photon/1: 2 artifacts, 6.7 KiB",
        "OK caloflow_photon/2: 2 artifacts, 6.7 KiB",
        "OK caloflow_pion/1: 2 artifacts, 6.7 KiB",
    ]
    artifact = root / "caloflow_photon" / "2" / "model.onnx"
    artifact.write_bytes(artifact.read_bytes()[:-10])
    assert run(["repo", "verify", "caloflow_photon", "1", "--repo", str(root)]) == 0
    capsys.readouterr()
    assert run(["repo", "verify", "caloflow_photon", "--repo", str(root)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "OK caloflow_photon/1: 2 artifacts, 6.7 KiB\n"
    error = captured.err.strip()
    assert error.startswith("caloflow: error: ") and f"{artifact}: 3290 bytes, the manifest says 3300" in error
    assert "\n" not in error


def test_set_default(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["repo", "set-default", "caloflow_photon", "2", "--repo", str(root)]) == 0
    assert capsys.readouterr().out == "caloflow_photon: default version 1 -> 2 (verified; config.pbtxt rewritten)\n"
    assert ModelRepository(root).default_version("caloflow_photon") == 2
    assert run(["repo", "set-default", "caloflow_photon", "1", "--repo", str(root)]) == 0
    assert ModelRepository(root).default_version("caloflow_photon") == 1
    capsys.readouterr()
    for argv, message in (
        (["caloflow_photon", "9"], "model 'caloflow_photon' has no version 9 (versions: [1, 2])"),
        (["caloflow_photon", "01"], "invalid version '01'"),
        (["../etc", "1"], "invalid model name '../etc'"),
        (["caloflow_kaon", "1"], "no model 'caloflow_kaon'"),
    ):
        assert run(["repo", "set-default", *argv, "--repo", str(root)]) == 2
        assert message in capsys.readouterr().err


def test_prune_keeps_only_the_default_version(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["repo", "set-default", "caloflow_photon", "2", "--repo", str(root)]) == 0
    capsys.readouterr()
    assert run(["repo", "prune", "caloflow_photon", "--repo", str(root)]) == 0
    assert capsys.readouterr().out == "caloflow_photon: removed versions [1], kept the default version 2\n"
    assert ModelRepository(root).versions("caloflow_photon") == [2]
    assert run(["repo", "prune", "caloflow_pion", "--repo", str(root)]) == 0
    assert capsys.readouterr().out == "caloflow_pion: removed versions none, kept the default version 1\n"
    assert run(["repo", "prune", "caloflow_kaon", "--repo", str(root)]) == 2
    assert "no model 'caloflow_kaon'" in capsys.readouterr().err
