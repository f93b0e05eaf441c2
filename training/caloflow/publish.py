"""``caloflow export``: a trained run -> a checked, versioned entry of the model repository.

The run's whole sampler (flow-I, recursion, labels, student, post-processing) is exported in each requested
format into a staging directory inside the repository, every format is checked against the eager sampler
(batch 1 and 1000, same energies and noise), and only then is the staging directory published as the
model's next version (``caloflow_repo.ModelRepository.add_version``: copy, fsync, rename).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from caloflow import __version__
from caloflow.data.datasets import dataset
from caloflow.data.hdf5 import read_incident_energies
from caloflow.errors import CaloflowError
from caloflow.export import ExportedArtifact, check_parity, export_sampler, reference_sampler
from caloflow.training.run_dir import TrainedRun, load_run
from caloflow_repo import ArtifactInfo, Manifest, ModelRepository, standard_inputs, standard_outputs, utc_now_iso

logger = logging.getLogger(__name__)


class ExportError(CaloflowError):
    """A run cannot be exported (incomplete run, failed parity check)."""


@dataclass(frozen=True)
class Published:
    model: str
    version: int
    manifest: Manifest
    parity: dict[str, Any]


def publish_run(
    run_dir: str | Path,
    repo_root: str | Path,
    model: str,
    *,
    formats: Sequence[str],
    compact: bool = True,
    make_default: bool = False,
    description: str | None = None,
) -> Published:
    """Export ``run_dir`` in ``formats``, check parity, add it to the repository as the next version."""
    run = load_run(run_dir)
    repo = ModelRepository(repo_root)
    Path(repo_root).mkdir(parents=True, exist_ok=True)
    reference = reference_sampler(run, compact=compact)
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=repo_root) as staging:
        artifacts = export_sampler(reference, Path(staging), formats, compact=compact)
        parity = check_parity(Path(staging), artifacts, reference)
        manifest = build_manifest(run, model, artifacts, parity, compact, description)
        version = repo.add_version(model, staging, manifest, make_default=make_default)
    published = repo.verify(model, version)
    logger.info("exported %s as %s version %d (%s)", run_dir, model, version, ", ".join(formats))
    return Published(model, version, published, parity)


def build_manifest(
    run: TrainedRun,
    model: str,
    artifacts: Sequence[ExportedArtifact],
    parity: dict[str, Any],
    compact: bool,
    description: str | None,
) -> Manifest:
    ds = dataset(run.particle)
    data = run.record["data"]
    noise_dim = run.prep.n_layers + run.prep.n_voxels
    standin = bool(data.get("standin"))
    return Manifest(
        model=model,
        version=1,  # replaced by add_version
        particle=ds.particle,
        description=description or _description(run, standin),
        standin=standin,
        geometry=ds.geometry.to_dict(),
        energy_range_mev=_energy_range(run),
        noise_dim=noise_dim,
        n_voxels=run.prep.n_voxels,
        inputs=standard_inputs(noise_dim),
        outputs=standard_outputs(run.prep.n_voxels),
        preprocessing=run.prep.to_dict(),
        training=_training_figures(run),
        artifacts=pending_artifacts(artifacts),
        created_utc=utc_now_iso(),
        producer=f"caloflow {__version__}",
        extra={"compact_fp16_weights": compact, "parity": parity, "preset": run.preset.to_dict()},
        **dataset_fields(ds.manifest_fields()),
    )


def pending_artifacts(artifacts: Sequence[ExportedArtifact]) -> tuple[ArtifactInfo, ...]:
    """The manifest entries of freshly written artifacts (checksums and sizes are filled in by ``add_version``)."""
    return tuple(
        ArtifactInfo(filename=a.filename, format=a.format, sha256="", size_bytes=0, format_version=a.format_version)
        for a in artifacts
    )


def artifact_fields(artifacts: Sequence[ExportedArtifact], extra: dict[str, Any]) -> dict[str, Any]:
    """``Manifest`` keyword arguments naming what was written and by whom: the pending artifacts, the creation
    time, this producer and ``extra`` (a family's parity figures, preset, ...)."""
    return {
        "artifacts": pending_artifacts(artifacts),
        "created_utc": utc_now_iso(),
        "producer": f"caloflow {__version__}",
        "extra": extra,
    }


def dataset_fields(fields: dict[str, object]) -> dict[str, Any]:
    """The registry's ``manifest_fields`` as ``Manifest`` keyword arguments (lists as tuples)."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in fields.items()}


def _description(run: TrainedRun, standin: bool) -> str:
    source = "stand-in showers (NOT Geant4)" if standin else "the training file recorded in training.data_sha256"
    generator = f"CaloFlow {run.particle} generator (flow-I + distilled IAF student), preset {run.preset.name}"
    return f"{generator}, trained on {source}"


def _energy_range(run: TrainedRun) -> tuple[float, float]:
    data = run.record["data"]
    if "energy_range_mev" in data:
        low, high = data["energy_range_mev"]
        return float(low), float(high)
    path = Path(data["path"])  # runs recorded before the range was stored
    if not path.exists():
        raise ExportError(f"{run.directory}/run.json has no energy_range_mev and {path} is gone")
    energies = read_incident_energies(path)
    n_train = int(data["n_train"])
    return float(np.min(energies[:n_train])), float(np.max(energies[:n_train]))


def _training_figures(run: TrainedRun) -> dict[str, Any]:
    summary_path = run.directory / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"stages": {}}
    stages = summary.get("stages", {})
    figures: dict[str, Any] = {
        "preset": run.preset.name,
        "seed": int(run.record["seed"]),
        "data_sha256": str(run.record["data"]["sha256"]),
        "n_train": int(run.record["data"]["n_train"]),
    }
    for name, key in (("flow1", "flow1_val_nll"), ("teacher", "teacher_val_nll"), ("student", "student_kl")):
        if name in stages:
            figures[key] = float(stages[name]["best_metric"])
    gate = stages.get("student", {}).get("quality_gate")
    if gate:
        figures["gate_teacher_nll"] = float(gate["teacher_nll"])
        figures["gate_student_nll"] = float(gate["student_nll"])
        figures["gate_relative_gap"] = float(gate["relative_gap"])
    return figures
