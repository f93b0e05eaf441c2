"""Shared builders for the ``test_server_*`` tests (no tests here): a tiny sampler exported to a real repository.

The tiny sampler has the exported CaloFlow signature, ``(INCIDENT_ENERGY (B, 1), NOISE (B, 16)) -> SHOWERS (B, 8)``
in MeV, and is a deterministic function of its inputs::

    showers = softplus(noise @ W + log(E / 1 GeV) * c + b) * E / 8

It conditions on ``log(E)`` as the real flows do (on ONNX Runtime CPU that elementwise ``Log`` is what makes
rows depend on the batch size). A shower at exactly ``POISON_MEV`` comes out NaN (``(E - p) / (E - p)``), to
test that non-finite output never leaves the server.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from caloflow_repo import ArtifactInfo, Manifest, ModelRepository, standard_inputs, standard_outputs
from caloflow_server import Runtime

NOISE_DIM = 16
N_VOXELS = 8
ENERGY_RANGE_MEV = (256.0, 4194304.0)
POISON_MEV = 777.0
GEOMETRY: dict[str, Any] = {
    "name": "tiny",
    "pid": 22,
    "n_voxels": N_VOXELS,
    "layers": [
        {"id": 0, "r_edges_mm": [0.0, 5.0, 10.0], "n_alpha": 1},
        {"id": 1, "r_edges_mm": [0.0, 5.0, 10.0, 20.0], "n_alpha": 2},
    ],
    "layer_offsets": [0, 2, 8],
}


class TinySampler(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(NOISE_DIM, N_VOXELS, generator=generator) / NOISE_DIM**0.5)
        self.log_energy_weight = nn.Parameter(torch.randn(N_VOXELS, generator=generator) * 0.1)
        self.bias = nn.Parameter(torch.randn(N_VOXELS, generator=generator))
        self.poison_mev = POISON_MEV
        self.n_voxels = N_VOXELS

    def forward(self, incident_energy: Tensor, noise: Tensor) -> Tensor:
        logits = noise @ self.weight + torch.log(incident_energy / 1000.0) * self.log_energy_weight + self.bias
        poison = (incident_energy - self.poison_mev) / (incident_energy - self.poison_mev)
        return nn.functional.softplus(logits) * incident_energy / self.n_voxels * poison


def reference_showers(incident_mev: np.ndarray, noise: np.ndarray, seed: int = 0) -> np.ndarray:
    """The tiny sampler in eager torch (float32), for comparisons within a tolerance."""
    with torch.inference_mode():
        out: np.ndarray = TinySampler(seed)(
            torch.as_tensor(incident_mev).reshape(-1, 1), torch.as_tensor(noise)
        ).numpy()
    return out


def export_tiny(directory: Path, seed: int = 0) -> Path:
    """``model.onnx`` (opset 17, dynamic batch) and ``model.pt`` (TorchScript) of ``TinySampler(seed)``."""
    directory.mkdir(parents=True, exist_ok=True)
    module = TinySampler(seed).eval()
    example = (torch.full((2, 1), 1000.0), torch.zeros(2, NOISE_DIM))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(directory / "model.onnx"),
            input_names=["INCIDENT_ENERGY", "NOISE"],
            output_names=["SHOWERS"],
            dynamic_axes={"INCIDENT_ENERGY": {0: "batch"}, "NOISE": {0: "batch"}, "SHOWERS": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        torch.jit.save(torch.jit.script(module), str(directory / "model.pt"))
    return directory


def tiny_manifest(model: str, particle: str = "photon") -> Manifest:
    return Manifest(
        model=model,
        version=1,
        particle=particle,
        description="tiny test sampler",
        standin=True,
        geometry=GEOMETRY,
        energy_range_mev=ENERGY_RANGE_MEV,
        noise_dim=NOISE_DIM,
        n_voxels=N_VOXELS,
        inputs=standard_inputs(NOISE_DIM),
        outputs=standard_outputs(N_VOXELS),
        preprocessing={},
        training={"preset": "tiny", "seed": 0, "data_sha256": "ab" * 32},
        artifacts=(
            ArtifactInfo("model.onnx", "onnx", "", 0, "opset 17"),
            ArtifactInfo("model.pt", "torchscript", "", 0, torch.__version__),
        ),
        created_utc="2026-01-02T03:04:05Z",
        producer="tests",
    )


def make_repository(root: Path) -> ModelRepository:
    """``tiny_photon`` versions 1 and 2 (weights seeded 0 and 1; 1 is the default) and ``tiny_pion`` version 1."""
    repository = ModelRepository(root / "repo")
    for model, particle, seed in (("tiny_photon", "photon", 0), ("tiny_photon", "photon", 1), ("tiny_pion", "pion", 2)):
        staging = export_tiny(root / f"staging-{model}-{seed}", seed)
        repository.add_version(model, staging, tiny_manifest(model, particle))
    return repository


class RecordingRuntime:
    """The real runtime, recording every call's row count; ``skew_below`` rows or fewer change their last bit
    (a backend whose small-call kernels round differently); ``delay_s``: each call also sleeps that long (a
    model as slow as a wide one)."""

    def __init__(self, inner: Runtime, skew_below: int = 0, delay_s: float = 0.0) -> None:
        self.inner = inner
        self.backend, self.device = inner.backend, inner.device
        self.noise_dim, self.n_voxels = inner.noise_dim, inner.n_voxels
        self.skew_below = skew_below
        self.delay_s = delay_s
        self.calls: list[int] = []

    def run(self, incident_mev: np.ndarray, noise: np.ndarray | torch.Tensor) -> np.ndarray:
        self.calls.append(incident_mev.shape[0])
        if self.delay_s:
            time.sleep(self.delay_s)
        out: np.ndarray = self.inner.run(incident_mev, noise)
        if incident_mev.shape[0] <= self.skew_below:
            out = np.nextafter(out, np.float32(np.inf)).astype(np.float32)
        return out

    def warm_up(self, batch_sizes: list[int], energy_mev: float = 1000.0) -> None:
        self.inner.warm_up(batch_sizes, energy_mev)


# ------------------------------------------------------------------------------------------ dataset-shaped fixtures
# A FIXTURE FOR THE SHAPE HANDLING ONLY, not a model: until the iCaloFlow / L2LFlows models land, the dataset tests
# serve this tiny synthetic sampler with the output sizes of CaloChallenge Dataset 2 (6480 voxels) and of the ILD
# grid (30 x 30 x 30). Same signature as every exported sampler, ``(INCIDENT_ENERGY, NOISE) -> SHOWERS [B, V]``.
SHAPED_NOISE_DIM = 4
DS2_SHAPE = (6480,)
ILD_SHAPE = (30, 30, 30)
SHAPED_ENERGY_RANGE_MEV = (1e3, 1e6)


class ShapedSampler(nn.Module):
    """``softplus(noise @ W + log(E / 1 GeV) * c) * E / V``: a deterministic function of its inputs, V outputs."""

    def __init__(self, n_voxels: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(SHAPED_NOISE_DIM, n_voxels, generator=generator))
        self.log_energy_weight = nn.Parameter(torch.randn(n_voxels, generator=generator) * 0.1)
        self.n_voxels = n_voxels

    def forward(self, incident_energy: Tensor, noise: Tensor) -> Tensor:
        logits = noise @ self.weight + torch.log(incident_energy / 1000.0) * self.log_energy_weight
        return nn.functional.softplus(logits) * incident_energy / self.n_voxels


def export_shaped(directory: Path, n_voxels: int, seed: int = 0) -> Path:
    """``model.onnx`` (opset 17, dynamic batch) of ``ShapedSampler(n_voxels, seed)``."""
    directory.mkdir(parents=True, exist_ok=True)
    module = ShapedSampler(n_voxels, seed).eval()
    example = (torch.full((2, 1), 1000.0), torch.zeros(2, SHAPED_NOISE_DIM))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(directory / "model.onnx"),
            input_names=["INCIDENT_ENERGY", "NOISE"],
            output_names=["SHOWERS"],
            dynamic_axes={"INCIDENT_ENERGY": {0: "batch"}, "NOISE": {0: "batch"}, "SHOWERS": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return directory


def _cylinder(n_layers: int, n_r: int, n_alpha: int) -> dict[str, Any]:
    layers = [{"id": i, "r_edges_mm": [float(k) for k in range(n_r + 1)], "n_alpha": n_alpha} for i in range(n_layers)]
    size = n_r * n_alpha
    return {
        "kind": "cylindrical",
        "name": "electron",
        "pid": 11,
        "n_voxels": n_layers * size,
        "layers": layers,
        "layer_offsets": [i * size for i in range(n_layers + 1)],
    }


def shaped_manifest(model: str, dataset: str) -> Manifest:
    """A manifest of the dataset fields the registry's ``manifest_fields`` writes, for ``ds2-electron``-like
    (45 layers x 9 r x 16 alpha) or ``ild-photon``-like (a 30 x 30 x 30 grid) shaped samplers."""
    if dataset.startswith("ild"):
        shape, particle, layout, kind = ILD_SHAPE, "photon", "ild", "cartesian"
        geometry: dict[str, Any] = {"kind": kind, "name": "photon", "pid": 22, "n_voxels": 27000, "shape": [30, 30, 30]}
    else:
        shape, particle, layout, kind = DS2_SHAPE, "electron", "calochallenge", "cylindrical"
        geometry = _cylinder(45, 9, 16)
    n_voxels = int(np.prod(shape))
    return Manifest(
        model=model,
        version=1,
        particle=particle,
        description="tiny synthetic sampler of the dataset's shape: a test fixture, stand-in, not Geant4",
        standin=True,
        geometry=geometry,
        energy_range_mev=SHAPED_ENERGY_RANGE_MEV,
        noise_dim=SHAPED_NOISE_DIM,
        n_voxels=n_voxels,
        inputs=standard_inputs(SHAPED_NOISE_DIM),
        outputs=standard_outputs(n_voxels),
        preprocessing={},
        training={"preset": "tiny", "seed": 0, "data_sha256": "cd" * 32},
        artifacts=(ArtifactInfo("model.onnx", "onnx", "", 0, "opset 17"),),
        created_utc="2026-01-02T03:04:05Z",
        producer="tests",
        dataset=dataset,
        dataset_aliases=(),
        geometry_kind=kind,
        shower_shape=shape,
        file_layout=layout,
    )


def make_dataset_repository(root: Path) -> ModelRepository:
    """``make_repository``'s DS1 models (legacy manifests) plus ``tiny_ds2`` and ``tiny_ds2_b`` (ds2-electron,
    6480 voxels) and ``tiny_ild`` (ild-photon, 30 x 30 x 30)."""
    repository = make_repository(root)
    for model, dataset, seed in (
        ("tiny_ds2", "ds2-electron", 3),
        ("tiny_ds2_b", "ds2-electron", 4),
        ("tiny_ild", "ild-photon", 5),
    ):
        n_voxels = int(np.prod(ILD_SHAPE if dataset.startswith("ild") else DS2_SHAPE))
        staging = export_shaped(root / f"staging-{model}", n_voxels, seed)
        repository.add_version(model, staging, shaped_manifest(model, dataset))
    return repository
