"""A tiny exported sampler for the precision tests (no tests here): showers spread over many decades, so that
the gate's mutations (float16 overflow, small fractions flushed, bfloat16 renormalisation) have something to bite.

``showers = E * response * softmax(4 * relu(noise[:, 1:] @ W1) @ W2 + b)``, ``response = sigmoid(0.3 noise[:, 0] +
0.5)``: E_tot/E_inc varies, voxel fractions span ~1e-8 .. 0.5, and W1 (79 x 64) is large enough for the int8
mode to quantise it. Two layers of 16 voxels; threshold 0.01 MeV as in Dataset 1.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from caloflow_repo import ArtifactInfo, Manifest, ModelRepository, standard_inputs, standard_outputs

NOISE_DIM = 80
N_VOXELS = 32
HIDDEN = 64
GEOMETRY: dict[str, Any] = {
    "name": "tiny-spread",
    "pid": 22,
    "n_voxels": N_VOXELS,
    "layers": [
        {"id": 0, "r_edges_mm": [0.0, 5.0, 10.0, 20.0, 40.0], "n_alpha": 4},
        {"id": 1, "r_edges_mm": [0.0, 5.0, 10.0, 20.0, 40.0], "n_alpha": 4},
    ],
    "layer_offsets": [0, 16, 32],
}


class SpreadSampler(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.w1 = nn.Parameter(torch.randn(NOISE_DIM - 1, HIDDEN, generator=generator) / NOISE_DIM**0.5)
        self.w2 = nn.Parameter(torch.randn(HIDDEN, N_VOXELS, generator=generator) / HIDDEN**0.5)
        self.bias = nn.Parameter(torch.randn(N_VOXELS, generator=generator))

    def forward(self, incident_energy: Tensor, noise: Tensor) -> Tensor:
        hidden = torch.relu(noise[:, 1:] @ self.w1)
        fractions = torch.softmax(4.0 * (hidden @ self.w2) + self.bias, dim=1)
        response = torch.sigmoid(0.3 * noise[:, :1] + 0.5)
        return incident_energy * response * fractions


def spread_manifest(model: str) -> Manifest:
    return Manifest(
        model=model,
        version=1,
        particle="photon",
        description="tiny spread sampler (precision tests)",
        standin=True,
        geometry=GEOMETRY,
        energy_range_mev=(256.0, 4194304.0),
        noise_dim=NOISE_DIM,
        n_voxels=N_VOXELS,
        inputs=standard_inputs(NOISE_DIM),
        outputs=standard_outputs(N_VOXELS),
        preprocessing={"threshold_mev": 0.01},
        training={"preset": "tiny", "seed": 0, "data_sha256": "cd" * 32},
        artifacts=(ArtifactInfo("model.onnx", "onnx", "", 0, "opset 17"),),
        created_utc="2026-01-02T03:04:05Z",
        producer="tests",
    )


def make_spread_repository(root: Path, model: str = "tiny_spread") -> ModelRepository:
    """A repository holding ``model`` version 1: the ONNX export of ``SpreadSampler(0)``."""
    staging = root / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    example = (torch.full((2, 1), 1000.0), torch.zeros(2, NOISE_DIM))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            SpreadSampler(0).eval(),
            example,
            str(staging / "model.onnx"),
            input_names=["INCIDENT_ENERGY", "NOISE"],
            output_names=["SHOWERS"],
            dynamic_axes={"INCIDENT_ENERGY": {0: "batch"}, "NOISE": {0: "batch"}, "SHOWERS": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    repository = ModelRepository(root / "repo")
    repository.add_version(model, staging, spread_manifest(model))
    return repository


def bfloat16(values: np.ndarray) -> np.ndarray:
    """``values`` rounded to bfloat16 (nearest even), returned as float32."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32)
