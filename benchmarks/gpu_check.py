"""``make gpu-check``: everything that needs a GPU, in one run of at most ~8 minutes on one H100, into one JSON file.

1. the CUDA tests (``pytest -m cuda``);
2. the paper-size photon pipeline (untrained weights: speed does not depend on them), exported as the served fast
   ONNX graph, through the server's ONNX Runtime backend on CUDA in every GPU precision mode - fp32-strict, tf32,
   fp16, bf16 - and with ONNX Runtime's *default* CUDA options (what TF32 does when nobody sets it), at batch
   1 000 / 10 000 / 100 000: median seconds per call (host inputs and outputs included, as served) and showers/s
   (target: >= 1 000 000);
3. the served path on CUDA: the demo photon model loaded as the server loads it (``load_runtime``), its session's
   ``use_tf32`` asserted 0, and a real server process (``--device cuda``) answering a seeded request;
4. the gates of tf32 / fp16 / bf16 on the demo photon model on this GPU: tier A in full and a smoke tier B
   (small classifier, few epochs); the records are printed into the JSON, not written into the manifests.

Without CUDA it writes ``{"status": "skipped", "reason": "no CUDA device: skipped"}`` and exits 0. Each stage
checks the remaining time budget (``--budget-s``) and is skipped, with the reason, when it would not fit.

    python benchmarks/gpu_check.py --out gpu_check.json [--budget-s 450]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODES = ("fp32-strict", "tf32", "fp16", "bf16")
BATCHES = (1_000, 10_000, 100_000)
TARGET_SHOWERS_PER_S = 1_000_000
DEMO_MODEL = "caloflow_photon"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu_check.json")
    parser.add_argument("--budget-s", type=float, default=450.0, help="stop starting stages after this long")
    parser.add_argument("--repo", type=Path, default=ROOT / "model_repo")
    parser.add_argument("--gate-n", type=int, default=10_000)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"script": "benchmarks/gpu_check.py", "started_utc": _now()}
    cuda, reason = _cuda_available()
    if not cuda:
        report.update(status="skipped", reason=reason, environment=_environment(False))
        return _write(args.out, report)
    deadline = time.monotonic() + args.budget_s
    report.update(status="ran", environment=_environment(True), stages={})
    stages: list[tuple[str, float, Callable[[], Any]]] = [
        ("cuda_tests", 120, _cuda_tests),
        ("benchmark", 150, _benchmark),
        ("served_path", 60, lambda: _served_path(args.repo)),
        ("gates", 120, lambda: _gates(args.repo, args.gate_n)),
    ]
    for name, estimate_s, stage in stages:
        left = deadline - time.monotonic()
        if left < estimate_s:
            report["stages"][name] = {
                "status": "skipped",
                "reason": f"{left:.0f} s left of the budget, needs ~{estimate_s}",
            }
            continue
        started = time.monotonic()
        try:
            report["stages"][name] = {"status": "ok", "result": stage()}
        except Exception as exc:  # one failing stage must not lose the others' figures
            report["stages"][name] = {"status": "error", "error": repr(exc), "traceback": traceback.format_exc()}
        report["stages"][name]["seconds"] = round(time.monotonic() - started, 1)
        _write(args.out, report)  # partial results survive a timeout
    report["finished_utc"] = _now()
    return _write(args.out, report)


def _cuda_available() -> tuple[bool, str]:
    import onnxruntime as ort
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA device: skipped (torch.cuda.is_available() is False)"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False, f"no CUDA device: skipped (onnxruntime has no CUDA provider: {ort.get_available_providers()})"
    return True, ""


def _environment(cuda: bool) -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "cpu_count": os.cpu_count(),
    }
    if cuda:
        info["gpu"] = torch.cuda.get_device_name(0)
        info["torch_cuda"] = torch.version.cuda
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        try:
            info["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            info["nvidia_smi"] = repr(exc)
    return info


def _cuda_tests() -> dict[str, Any]:
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests/"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    return {"command": " ".join(command[1:]), "returncode": done.returncode, "tail": done.stdout[-3000:]}


def _paper_photon_graph(scratch: Path) -> bytes:
    from caloflow.bench._generate_runners import untrained
    from caloflow.export.fast_onnx_format import export_fast_onnx

    sampler, _ = untrained("paper", "photon")
    path = scratch / "paper_photon.fast.onnx"
    export_fast_onnx(sampler, path, {"caloflow.note": "untrained paper-size photon (gpu_check)"}, compact=False)
    return path.read_bytes()


def _benchmark() -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    from caloflow_server._onnx_backend import OnnxRuntimeBackend, _create_session, cuda_tf32_option

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as temp:
        data = _paper_photon_graph(Path(temp))
    results: dict[str, Any] = {"target_showers_per_s": TARGET_SHOWERS_PER_S, "modes": {}}
    default_session = _create_session(data, "cuda:0", None)  # fp32-strict: use_tf32=0, set explicitly
    plain = ort.InferenceSession(data, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    results["ort_default_use_tf32"] = cuda_tf32_option(plain)  # what ONNX Runtime does when nobody sets it
    results["fp32_strict_use_tf32"] = cuda_tf32_option(default_session)
    runners: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {}
    for mode in MODES:
        runners[mode] = OnnxRuntimeBackend(data, "cuda:0", precision=mode).run
    runners["ort-default"] = lambda e, z: plain.run(["SHOWERS"], {"INCIDENT_ENERGY": e, "NOISE": z})[0]
    noise_dim = OnnxRuntimeBackend(data, "cuda:0").noise_dim
    rng = np.random.default_rng(0)
    for batch in BATCHES:
        energies = np.exp(rng.uniform(np.log(256.0), np.log(4194304.0), (batch, 1))).astype(np.float32)
        noise = rng.standard_normal((batch, noise_dim), dtype=np.float32)
        reference = runners["fp32-strict"](energies, noise)
        for mode, run in runners.items():
            run(energies, noise)  # warm-up
            times = []
            for _ in range(5 if batch < 100_000 else 3):
                start = time.perf_counter()
                showers = run(energies, noise)
                times.append(time.perf_counter() - start)
            seconds = statistics.median(times)
            rel_l1 = np.abs(showers - reference).sum(axis=1) / np.maximum(np.abs(reference).sum(axis=1), 1e-30)
            results["modes"].setdefault(mode, {})[str(batch)] = {
                "median_s_per_call": seconds,
                "showers_per_s": batch / seconds,
                "meets_target": batch / seconds >= TARGET_SHOWERS_PER_S,
                "max_rel_l1_vs_fp32_strict": float(rel_l1.max()),
                "nonfinite": int(np.count_nonzero(~np.isfinite(showers))),
            }
    return results


def _served_path(repo: Path) -> dict[str, Any]:
    import httpx
    import numpy as np

    from caloflow_repo import ModelRepository
    from caloflow_server._onnx_backend import cuda_tf32_option
    from caloflow_server.process import launch_server
    from caloflow_server.runtime import load_runtime

    loaded = load_runtime(ModelRepository(repo), DEMO_MODEL, device="cuda:0")
    session = getattr(loaded.runtime, "_session", None)
    tf32 = None if session is None else cuda_tf32_option(session)
    assert tf32 == "0", f"fp32-strict served session reports use_tf32={tf32!r}"
    result: dict[str, Any] = {"backend": loaded.runtime.backend, "use_tf32": tf32, "precisions": loaded.precisions}
    with tempfile.TemporaryDirectory(prefix="gpu-check-serve-") as temp:
        log = Path(temp) / "server.log"
        with launch_server(repo, log, {"CALOFLOW_DEVICE": "cuda", "CALOFLOW_MODELS": DEMO_MODEL}) as server:
            server.wait_ready(120)
            body = {"model": DEMO_MODEL, "energy_mev": 65536.0, "count": 100_000, "seed": 1, "format": "npy"}
            start = time.perf_counter()
            response = httpx.post(f"{server.url}/generate", json=body, timeout=120)
            seconds = time.perf_counter() - start
            result.update(
                status=response.status_code,
                precision_header=response.headers.get("X-Precision"),
                showers=100_000,
                seconds=seconds,
                showers_per_s=100_000 / seconds,
                bytes=len(response.content),
            )
            showers = np.load(io.BytesIO(response.content))
            result["nonfinite"] = int(np.count_nonzero(~np.isfinite(showers)))
    return result


def _gates(repo: Path, n: int) -> dict[str, Any]:
    from caloflow.precision.gate import GateSettings, gate_model_version
    from caloflow_repo import ModelRepository

    settings = GateSettings(n=n, classifier_epochs=3, classifier_hidden=256)
    records = {}
    for mode in ("tf32", "fp16", "bf16"):
        records[mode] = gate_model_version(
            ModelRepository(repo), DEMO_MODEL, None, mode, device="cuda:0", settings=settings
        )
    return {"model": DEMO_MODEL, "settings": settings.__dict__, "records": records}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _write(path: Path, report: dict[str, Any]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {path}: {report.get('status')} {report.get('reason', '')}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
