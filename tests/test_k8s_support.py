"""Shared by the Kubernetes tests: the chart rendered by Helm's own engine (``helm-python-sdk``, Helm v4 in a
shared library), the rendered objects picked apart, and the real processes of the live rehearsal - server "pods"
on 127.0.0.x started from the rendered Deployment, Envoy from the rendered ConfigMap (its DNS clusters swapped
for file-based EDS listing those addresses), Prometheus from the rendered scrape job (Kubernetes discovery swapped
for a file with the same ``__meta_kubernetes_*`` labels). No tests here."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "caloflow-serve"
EXAMPLES_DIR = ROOT / "deploy" / "values"
EXAMPLES = sorted(EXAMPLES_DIR.glob("values-*.yaml"))
SUPERSONIC_VALUES = ROOT / "deploy" / "supersonic" / "values-caloflow.yaml"
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "caloflow.json"
HEALTHCHECK = ROOT / "docker" / "healthcheck.py"
KEDA_VALIDATOR = ROOT / "tests" / "k8s" / "validate-keda.mjs"
RELEASE = "calo"
NAMESPACE = "hep"
# The Kubernetes versions the chart claims (Chart.yaml kubeVersion) and the newest that kubernetes-validate knows.
KUBE_VERSIONS = ("1.27.0", "1.37.0")


# ------------------------------------------------------------------------------------------------ rendering
def deep_merge(base: Mapping[str, Any], *overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with each override merged in (dicts recursively, anything else replaced), as Helm merges -f files."""
    merged: dict[str, Any] = copy.deepcopy(dict(base))
    for override in overrides:
        for key, value in override.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = deep_merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
    return merged


def load_values(path: Path) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    return values


def render(values: Mapping[str, Any] | None = None, chart: Path = CHART) -> list[dict[str, Any]]:
    """``helm template RELEASE CHART -n NAMESPACE`` with ``values``: every non-empty object, in template order."""
    import helm_python as helm

    loaded = helm.Chart.load(str(chart))
    manifests = loaded.render(dict(values or {}), name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def find(objects: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    """The one object of ``kind`` (and ``app.kubernetes.io/component``)."""
    found = [
        o
        for o in objects
        if o["kind"] == kind
        and (component is None or o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component)
    ]
    assert len(found) == 1, f"{len(found)} {kind}/{component} objects: {[o['metadata']['name'] for o in found]}"
    return found[0]


def kinds(objects: list[dict[str, Any]]) -> set[str]:
    return {o["kind"] for o in objects}


def server_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = find(objects, "Deployment", "server")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def container_env(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def envoy_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(find(objects, "ConfigMap", "envoy")["data"]["envoy.yaml"])
    return config


def scrape_job(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (config,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-scrape")]
    (job,) = yaml.safe_load(config["data"]["scrape-config.yaml"])
    return dict(job)


def keda_trigger(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (trigger,) = find(objects, "ScaledObject")["spec"]["triggers"]
    return dict(trigger)


def exec_commands(objects: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Every command a probe or lifecycle hook of any container runs: (where, argv)."""
    found = []
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            hooks = {f"{name}": container.get(name) for name in ("startupProbe", "readinessProbe", "livenessProbe")}
            for stage, hook in container.get("lifecycle", {}).items():
                hooks[f"lifecycle.{stage}"] = hook
            for where, hook in hooks.items():
                if hook and "exec" in hook:
                    found.append((f"{obj['metadata']['name']}/{container['name']}/{where}", hook["exec"]["command"]))
    return found


# ------------------------------------------------------------------------------------------------ processes
def venv_tool(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[dev]' (make setup)"
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM this process (by its id), then SIGKILL if it is still there after ``timeout_s``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


def wait_until(what: str, check: Any, timeout_s: float = 30.0, interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(interval_s)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


# ---------------------------------------------------------------------------------------------- server pods
def pod_argv(container: Mapping[str, Any]) -> list[str]:
    """The container's command + args, run here: the image's ``tini --`` (PID 1, hands SIGTERM on) dropped, its
    ``python`` replaced by this interpreter."""
    argv = [*container["command"], *container.get("args", [])]
    assert "python" in argv, argv
    return [sys.executable, *argv[argv.index("python") + 1 :]]


def pod_environment(container: Mapping[str, Any], ip: str, repo: Path) -> dict[str, str]:
    """The container's environment with this "pod's" address and the model repository mounted at ``repo``."""
    env = container_env(container)
    assert env["CALOFLOW_HOST"] == "0.0.0.0", "a pod listens on all its addresses; here it is one loopback address"
    env.update(CALOFLOW_HOST=ip, CALOFLOW_REPO=str(repo), CALOFLOW_INTRA_OP_THREADS="1", OMP_NUM_THREADS="1")
    return {**os.environ, **env}


class Pod:
    """One server process on its own loopback address with the Deployment's ports, like a pod on its own IP."""

    def __init__(self, ip: str, container: Mapping[str, Any], repo: Path, log: Path) -> None:
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        self.ip, self.http, self.grpc, self.metrics = ip, ports["http"], ports["grpc"], ports["metrics"]
        self.log = log
        busy = [port for port in ports.values() if not port_free(ip, port)]
        assert not busy, f"{ip}: ports {busy} are taken (another server bound to 0.0.0.0?)"
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                pod_argv(container), stdout=sink, stderr=subprocess.STDOUT, env=pod_environment(container, ip, repo)
            )

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.http}"

    @property
    def grpc_target(self) -> str:
        return f"{self.ip}:{self.grpc}"

    def wait_ready(self, probe_path: str, timeout_s: float = 120.0) -> Pod:
        """Until the startup probe's GET answers 200 (or the process dies)."""

        def ready() -> bool:
            assert self.process.poll() is None, f"{self.ip} exited:\n{self.log.read_text()[-3000:]}"
            return http_ok(self.url + probe_path)

        wait_until(f"{self.ip} ready", ready, timeout_s, 0.25)
        return self

    def samples(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        return parse_exposition(httpx.get(f"http://{self.ip}:{self.metrics}/metrics", timeout=5).text)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels``."""
        return sum(v for sample_labels, v in self.samples().get(name, []) if labels.items() <= sample_labels.items())

    def stop(self) -> None:
        stop_process(self.process)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line) if line and not line.startswith("#") else None
        if match:
            labels = dict(_LABEL.findall(match.group(2) or ""))
            samples.setdefault(match.group(1), []).append((labels, float(match.group(3))))
    return samples


# ------------------------------------------------------------------------------------------------- envoy
class Envoy:
    """The real Envoy with the rendered config: listeners and admin moved to free loopback ports, the two DNS
    clusters fed from EDS files instead (``set_endpoints`` rewrites them; Envoy picks the change up live)."""

    CLUSTERS = ("caloflow_http", "caloflow_grpc")

    def __init__(self, config: Mapping[str, Any], directory: Path, endpoints: list[str]) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config = local_envoy_config(config, directory)
        self.ports = {listener["name"]: listener["address"]["socket_address"]["port_value"]
                      for listener in self.config["static_resources"]["listeners"]}  # fmt: skip
        self.admin = f"http://127.0.0.1:{self.config['admin']['address']['socket_address']['port_value']}"
        self.upstream_ports = {c["name"]: _cluster_port(c) for c in config["static_resources"]["clusters"]
                               if c["name"] in self.CLUSTERS}  # fmt: skip
        self.set_endpoints(endpoints)
        path = directory / "envoy.yaml"
        path.write_text(yaml.safe_dump(self.config))
        self.log = directory / "envoy.log"
        # EDS needs a node name; one worker thread; no hot-restart shared memory (several Envoys run at once).
        command = [venv_tool("envoy"), "-c", str(path), "--concurrency", "1", "--disable-hot-restart", "--log-level",
                   "warning", "--service-node", "rehearsal", "--service-cluster", "caloflow"]  # fmt: skip
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    def set_endpoints(self, ips: list[str]) -> None:
        """Write each cluster's ClusterLoadAssignment (atomically: Envoy watches for the file being moved in)."""
        for name in self.CLUSTERS:
            lb_endpoints = [{"endpoint": {"address": {"socket_address": {"address": ip,
                                                                           "port_value": self.upstream_ports[name]}}}}
                            for ip in ips]  # fmt: skip
            document = {"version_info": str(time.monotonic_ns()), "resources": [{
                "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
                "cluster_name": name, "endpoints": [{"lb_endpoints": lb_endpoints}]}]}  # fmt: skip
            staging = self.directory / f".{name}.tmp"
            staging.write_text(json.dumps(document))
            staging.rename(self.directory / f"{name}.eds.json")

    def wait_ready(self, healthy: list[str], timeout_s: float = 30.0) -> Envoy:
        """Until both clusters list exactly ``healthy`` as healthy hosts."""

        def ready() -> bool:
            assert self.process.poll() is None, f"envoy exited:\n{self.log.read_text()[-3000:]}"
            if not http_ok(self.admin + "/ready"):
                return False
            return all(sorted(self.healthy_hosts(c)) == sorted(healthy) for c in self.CLUSTERS)

        wait_until(f"envoy sees {healthy} healthy", ready, timeout_s, 0.2)
        return self

    def healthy_hosts(self, cluster: str) -> list[str]:
        """The IPs Envoy's active health checks (and outlier detection) currently let traffic reach."""
        text = httpx.get(self.admin + "/clusters", timeout=5).text
        flags = re.findall(rf"^{cluster}::([\d.]+):\d+::health_flags::(\S+)$", text, re.M)
        return [ip for ip, flag in flags if flag == "healthy"]

    def upstream_requests(self, cluster: str) -> dict[str, int]:
        """Requests Envoy has sent to each host of ``cluster``, by IP."""
        text = httpx.get(self.admin + "/clusters", timeout=5).text
        return {ip: int(n) for ip, n in re.findall(rf"^{cluster}::([\d.]+):\d+::rq_total::(\d+)$", text, re.M)}

    def stats(self) -> dict[str, int]:
        text = httpx.get(self.admin + "/stats", timeout=5).text
        return {k: int(v) for k, v in re.findall(r"^(\S+): (\d+)$", text, re.M)}

    def stop(self) -> None:
        stop_process(self.process)


def _cluster_port(cluster: Mapping[str, Any]) -> int:
    ((endpoint,),) = [e["lb_endpoints"] for e in cluster["load_assignment"]["endpoints"]]
    port: int = endpoint["endpoint"]["address"]["socket_address"]["port_value"]
    return port


def local_envoy_config(config: Mapping[str, Any], directory: Path) -> dict[str, Any]:
    """The rendered config run here: every listener and the admin on a free 127.0.0.1 port; the server clusters
    (STRICT_DNS on the headless Service: every ready pod) read their endpoints from EDS files in ``directory``.
    Everything else - routes, timeouts, filters, health checks, outlier detection, retries - is as rendered."""
    local = copy.deepcopy(dict(config))
    local["admin"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": free_port()}
    for listener in local["static_resources"]["listeners"]:
        listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": free_port()}
    for cluster in local["static_resources"]["clusters"]:
        if cluster["name"] not in Envoy.CLUSTERS:
            continue
        assert cluster.pop("type") == "STRICT_DNS" and cluster.pop("dns_lookup_family") == "V4_ONLY"
        cluster.pop("dns_refresh_rate")
        cluster.pop("load_assignment")
        cluster["type"] = "EDS"
        cluster["eds_cluster_config"] = {"eds_config": {
            "path_config_source": {"path": str(directory / f"{cluster['name']}.eds.json"),
                                   "watched_directory": {"path": str(directory)}},
            "resource_api_version": "V3"}}  # fmt: skip
    return local


# -------------------------------------------------------------------------------------------- prometheus
class Prometheus:
    """Debian's Prometheus running the rendered scrape job; the Kubernetes endpoints discovery replaced by a file
    of targets carrying the labels that discovery would (``__meta_kubernetes_*``), so the rendered relabelling
    rules make the namespace/service/pod labels the KEDA query selects on."""

    def __init__(self, job: Mapping[str, Any], directory: Path, scrape_interval: str = "1s") -> None:
        binary = shutil.which("prometheus")
        assert binary, "no prometheus binary: run `sh docker/install-test-deps.sh` (make setup does)"
        directory.mkdir(parents=True, exist_ok=True)
        self.targets = directory / "targets.json"
        local = copy.deepcopy(dict(job))
        assert local.pop("kubernetes_sd_configs")[0]["role"] == "endpoints"
        local["file_sd_configs"] = [{"files": [str(self.targets)], "refresh_interval": "1s"}]
        local["scrape_interval"] = local["scrape_timeout"] = scrape_interval
        self.job = local
        config = {"global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
                  "scrape_configs": [local]}  # fmt: skip
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = directory / "prometheus.log"
        command = [binary, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
                   f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]  # fmt: skip
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        wait_until("prometheus ready", lambda: self._alive() and http_ok(self.url + "/-/ready"), 30, 0.2)

    def _alive(self) -> bool:
        assert self.process.poll() is None, f"prometheus exited:\n{self.log.read_text()}"
        return True

    def set_targets(self, pods: list[Pod], service: str, namespace: str = NAMESPACE) -> None:
        groups = [{"targets": [f"{pod.ip}:{pod.metrics}"], "labels": {
            "__meta_kubernetes_namespace": namespace, "__meta_kubernetes_service_name": service,
            "__meta_kubernetes_endpoint_port_name": "metrics", "__meta_kubernetes_pod_name": f"pod-{pod.ip}"}}
            for pod in pods]  # fmt: skip
        staging = self.targets.with_suffix(".tmp")
        staging.write_text(json.dumps(groups))
        staging.rename(self.targets)

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def scalar(self, expr: str) -> float | None:
        """The query's one value (``None`` for an empty result, as KEDA's ``ignoreNullValues`` treats it)."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def up_targets(self) -> set[str]:
        result = self.query(f'up{{job="{self.job["job_name"]}"}} == 1')
        return {r["metric"]["instance"].split(":")[0] for r in result}

    def stop(self) -> None:
        stop_process(self.process)


# --------------------------------------------------------------------------------------------- the HPA
def hpa_desired_replicas(metric_type: str, value: float, threshold: float, current: int, low: int, high: int) -> int:
    """What the HPA controller computes for one KEDA external metric (kube-controller-manager's replica calculator,
    with its default 10 % tolerance), clamped to the ScaledObject's min/max:
    ``AverageValue``: ceil(value / threshold); ``Value``: ceil(current * value / threshold)."""
    if metric_type == "AverageValue":
        ratio = value / (threshold * current)
    elif metric_type == "Value":
        ratio = value / threshold
    else:
        raise ValueError(metric_type)
    desired = current if abs(ratio - 1.0) <= 0.1 else math.ceil(ratio * current)
    return max(low, min(high, desired))


@contextmanager
def started(*processes: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            process.stop()
