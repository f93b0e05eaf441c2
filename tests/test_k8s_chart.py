"""The Helm chart (``deploy/helm/caloflow-serve``), checked without a cluster by the real tools: Helm's own engine
(``helm-python-sdk``: lint, render, values schema), the Kubernetes OpenAPI schemas of the oldest and newest versions
the chart claims (``kubernetes-validate``), KEDA's CRD schema (npm ``@kubernetes-models/keda`` under node), and the
real Envoy's ``--mode validate``. Then cross-checks of the rendered objects against the server's own settings, and
every command a probe or hook would run, executed here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_deploy_support import exported_sample_names, metric_names
from test_k8s_support import (
    CHART,
    DASHBOARD,
    EXAMPLES,
    HEALTHCHECK,
    KEDA_VALIDATOR,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    ROOT,
    SUPERSONIC_VALUES,
    container_env,
    deep_merge,
    envoy_config,
    exec_commands,
    find,
    keda_trigger,
    load_values,
    render,
    scrape_job,
    server_container,
    venv_tool,
)

from caloflow_server.settings import Settings

AUTOSCALE = load_values(CHART.parents[1] / "values" / "values-autoscale.yaml")
CRD_KINDS = {"ScaledObject", "ServiceMonitor"}
HEALTH_PATHS = {"/v2/health/ready", "/v2/health/live"}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")


def seconds(duration: str) -> float:
    match = _DURATION.match(duration)
    assert match, duration
    return float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]


def example_id(path: Path) -> str:
    return path.stem


@pytest.fixture(scope="module", params=EXAMPLES, ids=example_id)
def example(request: pytest.FixtureRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    values = load_values(request.param)
    return values, render(values)


# ------------------------------------------------------------------------------------------------- helm
def test_there_are_examples_for_a_laptop_a_gpu_site_autoscaling_and_auth() -> None:
    assert {p.stem for p in EXAMPLES} == {"values-cpu", "values-gpu", "values-autoscale", "values-auth"}


@pytest.mark.parametrize("values_file", [None, *EXAMPLES], ids=lambda p: "defaults" if p is None else p.stem)
def test_helm_lint_finds_nothing_above_info(values_file: Path | None) -> None:
    import helm_python as helm

    report = helm.lint(str(CHART), load_values(values_file) if values_file else None, namespace=NAMESPACE)
    assert report["errors"] == [] and report["total_charts_linted"] == 1, report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report["messages"]


def test_every_example_renders_the_core_objects(example: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    values, objects = example
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    server, envoy = f"{RELEASE}-caloflow-serve", f"{RELEASE}-caloflow-serve-envoy"
    assert {("Deployment", server), ("Service", server), ("Deployment", envoy), ("Service", envoy),
            ("ConfigMap", envoy), ("PodDisruptionBudget", server)} <= names  # fmt: skip
    assert find(objects, "Service", "server")["spec"]["clusterIP"] == "None", "the server Service is headless"
    assert ("ScaledObject" in {k for k, _ in names}) == values.get("keda", {}).get("enabled", False)


def test_the_values_schema_rejects_a_typo_a_bad_enum_and_a_foreign_env_name() -> None:
    import helm_python as helm

    for bad in ({"server": {"replica": 2}}, {"server": {"device": "tpu"}}, {"envoy": {"routeTimeout": "forever"}},
                {"server": {"env": {"MAX_BATCH_SHOWERS": "1"}}}, {"keda": {"trigger": "cpu"}}):  # fmt: skip
        with pytest.raises(helm.HelmValuesError):
            render(bad)


def test_the_chart_refuses_a_volume_without_its_source() -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmRenderError, match="claimName is required"):
        render({"server": {"modelRepository": {"storageType": "pvc"}}})


# ----------------------------------------------------------------------------------- kubernetes schemas
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_core_objects_validate_strictly_against_the_kubernetes_schemas(
    example: tuple[dict[str, Any], list[dict[str, Any]]], version: str
) -> None:
    import kubernetes_validate

    _, objects = example
    checked = 0
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked >= 6


def test_kubernetes_validate_rejects_a_misspelt_field() -> None:
    import kubernetes_validate

    deployment = find(render(), "Deployment", "server")
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)


def _keda_validate(objects: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node, "node is not installed (the python image ships Node 20)"
    assert (KEDA_VALIDATOR.parent / "node_modules").exists(), "run `npm ci --prefix tests/k8s` (make setup does)"
    return subprocess.run([node, str(KEDA_VALIDATOR)], input=json.dumps(objects), capture_output=True, text=True,
                          timeout=60, cwd=KEDA_VALIDATOR.parent)  # fmt: skip


def test_every_scaled_object_validates_against_kedas_schema() -> None:
    variants = [
        AUTOSCALE,
        deep_merge(AUTOSCALE, {"keda": {"trigger": "queueTime"}}),
        deep_merge(AUTOSCALE, {"keda": {"customQuery": "sum(calo_active_streams)", "customThreshold": "8"}}),
    ]
    scaled = [find(render(v), "ScaledObject") for v in variants]
    done = _keda_validate(scaled)
    assert done.returncode == 0 and done.stdout.count("ok ScaledObject/") == 3, done.stdout + done.stderr


def test_the_keda_validator_rejects_a_broken_scaled_object() -> None:
    broken = find(render(AUTOSCALE), "ScaledObject")
    broken["spec"]["triggers"][0]["metadata"]["threshold"] = 300
    broken["spec"]["maxReplicaCount"] = "four"
    done = _keda_validate([broken])
    assert done.returncode == 1 and "invalid ScaledObject/" in done.stdout, done.stdout + done.stderr


# ------------------------------------------------------------------------------------------------ envoy
def _envoy_validate(config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"envoy-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([venv_tool("envoy"), "--mode", "validate", "-c", str(path), "--log-level", "warning"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_rendered_envoy_config_passes_envoys_own_validation(
    example: tuple[dict[str, Any], list[dict[str, Any]]], tmp_path: Path
) -> None:
    _, objects = example
    done = _envoy_validate(envoy_config(objects), tmp_path)
    assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr


def test_envoy_validates_every_optional_filter_together_and_rejects_a_broken_config(tmp_path: Path) -> None:
    jwks = json.dumps({"keys": [{"kty": "oct", "alg": "HS256", "k": "c2VjcmV0"}]})
    everything = {"envoy": {"rateLimit": {"enabled": True}, "auth": {"enabled": True, "localJwks": jwks},
                            "loadBalancerPolicy": "ROUND_ROBIN"}}  # fmt: skip
    config = envoy_config(render(everything))
    done = _envoy_validate(config, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    config["static_resources"]["clusters"][0]["lb_policy"] = "FASTEST"
    broken = _envoy_validate(config, tmp_path)
    assert broken.returncode != 0 and "FASTEST" in broken.stdout + broken.stderr


def test_envoy_serves_http_and_grpc_with_no_route_timeout_to_the_headless_service() -> None:
    objects = render()
    config = envoy_config(objects)
    service = find(objects, "Service", "server")
    service_ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    envoy_ports = {p["name"]: p["port"] for p in find(objects, "Service", "envoy")["spec"]["ports"]}
    listeners = {lst["name"]: lst for lst in config["static_resources"]["listeners"]}
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert {n: lst["address"]["socket_address"]["port_value"] for n, lst in listeners.items()} == {
        "http": envoy_ports["http"], "grpc": envoy_ports["grpc"]}  # fmt: skip
    assert config["admin"]["address"]["socket_address"]["port_value"] == envoy_ports["admin"]
    host = f"{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
    for name, port, health in (("caloflow_http", service_ports["http"], "http_health_check"),
                               ("caloflow_grpc", service_ports["grpc"], "grpc_health_check")):  # fmt: skip
        cluster = clusters[name]
        address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        assert cluster["type"] == "STRICT_DNS" and address["socket_address"] == {"address": host, "port_value": port}
        assert health in cluster["health_checks"][0] and cluster["outlier_detection"]
    assert clusters["caloflow_http"]["health_checks"][0]["http_health_check"]["path"] == "/v2/health/ready"
    for listener in listeners.values():
        manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
        for host_ in manager["route_config"]["virtual_hosts"]:
            for route in host_["routes"]:
                assert seconds(route["route"]["timeout"]) == 0, "a route timeout would cut every long stream"
        assert seconds(manager["stream_idle_timeout"]) >= 60


# --------------------------------------------------------------------------------- agreement with the server
def test_ports_env_names_and_values_agree_with_the_servers_settings(
    example: tuple[dict[str, Any], list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, objects = example
    container = server_container(objects)
    env = container_env(container)
    fields = set(Settings.model_fields)
    assert all(name.startswith("CALOFLOW_") and name[9:].lower() in fields for name in env), env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # the server's own parsing and validation of the rendered environment
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": settings.http_port, "grpc": settings.grpc_port, "metrics": settings.metrics_port}
    defaults = Settings.model_fields
    assert ports == {k: defaults[f"{k}_port"].default for k in ports}, "the Triton/SuperSONIC ports 8000-8002"
    service = find(objects, "Service", "server")
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        name: (port, name) for name, port in ports.items()}  # fmt: skip
    assert settings.host == "0.0.0.0" and str(settings.repo) == "/models"


def test_probes_use_the_servers_health_paths_and_the_grace_outlasts_the_drain(
    example: tuple[dict[str, Any], list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, objects = example
    container = server_container(objects)
    probes = {name: container[name]["httpGet"] for name in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert {p["path"] for p in probes.values()} == HEALTH_PATHS and {p["port"] for p in probes.values()} == {"http"}
    assert probes["readinessProbe"]["path"] == probes["startupProbe"]["path"] == "/v2/health/ready"
    ready_path = re.search(r'READY_PATH = "([^"]+)"', HEALTHCHECK.read_text())
    assert ready_path and ready_path.group(1) == probes["readinessProbe"]["path"], "the images' healthcheck agrees"
    for name, value in container_env(container).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    grace = find(objects, "Deployment", "server")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= settings.drain_grace_s + settings.drain_timeout_s + 5, "kubelet's SIGKILL would cut the drain"
    health = envoy_config(objects)["static_resources"]["clusters"][0]["health_checks"][0]
    ejection_s = seconds(health["interval"]) * health["unhealthy_threshold"] + seconds(health["timeout"])
    assert settings.drain_grace_s >= ejection_s, "requests would reach a server that already refuses them"
    assert seconds(health["no_traffic_interval"]) == seconds(health["interval"])


def test_the_gpu_is_requested_and_one_product_pinned_only_where_asked() -> None:
    gpu = find(render(load_values(CHART.parents[1] / "values" / "values-gpu.yaml")), "Deployment", "server")
    cpu = find(render(load_values(CHART.parents[1] / "values" / "values-cpu.yaml")), "Deployment", "server")
    pod = gpu["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                            "values": ["NVIDIA-A100-SXM4-80GB"]}]}]  # fmt: skip
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "caloflow-models", "readOnly": True}
    cpu_pod = cpu["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu_pod["containers"][0]["resources"].get("limits", {})
    assert "affinity" not in cpu_pod and "volumes" not in cpu_pod, "CPU: no GPU pin, models baked into the image"


@pytest.mark.parametrize(
    ("repository", "source"),
    [({"storageType": "nfs", "nfs": {"server": "nfs.example.org", "path": "/models"}}, "nfs"),
     ({"storageType": "hostPath", "hostPath": {"path": "/cvmfs/caloflow.example.org/models"}}, "hostPath"),
     ({"storageType": "cvmfs-pvc", "pvc": {"claimName": "cvmfs"}, "subPath": "caloflow/models"},
      "persistentVolumeClaim")],
)  # fmt: skip
def test_every_model_repository_source_is_mounted_read_only(repository: dict[str, Any], source: str) -> None:
    pod = find(render({"server": {"modelRepository": repository}}), "Deployment", "server")["spec"]["template"]["spec"]
    (volume,) = pod["volumes"]
    (mount,) = pod["containers"][0]["volumeMounts"]
    assert source in volume and mount["readOnly"] is True and mount["mountPath"] == "/models"
    assert mount.get("subPath") == repository.get("subPath")


def test_the_keda_queries_name_only_metrics_the_server_exports_and_select_the_release() -> None:
    exported = exported_sample_names()
    for trigger_name, metric_type in (("pendingShowers", "AverageValue"), ("queueTime", "Value")):
        objects = render(deep_merge(AUTOSCALE, {"keda": {"trigger": trigger_name}}))
        trigger = keda_trigger(objects)
        query = trigger["metadata"]["query"]
        assert trigger["metricType"] == metric_type and metric_names(query) <= exported, query
        assert f'namespace="{NAMESPACE}"' in query and f'service="{RELEASE}-caloflow-serve"' in query
        assert float(trigger["metadata"]["threshold"]) > 0
    so = find(render(AUTOSCALE), "ScaledObject")["spec"]
    assert so["scaleTargetRef"]["name"] == f"{RELEASE}-caloflow-serve" and so["minReplicaCount"] >= 1
    assert "replicas" not in find(render(AUTOSCALE), "Deployment", "server")["spec"], "KEDA owns the replica count"


def test_the_scrape_job_and_service_monitor_label_samples_the_way_the_keda_query_selects() -> None:
    objects = render(deep_merge(AUTOSCALE, {"monitoring": {"scrapeConfig": {"enabled": True}}}))
    job = scrape_job(objects)
    targets = {rule["target_label"] for rule in job["relabel_configs"] if "target_label" in rule}
    assert {"namespace", "service", "pod"} <= targets
    (keep,) = [rule for rule in job["relabel_configs"] if rule.get("action") == "keep"]
    assert keep["regex"] == f"{RELEASE}-caloflow-serve;metrics"
    monitor = find(objects, "ServiceMonitor")["spec"]
    assert monitor["endpoints"][0]["port"] == "metrics"
    assert (
        monitor["selector"]["matchLabels"].items() <= find(objects, "Service", "server")["metadata"]["labels"].items()
    )


def test_the_grafana_dashboard_is_the_compose_stacks_dashboard() -> None:
    (config,) = [o for o in render() if o["metadata"]["name"].endswith("-dashboard")]
    assert json.loads(config["data"]["caloflow.json"]) == json.loads(DASHBOARD.read_text())
    assert (CHART / "files" / "caloflow.json").read_text() == DASHBOARD.read_text(), "copy the dashboard into the chart"


# ------------------------------------------------------------------------------- commands run by probes/hooks
def _run_locally(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A container command run here: the image's ``python`` is this interpreter and its files are the repo's."""
    image_files = {"/opt/caloflow/healthcheck.py": str(HEALTHCHECK)}
    local = [sys.executable if arg == "python" else image_files.get(arg, arg) for arg in argv]
    return subprocess.run(local, capture_output=True, text=True, timeout=30, env={**os.environ, **env})


def test_our_chart_runs_no_command_in_probes_or_hooks(example: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    # Probes are httpGet (kubelet's own client) and there is no preStop: the server stops being ready by itself on
    # SIGTERM. So there is no command that could silently do nothing, as SuperSONIC's preStop does.
    _, objects = example
    assert exec_commands(objects) == []


def test_a_command_that_does_nothing_is_caught_when_run(tmp_path: Path) -> None:
    # SuperSONIC's preStop form: `sh -c` takes only "touch" as its script, which fails - the file never appears.
    marker = tmp_path / "shutdown"
    done = _run_locally(["/bin/sh", "-c", "touch", str(marker) + ";", "sleep 60"], {})
    assert done.returncode != 0 and not marker.exists()


def test_the_supersonic_values_run_our_image_in_supersonics_chart(tmp_path: Path) -> None:
    chart = os.environ.get("SUPERSONIC_CHART")
    if not chart:
        pytest.skip("set SUPERSONIC_CHART=<path to SuperSONIC's helm/supersonic> to render it (not vendored here)")
    from server_process import server_process
    from test_server_support import make_repository

    objects = render(load_values(SUPERSONIC_VALUES), chart=Path(chart))
    (triton,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("triton")]
    pod = triton["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:2] == ["/usr/bin/tini", "--"] and "caloflow_server.main" in container["command"]
    assert pod["terminationGracePeriodSeconds"] >= 5 + 30 + 5
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    readiness = container["readinessProbe"]["exec"]["command"]
    with server_process(make_repository(tmp_path).root, tmp_path / "server.log") as server:
        server.wait_ready()
        # The pod's server listens on 8000 by default; here it is on a free port, which the probe reads the same way.
        ready = _run_locally(readiness, {"CALOFLOW_HTTP_PORT": str(server.http)})
        assert ready.returncode == 0, ready.stderr
    gone = _run_locally(readiness, {"CALOFLOW_HTTP_PORT": str(server.http)})
    assert gone.returncode == 1


def test_the_supersonic_values_file_exists_and_is_plain_yaml() -> None:
    values = load_values(SUPERSONIC_VALUES)
    assert set(values) == {"triton"} and values["triton"]["command"][0] == "/usr/bin/tini"
    assert ROOT in SUPERSONIC_VALUES.parents
