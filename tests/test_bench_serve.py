"""``caloflow bench serve`` runs end to end against a real server process on the tiny repository and writes its
figures; only their presence and sanity are checked - the figures themselves are for people, not assertions."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from test_server_support import make_repository

from caloflow.cli import main


def _bench_serve(tmp_path: Path, *options: str) -> dict[str, Any]:
    """``caloflow bench serve`` on the tiny repository's ``tiny_photon`` with ``options``; its --json report."""
    repository = make_repository(tmp_path / "repo")
    out = tmp_path / "bench.json"
    argv = ["bench", "serve", "--repo", str(repository.root), "--model", "tiny_photon", *options, "--json", str(out)]
    assert main(argv) == 0
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def test_bench_serve_reports_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _bench_serve(
        tmp_path, "--count", "600", "--grpc-count", "300", "--engine-batches", "1,16", "--engine-seconds", "0.2",
        "--latency-requests", "5", "--one-shower-clients", "3", "--env", "CALOFLOW_MAX_BATCH_SHOWERS=32",
    )  # fmt: skip
    engine = report["engine_showers_per_s"]
    assert set(engine) == {"batch 1", "batch 16", next(k for k in engine if "server's layout" in k)}
    assert "batch 32 x" in next(k for k in engine if "server's layout" in k)  # the --env setting reached the layout
    rates = [*engine.values(), report["http_showers_per_s"], report["grpc_showers_per_s"]]
    assert all(math.isfinite(rate) and rate > 0 for rate in rates)
    for latency in (report["idle_latency"], report["loaded_latency"]):
        assert latency["n"] >= 1 and 0 < latency["p50_s"] <= latency["p99_s"] <= latency["max_s"]
    assert 0 < report["rss_before_mb"] <= report["rss_peak_mb"] and report["rss_after_mb"] <= report["rss_peak_mb"]
    printed = capsys.readouterr().out
    assert "HTTP npy stream" in printed and "p99 under load / idle p99" in printed
    assert report["one_shower_clients"] == 3 and "under load (3 one-shower clients)" in printed


def test_bench_serve_without_one_shower_clients_times_the_stream_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _bench_serve(
        tmp_path, "--count", "200", "--grpc-count", "0", "--engine-batches", "16", "--engine-seconds", "0.1",
        "--latency-requests", "2", "--one-shower-clients", "0",
    )  # fmt: skip
    assert report["http_showers_per_s"] > 0 and report["loaded_latency"] is None and report["one_shower_clients"] == 0
    assert "under load" not in capsys.readouterr().out
    assert main(["bench", "serve", "--repo", str(tmp_path / "repo"), "--one-shower-clients", "-1"]) == 2


def test_bench_serve_rejects_a_setting_that_is_not_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "serve", "--repo", str(tmp_path), "--env", "MAX_BATCH=3"]) == 2
    assert "CALOFLOW_NAME=VALUE" in capsys.readouterr().err


def test_bench_serve_engine_only_reports_the_engine_and_starts_no_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _bench_serve(
        tmp_path, "--engine-only", "--engine-batches", "8", "--engine-seconds", "0.1",
        "--env", "CALOFLOW_MAX_CONCURRENT_BATCHES=1", "--env", "CALOFLOW_INTRA_OP_THREADS=1",
    )  # fmt: skip
    layouts = {"batch 8", "batch 64 x 1 calls in parallel (the server's layout)"}
    assert set(report["engine_showers_per_s"]) == set(report["engine_cpu_ms_per_shower"]) == layouts
    assert all(value > 0 for value in report["engine_cpu_ms_per_shower"].values())
    assert report["engine_backend"] == "onnx"
    assert report["http_showers_per_s"] is None and report["idle_latency"] is None  # no server was started
    assert "HTTP npy stream" not in capsys.readouterr().out
