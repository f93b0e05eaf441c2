"""``caloflow export`` of an L2LFlows run: one graph, parity, a manifest from the registry, the next version.

The manifest declares the grid the model covers: ``geometry`` is the dataset's grid with the crop's
``shape``/``n_voxels`` and ``geometry.crop`` (where the cells sit in the full grid), ``shower_shape`` the
crop's (``[30, 10, 10]`` for the faithful model); the server shapes its responses from it.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from caloflow.export.formats import ExportedArtifact
from caloflow.families.l2lflows.data import grid_geometry
from caloflow.families.l2lflows.export import check_l2l_parity, export_l2l, reference_l2l_sampler
from caloflow.families.l2lflows.runner import TrainedL2LRun, load_l2l_run
from caloflow.publish import Published, artifact_fields, dataset_fields
from caloflow_repo import Manifest, ModelRepository, standard_inputs, standard_outputs

__all__ = ["build_l2l_manifest", "publish_l2l_run"]

logger = logging.getLogger(__name__)


def publish_l2l_run(
    run_dir: str | Path,
    repo_root: str | Path,
    model: str,
    *,
    compact: bool = True,
    make_default: bool = False,
    description: str | None = None,
) -> Published:
    """Export ``run_dir``'s student chain, check parity, add it to the repository as the next version."""
    run = load_l2l_run(run_dir)
    energy_range = (run.ds.energies.min_mev, run.ds.energies.max_mev)
    reference = reference_l2l_sampler(run.sampler("student"), compact=compact)
    repo = ModelRepository(repo_root)
    Path(repo_root).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=repo_root) as staging:
        artifacts = export_l2l(reference, Path(staging), energy_range, compact=compact)
        parity = check_l2l_parity(Path(staging), artifacts, reference, energy_range)
        manifest = build_l2l_manifest(run, model, artifacts, parity=parity, compact=compact, description=description)
        version = repo.add_version(model, staging, manifest, make_default=make_default)
    logger.info("exported %s as %s version %d", run_dir, model, version)
    return Published(model, version, repo.verify(model, version), parity)


def build_l2l_manifest(
    run: TrainedL2LRun,
    model: str,
    artifacts: Sequence[ExportedArtifact],
    *,
    parity: dict[str, Any],
    compact: bool,
    description: str | None,
) -> Manifest:
    ds, crop, prep = run.ds, run.crop, run.prep
    data = run.record["data"]
    standin = bool(data.get("standin"))
    fields = dataset_fields({**ds.manifest_fields(), "shower_shape": crop.shower_shape})
    return Manifest(
        model=model,
        version=1,  # replaced by add_version
        particle=ds.particle,
        description=description or _description(run, standin),
        standin=standin,
        geometry=crop.geometry_dict(grid_geometry(ds)),
        energy_range_mev=(ds.energies.min_mev, ds.energies.max_mev),
        noise_dim=prep.n_layers + prep.n_voxels,
        n_voxels=prep.n_voxels,
        inputs=standard_inputs(prep.n_layers + prep.n_voxels),
        outputs=standard_outputs(prep.n_voxels),
        preprocessing={**prep.to_dict(), "window": run.preset.window, "crop": crop.to_dict()},
        training={
            "preset": run.preset.name,
            "seed": int(run.record["seed"]),
            "data_sha256": str(data["sha256"]),
            "n_train": int(data["n_train"]),
            "family": "l2lflows",
        },
        **artifact_fields(artifacts, _extra(run, parity, compact)),
        **fields,
    )


def _extra(run: TrainedL2LRun, parity: dict[str, Any], compact: bool) -> dict[str, Any]:
    student = _stage_summary(run, "student")
    return {
        "family": "l2lflows",
        "compact_fp16_weights": compact,
        "parity": parity,
        "preset": run.preset.to_dict(),
        "student_kl_per_layer": student.get("kl_per_layer"),
        "drift": student.get("drift"),
    }


def _description(run: TrainedL2LRun, standin: bool) -> str:
    source = "stand-in showers (stand-in, not Geant4)" if standin else "the file recorded in training.data_sha256"
    size = run.crop.size
    return (
        f"L2LFlows {run.ds.name} generator (flow-I + {run.prep.n_layers} distilled IAF layer students) on the "
        f"{size} x {size} crop, preset {run.preset.name}, trained on {source}"
    )


def _stage_summary(run: TrainedL2LRun, name: str) -> dict[str, Any]:
    import json

    path = run.directory / name / "summary.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}
