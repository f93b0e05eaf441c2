"""The deployment files, checked without a Docker engine: docker-compose.yml by the real Docker Compose v2 parser
(``docker compose config``, which validates against the compose-spec schema), the Dockerfiles by hadolint, the
Grafana dashboard's PromQL against the metrics the server's registry exports, and the numbers that must agree
across files (ports, healthcheck, repository path, stop_grace_period vs the drain settings)."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_deploy_support import (
    COMPOSE_FILE,
    DASHBOARD,
    DOCKERFILES,
    GRAFANA_DASHBOARDS,
    GRAFANA_DATASOURCES,
    MULTI_GPU_FILE,
    PROMETHEUS_CONFIG,
    ROOT,
    compose_model,
    dashboard_targets,
    exported_sample_names,
    go_duration_s,
    load_dashboard,
    metric_names,
    run_compose,
    run_hadolint,
    unknown_metrics,
)

from caloflow_server.settings import Settings

SERVER_SERVICES = ("server", "server-cpu")
HEALTHCHECK_IN_IMAGE = "/opt/caloflow/healthcheck.py"
_GRPC_CLOSE_S = 5.0  # main._GRPC_GRACE_S: gRPC's own grace after the drain


# ----------------------------------------------------------------------------------------------- compose


def test_compose_file_validates() -> None:
    for profile in ((), ("--profile", "cpu")):
        result = run_compose(*profile, "config", "--quiet")
        assert result.returncode == 0, result.stderr


def test_the_compose_validator_rejects_what_the_spec_does_not_allow(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("stop_grace_period: 45s", "stop_grace_perod: 45s"))
    result = run_compose("config", "--quiet", files=(broken,))
    assert result.returncode != 0 and "stop_grace_perod" in result.stderr


def test_plain_up_is_the_gpu_stack_and_the_cpu_profile_replaces_it() -> None:
    assert set(compose_model()["services"]) == {"server", "prometheus", "grafana"}
    assert set(compose_model("--profile", "cpu")["services"]) == {"server-cpu", "prometheus", "grafana"}


def test_the_gpu_service_reserves_one_nvidia_gpu() -> None:
    service = compose_model()["services"]["server"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert service["environment"]["CALOFLOW_DEVICE"] == "cuda"
    assert service["build"]["dockerfile"] == "docker/Dockerfile.gpu"


def test_the_multi_gpu_example_puts_one_server_on_each_gpu() -> None:
    services = compose_model(files=(COMPOSE_FILE, MULTI_GPU_FILE))["services"]
    servers = {name: services[name] for name in ("server", "server-gpu1")}
    devices = {name: s["deploy"]["resources"]["reservations"]["devices"] for name, s in servers.items()}
    assert devices == {name: [{"driver": "nvidia", "device_ids": [gpu], "capabilities": ["gpu"]}]
                       for name, gpu in (("server", "0"), ("server-gpu1", "1"))}  # fmt: skip
    published = [{port["published"] for port in s["ports"]} for s in servers.values()]
    assert not published[0] & published[1]
    assert servers["server-gpu1"]["environment"] == servers["server"]["environment"]


@pytest.mark.parametrize("name", SERVER_SERVICES)
def test_server_service_agrees_with_the_server_settings_and_its_image(name: str) -> None:
    profile = ("--profile", "cpu") if name == "server-cpu" else ()
    service = compose_model(*profile)["services"][name]
    settings = _settings_from(service["environment"])
    assert {port["target"] for port in service["ports"]} == {settings.http_port, settings.grpc_port,
                                                            settings.metrics_port} == {8000, 8001, 8002}  # fmt: skip
    drain_s = settings.drain_grace_s + settings.drain_timeout_s + _GRPC_CLOSE_S
    assert go_duration_s(service["stop_grace_period"]) > drain_s, "Docker would SIGKILL a draining server"
    assert service["healthcheck"]["test"] == ["CMD", "python", HEALTHCHECK_IN_IMAGE]
    (repo,) = [volume for volume in service["volumes"] if volume["target"] == str(settings.repo)]
    assert repo["read_only"] and Path(repo["source"]) == ROOT / "model_repo"
    image = _dockerfile(ROOT / service["build"]["dockerfile"])
    assert image.env["CALOFLOW_REPO"] == str(settings.repo) and image.env["CALOFLOW_DEVICE"] == settings.device


def test_prometheus_scrapes_the_server_name_both_profiles_answer_to() -> None:
    (job,) = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    (static,) = job["static_configs"]
    host, port = static["targets"][0].rsplit(":", 1)
    assert int(port) == Settings().metrics_port and job.get("metrics_path", "/metrics") == "/metrics"
    assert host == "server"
    aliases = compose_model("--profile", "cpu")["services"]["server-cpu"]["networks"]["default"]["aliases"]
    assert host in aliases
    prometheus = compose_model()["services"]["prometheus"]
    mounted = {Path(v["source"]): v["target"] for v in prometheus["volumes"] if v["type"] == "bind"}
    assert mounted[PROMETHEUS_CONFIG] == "/etc/prometheus/prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_grafana_is_provisioned_with_the_prometheus_datasource_and_the_dashboard() -> None:
    grafana = compose_model()["services"]["grafana"]
    mounted = {Path(v["source"]): v["target"] for v in grafana["volumes"] if v["type"] == "bind"}
    assert mounted[ROOT / "docker" / "grafana" / "provisioning"] == "/etc/grafana/provisioning"
    (provider,) = yaml.safe_load(GRAFANA_DASHBOARDS.read_text())["providers"]
    assert mounted[DASHBOARD.parent] == provider["options"]["path"]
    (datasource,) = yaml.safe_load(GRAFANA_DATASOURCES.read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    used = {target["datasource"]["uid"] for _, target in dashboard_targets(load_dashboard())}
    assert used == {datasource["uid"]}


# ----------------------------------------------------------------------------------------------- Dockerfiles


def test_dockerfiles_lint_clean() -> None:
    result = run_hadolint(*(str(path) for path in DOCKERFILES))
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_hadolint_really_lints() -> None:
    result = run_hadolint("-", stdin="FROM ubuntu\nRUN apt-get install curl\n")
    assert result.returncode != 0 and "DL3006" in result.stdout


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda path: path.name)
def test_dockerfile_runs_the_server_as_a_drainable_non_root_service(path: Path) -> None:
    image = _dockerfile(path)
    settings = Settings()
    assert image.expose == {settings.http_port, settings.grpc_port, settings.metrics_port}
    assert image.entrypoint[:2] == ["/usr/bin/tini", "--"], "PID 1 must forward SIGTERM"
    assert image.entrypoint[2:] == ["python", "-m", "caloflow_server.main"]
    assert image.user not in ("", "0", "root") and image.user.split(":")[0].isdigit()
    assert image.healthcheck.endswith(f'CMD ["python", "{HEALTHCHECK_IN_IMAGE}"]')
    assert f"COPY docker/healthcheck.py {HEALTHCHECK_IN_IMAGE}" in image.text
    assert "python server/caloflow_server/gen_protos.py" in image.text
    assert f"COPY model_repo {image.env['CALOFLOW_REPO']}" in image.text
    assert image.env["CALOFLOW_HTTP_PORT"] == str(settings.http_port)


def test_dockerignore_keeps_what_the_images_copy_and_drops_local_state() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    copied = {source for path in DOCKERFILES for source in re.findall(r"^COPY (\S+)", path.read_text(), re.M)}
    assert {"model_repo", "server", "docker/healthcheck.py"} <= copied
    for source in copied:
        assert not _ignored(source, patterns), f"{source} is COPY'd but .dockerignore drops it"
    for local in (".venv", ".git", "server/caloflow_server/_proto", "server/caloflow_server/__pycache__"):
        assert _ignored(local, patterns), f"{local} would be sent to the Docker daemon"


# ----------------------------------------------------------------------------------------------- dashboard


def test_dashboard_queries_only_metrics_the_server_exports() -> None:
    dashboard, exported = load_dashboard(), exported_sample_names()
    assert unknown_metrics(dashboard, exported) == {}
    used = set().union(*(metric_names(target["expr"]) for _, target in dashboard_targets(dashboard)))
    assert len(used) >= 15 and {"nv_inference_count", "calo_request_duration_seconds_bucket"} <= used


def test_the_metric_check_catches_a_misspelled_metric() -> None:
    dashboard = load_dashboard()
    dashboard["panels"][0]["targets"][0]["expr"] = 'sum(rate(calo_reqests_total{status="ok"}[1m])) + on() up'
    assert unknown_metrics(dashboard, exported_sample_names()) == {
        dashboard["panels"][0]["title"]: {"calo_reqests_total", "up"}
    }


def test_every_panel_has_a_query_and_the_issue_s_signals_are_all_there() -> None:
    dashboard = load_dashboard()
    for panel in dashboard["panels"]:
        assert panel.get("targets") and all(target["expr"].strip() for target in panel["targets"]), panel["title"]
    exprs = [target["expr"] for _, target in dashboard_targets(dashboard)]
    used = set().union(*(metric_names(expr) for expr in exprs))
    wanted = {
        "request rate": "calo_requests_total",
        "showers/s": "calo_showers_generated_total",
        "queue wait": "calo_queue_duration_seconds_bucket",
        "batch size": "calo_batch_size_showers_bucket",
        "rejections": "calo_request_failures_total",
        "GPU memory": "calo_gpu_memory_reserved_bytes",
        "autoscaling": "calo_pending_showers",
    }
    assert {signal: metric for signal, metric in wanted.items() if metric not in used} == {}
    latency = [expr for expr in exprs if "calo_request_duration_seconds_bucket" in expr]
    assert {q for q in ("0.5", "0.99") if any(f"histogram_quantile({q}," in e for e in latency)} == {"0.5", "0.99"}


# ----------------------------------------------------------------------------------------------- helpers


class _Dockerfile:
    """The few instructions of a Dockerfile the checks read (single-stage; continuation lines joined)."""

    def __init__(self, text: str) -> None:
        self.text = text
        lines = text.replace("\\\n", " ").splitlines()
        self.env: dict[str, str] = {}
        self.expose: set[int] = set()
        self.entrypoint: list[str] = []
        self.user = self.healthcheck = ""
        for line in (line.strip() for line in lines):
            keyword, _, rest = line.partition(" ")
            if keyword == "ENV":
                self.env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
            elif keyword == "EXPOSE":
                self.expose.update(int(port) for port in rest.split())
            elif keyword == "ENTRYPOINT":
                self.entrypoint = yaml.safe_load(rest)
            elif keyword == "USER":
                self.user = rest.strip()
            elif keyword == "HEALTHCHECK":
                self.healthcheck = rest.strip()


def _dockerfile(path: Path) -> _Dockerfile:
    return _Dockerfile(path.read_text(encoding="utf-8"))


def _settings_from(environment: dict[str, Any]) -> Settings:
    """The settings a server started with this compose environment runs with (defaults for what it leaves out)."""
    values = {key.removeprefix("CALOFLOW_").lower(): value for key, value in environment.items()}
    return Settings(**{key: value for key, value in values.items() if key in Settings.model_fields})


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore drops ``path``: a pattern matches it or one of its parent directories; patterns are
    anchored at the context root, except that ``**/`` matches in any directory (Docker's rules, minus ``!``)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        anywhere = pattern.startswith("**/")
        for prefix in prefixes:
            name = prefix.rsplit("/", 1)[-1] if anywhere else prefix
            if fnmatch.fnmatch(name, pattern.removeprefix("**/")):
                return True
    return False
