"""The compiled fast path: a version's ``torch_export`` artifact compiled with AOTInductor for this CPU, cached by
artifact sha256 + torch version + architecture, stale or foreign packages refused, parity before ready.

One tiny program is compiled once for the module (about 20 s); every other case reuses its cache entry.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_server_support import NOISE_DIM, TinySampler, export_tiny, reference_showers, tiny_manifest

from caloflow_repo import ArtifactInfo, ModelRepository
from caloflow_server import load_runtime
from caloflow_server._aoti_backend import check_parity
from caloflow_server.aoti_cache import KEY_NAME, PACKAGE_NAME, compiled_package, machine_key
from caloflow_server.errors import RuntimeLoadError


def _export_program(directory: Path, seed: int) -> None:
    """``model.pt2``: ``torch.export`` of ``TinySampler(seed)`` with a dynamic batch dimension."""
    batch = torch.export.Dim("batch", min=1)
    example = (torch.full((2, 1), 1000.0), torch.zeros(2, NOISE_DIM))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(
            TinySampler(seed).eval(), example, dynamic_shapes={"incident_energy": {0: batch}, "noise": {0: batch}}
        )
    torch.export.save(program, str(directory / "model.pt2"))


def _add(repository: ModelRepository, root: Path, onnx_seed: int, program_seed: int) -> int:
    staging = export_tiny(root / f"staging-{onnx_seed}-{program_seed}", onnx_seed)
    _export_program(staging, program_seed)
    manifest = tiny_manifest("tiny_photon")
    artifacts = (*manifest.artifacts, ArtifactInfo("model.pt2", "torch_export", "", 0, "torch.export"))
    return repository.add_version("tiny_photon", staging, dataclasses.replace(manifest, artifacts=artifacts))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelRepository, Path]:
    """Version 1: ONNX and program of the same weights, the program compiled into the cache; version 2: the same
    program bytes (so the same cache entry) beside the ONNX graph of other weights."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("aoti")
    repository = ModelRepository(root / "repo")
    _add(repository, root, onnx_seed=0, program_seed=0)
    _add(repository, root, onnx_seed=1, program_seed=0)
    cache = root / "cache"
    load_runtime(repository, "tiny_photon", 1, backend="aoti", compile_cache=cache)
    return repository, cache


def _entry(repository: ModelRepository, cache: Path, version: int) -> Path:
    manifest = repository.verify("tiny_photon", version)
    (program,) = [a for a in manifest.artifacts if a.format == "torch_export"]
    return cache / program.sha256


def test_compiled_program_serves_the_model_and_its_cache_entry_names_what_it_was_built_for(
    setup: tuple[ModelRepository, Path],
) -> None:
    repository, cache = setup
    entry = _entry(repository, cache, 1)
    built = (entry / PACKAGE_NAME).stat().st_mtime_ns
    loaded = load_runtime(repository, "tiny_photon", 1, backend="aoti", compile_cache=cache)
    assert loaded.runtime.backend == "aoti" and loaded.artifact.format == "torch_export"
    assert (entry / PACKAGE_NAME).stat().st_mtime_ns == built  # reused, not rebuilt
    key = json.loads((entry / KEY_NAME).read_text())
    assert key["artifact_sha256"] == entry.name == loaded.sha256
    assert key["torch_version"] == torch.__version__ and key["arch"] == machine_key(entry.name).arch
    rng = np.random.default_rng(3)
    incident = np.geomspace(300.0, 3e6, 5, dtype=np.float32).reshape(-1, 1)
    noise = rng.standard_normal((5, NOISE_DIM)).astype(np.float32)
    np.testing.assert_allclose(loaded.run(incident, noise), reference_showers(incident, noise), rtol=1e-5)


def test_auto_prefers_the_compiled_program_only_where_a_cache_is_given(setup: tuple[ModelRepository, Path]) -> None:
    repository, cache = setup
    assert load_runtime(repository, "tiny_photon", 1, backend="auto", compile_cache=cache).runtime.backend == "aoti"
    assert load_runtime(repository, "tiny_photon", 1, backend="auto").runtime.backend == "onnx"


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("torch_version", "2.0.0", "torch_version"),
        ("arch", "aarch64 NEON some other cpu", "arch"),
        ("compile_options", "freezing=True", "compile_options"),  # compiled with the thread count frozen in
        ("package_sha256", "00" * 32, "foreign package"),
    ],
)
def test_stale_or_foreign_package_is_refused(
    setup: tuple[ModelRepository, Path], tmp_path: Path, field: str, value: str, why: str
) -> None:
    repository, cache = setup
    entry = _entry(repository, cache, 1)
    copy = tmp_path / entry.name
    shutil.copytree(entry, copy)
    key = json.loads((copy / KEY_NAME).read_text())
    key[field] = value
    (copy / KEY_NAME).write_text(json.dumps(key))
    program = b""  # never read: compiling is off
    with pytest.raises(RuntimeLoadError, match=why):
        compiled_package(tmp_path, entry.name, program, compile_missing=False)
    assert compiled_package(cache, entry.name, program, compile_missing=False) == entry / PACKAGE_NAME


def test_parity_failure_keeps_the_compiled_program_from_serving(
    setup: tuple[ModelRepository, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Version 2's program (weights of seed 0) disagrees with its ONNX graph (seed 1): ``aoti`` refuses it, and
    ``auto`` serves the ONNX graph instead, with a warning."""
    repository, cache = setup
    with pytest.raises(RuntimeLoadError, match="parity: shower"):
        load_runtime(repository, "tiny_photon", 2, backend="aoti", compile_cache=cache)
    with caplog.at_level(logging.WARNING):
        loaded = load_runtime(repository, "tiny_photon", 2, backend="auto", compile_cache=cache)
    assert loaded.runtime.backend == "onnx" and "not serving the compiled program" in caplog.text


def test_parity_accepts_float_rounding_and_refuses_one_changed_shower() -> None:
    class Scaled:
        def __init__(self, scale: float, row: int | None = None) -> None:
            self.scale, self.row = scale, row

        def run(self, incident_mev: np.ndarray, noise: np.ndarray | torch.Tensor) -> np.ndarray:
            out = reference_showers(incident_mev, np.asarray(noise))
            if self.row is None:
                return out * np.float32(self.scale)
            out[self.row] *= np.float32(self.scale)
            return out

    check_parity(Scaled(1.0 + 1e-6), Scaled(1.0), (256.0, 4e6), NOISE_DIM)
    with pytest.raises(RuntimeLoadError, match="shower 9 "):
        check_parity(Scaled(1.1, row=9), Scaled(1.0), (256.0, 4e6), NOISE_DIM)


def test_each_calling_thread_runs_the_package_with_the_servers_threads_per_call(
    setup: tuple[ModelRepository, Path],
) -> None:
    """A batch worker thread that never set a thread count would run the package's loops and matmuls on every core
    (two concurrent calls on two cores: four threads); the backend gives each calling thread the configured count."""
    repository, cache = setup
    loaded = load_runtime(repository, "tiny_photon", 1, backend="aoti", compile_cache=cache, intra_op_threads=1)
    incident = np.full((4, 1), 1000.0, dtype=np.float32)
    noise = np.zeros((4, NOISE_DIM), dtype=np.float32)
    seen: list[int] = []

    def worker() -> None:
        loaded.run(incident, noise)
        seen.append(torch.get_num_threads())

    torch.set_num_threads(2)  # what a fresh thread inherits
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    finally:
        torch.set_num_threads(1)
    assert seen == [1]
