"""Runtimes from real artifacts: verified loading, ONNX/TorchScript parity, device refusal, the output guard."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from test_server_support import (
    N_VOXELS,
    NOISE_DIM,
    POISON_MEV,
    export_tiny,
    make_repository,
    reference_showers,
    tiny_manifest,
)

from caloflow_repo import ArtifactInfo, ModelRepository
from caloflow_server import (
    ArtifactIntegrityError,
    InferenceError,
    LoadedModel,
    NonFiniteOutputError,
    OnnxRuntimeBackend,
    Runtime,
    RuntimeLoadError,
    TorchScriptBackend,
    UnknownModelError,
    UnknownVersionError,
    check_showers,
    load_runtime,
    shower_noise,
)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    torch.set_num_threads(1)
    return make_repository(tmp_path_factory.mktemp("runtime"))


@pytest.fixture(scope="module")
def onnx_model(repository: ModelRepository) -> LoadedModel:
    return load_runtime(repository, "tiny_photon", backend="onnx", intra_op_threads=1)


def _inputs(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    energies = np.geomspace(300.0, 4e6, n, dtype=np.float32).reshape(-1, 1)
    return energies, shower_noise(seed, 0, n, NOISE_DIM).numpy()


def test_onnx_and_torchscript_agree_with_eager(repository: ModelRepository, onnx_model: LoadedModel) -> None:
    scripted = load_runtime(repository, "tiny_photon", backend="torchscript")
    energies, noise = _inputs(64)
    expected = reference_showers(energies, noise)
    onnx_out, ts_out = onnx_model.run(energies, noise), scripted.run(energies, noise)
    assert onnx_out.shape == (64, N_VOXELS) and onnx_out.dtype == np.float32
    np.testing.assert_allclose(onnx_out, expected, rtol=1e-5)
    np.testing.assert_allclose(ts_out, expected, rtol=1e-5)
    np.testing.assert_allclose(onnx_out, ts_out, rtol=1e-5)
    assert (onnx_model.runtime.backend, scripted.runtime.backend) == ("onnx", "torchscript")
    assert isinstance(onnx_model.runtime, Runtime) and isinstance(scripted.runtime, Runtime)


def test_loaded_model_describes_the_verified_artifact(repository: ModelRepository, onnx_model: LoadedModel) -> None:
    manifest = repository.manifest("tiny_photon", 1)
    assert (onnx_model.model, onnx_model.version) == ("tiny_photon", 1)
    assert onnx_model.sha256 == manifest.artifact("model.onnx").sha256
    assert onnx_model.runtime.noise_dim == NOISE_DIM and onnx_model.runtime.n_voxels == N_VOXELS
    assert load_runtime(repository, "tiny_photon", 2, backend="auto").artifact.filename == "model.onnx"


def test_the_fast_onnx_artifact_is_preferred(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``auto`` and ``onnx`` load model.fast.onnx when the version has it (same I/O as model.onnx), and say so."""
    staging = export_tiny(tmp_path / "staging")
    shutil.copy(staging / "model.onnx", staging / "model.fast.onnx")  # a stand-in: the server only sees the I/O
    manifest = tiny_manifest("tiny_photon")
    fast = ArtifactInfo("model.fast.onnx", "fast_onnx", "", 0, "opset 17")
    repository = ModelRepository(tmp_path / "repo")
    repository.add_version("tiny_photon", staging, dataclasses.replace(manifest, artifacts=(*manifest.artifacts, fast)))
    for backend in ("auto", "onnx"):
        with caplog.at_level(logging.INFO, logger="caloflow_server.runtime"):
            loaded = load_runtime(repository, "tiny_photon", backend=backend, intra_op_threads=1)
        assert (loaded.artifact.filename, loaded.artifact.format, loaded.runtime.backend) == (
            "model.fast.onnx",
            "fast_onnx",
            "onnx",
        )
        assert "loaded tiny_photon@1 (model.fast.onnx, sha256" in caplog.text
    energies, noise = _inputs(16)
    np.testing.assert_allclose(loaded.run(energies, noise), reference_showers(energies, noise), rtol=1e-5)
    assert load_runtime(repository, "tiny_photon", backend="torchscript").artifact.filename == "model.pt"
    assert 'default_model_filename: "model.fast.onnx"' in (repository.root / "tiny_photon" / "config.pbtxt").read_text()


def test_torch_tensor_noise_is_accepted(onnx_model: LoadedModel) -> None:
    energies, noise = _inputs(5)
    np.testing.assert_array_equal(onnx_model.run(energies, torch.from_numpy(noise)), onnx_model.run(energies, noise))


@pytest.mark.parametrize("filename", ["model.onnx", "model.pt"])
def test_a_flipped_byte_is_refused(tmp_path: Path, repository: ModelRepository, filename: str) -> None:
    copy = ModelRepository(tmp_path / "repo")
    shutil.copytree(repository.root, copy.root)
    path = copy.artifact_path("tiny_photon", 1, filename)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    backend = "onnx" if filename == "model.onnx" else "torchscript"
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        load_runtime(copy, "tiny_photon", 1, backend=backend)
    with pytest.raises(ArtifactIntegrityError):  # verify() checks every artifact, not only the one loaded
        load_runtime(copy, "tiny_photon", 1, backend="onnx" if backend == "torchscript" else "torchscript")


def test_unknown_model_and_version(repository: ModelRepository) -> None:
    with pytest.raises(UnknownModelError):
        load_runtime(repository, "no_such_model")
    with pytest.raises(UnknownVersionError):
        load_runtime(repository, "tiny_photon", 9)


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA provider present")
def test_onnx_cuda_without_cuda_is_refused_not_run_on_cpu(repository: ModelRepository) -> None:
    with pytest.raises(RuntimeLoadError, match="no CUDA provider"):
        load_runtime(repository, "tiny_photon", backend="onnx", device="cuda")


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA provider present")
@pytest.mark.filterwarnings("ignore:Specified provider")
def test_onnx_session_that_falls_back_to_cpu_is_refused(
    repository: ModelRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider is listed but the session ends up on the CPU (ORT #23372): refused, not served."""
    listed = [*ort.get_available_providers(), "CUDAExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: listed)
    with pytest.raises(RuntimeLoadError, match="active providers are \\['CPUExecutionProvider'\\]"):
        load_runtime(repository, "tiny_photon", backend="onnx", device="cuda:0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_torchscript_cuda_without_cuda_is_refused(repository: ModelRepository) -> None:
    with pytest.raises(RuntimeLoadError, match="CUDA"):
        load_runtime(repository, "tiny_photon", backend="torchscript", device="cuda:0")


def test_bad_device_and_signature(repository: ModelRepository) -> None:
    path = repository.artifact_path("tiny_photon", 1, "model.onnx")
    with pytest.raises(RuntimeLoadError, match="device"):
        OnnxRuntimeBackend(path, device="tpu")
    with pytest.raises(RuntimeLoadError, match="noise_dim"):
        OnnxRuntimeBackend(path, noise_dim=NOISE_DIM + 1, n_voxels=N_VOXELS)
    backend = OnnxRuntimeBackend(path, noise_dim=NOISE_DIM, n_voxels=N_VOXELS)
    assert backend.device == "cpu" and backend.providers == ("CPUExecutionProvider",)
    with pytest.raises(RuntimeLoadError):
        TorchScriptBackend(b"not a torchscript archive", noise_dim=NOISE_DIM, n_voxels=N_VOXELS)
    with pytest.raises(RuntimeLoadError):
        OnnxRuntimeBackend(b"not an onnx graph")


def test_backend_failures_are_translated(onnx_model: LoadedModel, repository: ModelRepository) -> None:
    energies, noise = _inputs(4)
    with pytest.raises(InferenceError, match="onnxruntime"):
        onnx_model.run(energies, noise[:, :3])
    scripted = load_runtime(repository, "tiny_photon", backend="torchscript")
    with pytest.raises(InferenceError, match="torchscript"):
        scripted.run(energies, noise[:, :3])


def test_poisoned_output_is_refused(onnx_model: LoadedModel) -> None:
    energies, noise = _inputs(6)
    energies[2, 0] = POISON_MEV
    raw = onnx_model.runtime.run(energies, noise)
    assert np.isnan(raw[2]).all() and np.isfinite(np.delete(raw, 2, axis=0)).all()
    with pytest.raises(NonFiniteOutputError) as info:
        onnx_model.run(energies, noise)
    assert (info.value.n_nonfinite, info.value.n_negative, info.value.bad_rows) == (N_VOXELS, 0, 1)


def test_check_showers_counts_every_kind_of_bad_voxel() -> None:
    good = np.ones((3, 4), dtype=np.float32)
    assert check_showers(good, 4) is good
    assert check_showers(np.array([[-0.0, 0.0]], dtype=np.float32), 2).shape == (1, 2)
    bad = good.copy()
    bad[0, 0], bad[0, 1], bad[2, 3] = np.nan, np.inf, -1e-3
    with pytest.raises(NonFiniteOutputError) as info:
        check_showers(bad, 4)
    assert (info.value.n_nonfinite, info.value.n_negative, info.value.bad_rows, info.value.n_rows) == (2, 1, 2, 3)
    with pytest.raises(InferenceError, match="expected float32"):
        check_showers(good.astype(np.float64), 4)
    with pytest.raises(InferenceError):
        check_showers(good, 5)


def test_why_deterministic_mode_exists(onnx_model: LoadedModel) -> None:
    """On ONNX Runtime CPU the tiny sampler's rows change in the last bits with the batch size (its elementwise
    Log runs a vectorised body and a scalar tail); the batcher's deterministic mode fixes the shape instead."""
    energies = np.geomspace(300.0, 4e6, 1024, dtype=np.float32).reshape(-1, 1)
    noise = shower_noise(3, 0, 1024, NOISE_DIM).numpy()
    whole = onnx_model.runtime.run(energies, noise)
    singles = np.concatenate([onnx_model.runtime.run(energies[i : i + 1], noise[i : i + 1]) for i in range(1024)])
    np.testing.assert_allclose(singles, whole, rtol=1e-5)
    permutation = np.random.default_rng(0).permutation(1024)
    np.testing.assert_array_equal(onnx_model.runtime.run(energies[permutation], noise[permutation]), whole[permutation])
    if np.array_equal(singles, whole):
        pytest.skip("this onnxruntime build gives the same bits at every batch size")


def test_warm_up_runs_every_batch_size(onnx_model: LoadedModel) -> None:
    calls: list[int] = []

    class Recording:
        backend, device, noise_dim, n_voxels = "fake", "cpu", NOISE_DIM, N_VOXELS

        def run(self, incident_mev: np.ndarray, noise: np.ndarray | torch.Tensor) -> np.ndarray:
            return np.zeros((incident_mev.shape[0], N_VOXELS), dtype=np.float32)

        def warm_up(self, batch_sizes: list[int], energy_mev: float = 1000.0) -> None:
            calls.extend(batch_sizes)
            assert 256.0 < energy_mev < 4194304.0

    LoadedModel(onnx_model.manifest, onnx_model.artifact, Recording()).warm_up([1, 64])
    assert calls == [1, 64]
    onnx_model.warm_up([1, 7])  # the real one runs without error
