"""Precision modes on a CUDA device (marker ``cuda``; skipped without CUDA; ``make gpu-check`` runs them):
fp32-strict really is strict (ONNX Runtime ``use_tf32=0``, torch TF32 flags off), tf32 turns it on, the reduced
graphs run on the GPU, and fp32-strict on the GPU meets the CPU parity criterion at batch 1 and 1 000."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from precision_support import make_spread_repository

from caloflow.precision.gate import Float64Graph, GateShape, gate_inputs
from caloflow_repo import ModelRepository
from caloflow_server._onnx_backend import OnnxRuntimeBackend, cuda_tf32_option
from caloflow_server._torchscript_backend import strict_fp32_torch
from caloflow_server.runtime import build_runtime

HAS_CUDA = torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device: skipped")]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    return make_spread_repository(tmp_path_factory.mktemp("cuda"))


def _data(repository: ModelRepository) -> bytes:
    return (repository.root / "tiny_spread" / "1" / "model.onnx").read_bytes()


@pytest.mark.parametrize(("mode", "tf32"), [("fp32-strict", "0"), ("tf32", "1")])
def test_onnx_runtime_tf32_option_is_explicit(repository: ModelRepository, mode: str, tf32: str) -> None:
    backend = OnnxRuntimeBackend(_data(repository), "cuda:0", precision=mode)
    assert backend.providers[0] == "CUDAExecutionProvider"
    assert cuda_tf32_option(backend._session) == tf32


def test_torch_tf32_flags_are_off_in_fp32_strict() -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    strict_fp32_torch()
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


@pytest.mark.parametrize("batch", [1, 1000])
def test_fp32_strict_gpu_parity_against_float64(repository: ModelRepository, batch: int) -> None:
    manifest = repository.verify("tiny_spread")
    runtime = build_runtime(_data(repository), manifest.artifacts[0], manifest, "cuda:0")
    energies, noise = gate_inputs(GateShape.of(manifest), batch, seed=5)
    exact = Float64Graph(_data(repository)).run(energies, noise)
    error = np.abs(runtime.run(energies, noise) - exact).sum(axis=1)
    assert np.all(error <= 0.01 + 2e-2 * np.abs(exact).sum(axis=1))
    if batch >= 100:
        assert float((error / np.abs(exact).sum(axis=1)).mean()) <= 1e-4


@pytest.mark.parametrize("mode", ["fp16", "bf16"])
def test_half_precision_graphs_run_on_the_gpu(repository: ModelRepository, mode: str) -> None:
    manifest = repository.verify("tiny_spread")
    runtime = build_runtime(_data(repository), manifest.artifacts[0], manifest, "cuda:0", precision=mode)
    energies, noise = gate_inputs(GateShape.of(manifest), 64, seed=6)
    showers = runtime.run(energies, noise)
    assert np.isfinite(showers).all() and showers.shape == (64, manifest.n_voxels)
