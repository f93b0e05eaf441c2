"""Shared builders for the ``test_repo_*`` tests: a small valid manifest and a staging directory (no tests here)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from caloflow_repo import ArtifactInfo, Manifest, standard_inputs, standard_outputs

# two layers: 2 radial bins x 1 alpha bin, then 3 radial bins x 2 alpha bins -> 2 + 6 = 8 voxels
GEOMETRY: dict[str, Any] = {
    "name": "tiny",
    "pid": 22,
    "n_voxels": 8,
    "layers": [
        {"id": 0, "r_edges_mm": [0.0, 5.0, 10.0], "n_alpha": 1},
        {"id": 1, "r_edges_mm": [0.0, 5.0, 10.0, 20.0], "n_alpha": 2},
    ],
    "layer_offsets": [0, 2, 8],
}
ONNX_BYTES = b"onnx-bytes " * 300
PT_BYTES = b"torchscript-bytes " * 200


def make_manifest(model: str = "caloflow_photon", **changes: Any) -> Manifest:
    manifest = Manifest(
        model=model,
        version=1,
        particle="photon",
        description="test model",
        standin=True,
        geometry=GEOMETRY,
        energy_range_mev=(256.0, 4194304.0),
        noise_dim=8,
        n_voxels=8,
        inputs=standard_inputs(8),
        outputs=standard_outputs(8),
        preprocessing={"alpha": 1e-6, "log_energy": True},
        training={"preset": "small", "seed": 3, "data_sha256": "ab" * 32, "teacher_nll": -12.5, "kl": 0.25},
        artifacts=(
            ArtifactInfo("model.onnx", "onnx", "", 0, "opset 17"),
            ArtifactInfo("model.pt", "torchscript", "", 0, "torch 2.13.0"),
        ),
        created_utc="2026-01-02T03:04:05Z",
        producer="caloflow 0.1.0",
        extra={"note": "stand-in, not Geant4"},
    )
    return dataclasses.replace(manifest, **changes)


def stage(directory: Path, files: dict[str, bytes] | None = None) -> Path:
    """A staging directory holding the artifacts ``make_manifest`` lists (or ``files``)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in (files or {"model.onnx": ONNX_BYTES, "model.pt": PT_BYTES}).items():
        (directory / name).write_bytes(data)
    return directory
