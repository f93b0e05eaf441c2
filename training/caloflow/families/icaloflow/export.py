"""A trained iCaloFlow run -> one graph ``(INCIDENT_ENERGY [B, 1] MeV, NOISE [B, n]) -> SHOWERS [B, V]`` per
format, checked against a float64 evaluation, published with a manifest from the dataset registry.

Composition of the shared export code: the MADE layers are folded / packed by
:func:`caloflow.export.packing.replace_made_layers` (students compact float16, flow-1 dense float32, as DS1),
the graph is traced by the shared torch.export / ONNX / TorchScript paths around
:class:`caloflow.export._root.ExportRoot`, and parity uses :func:`caloflow.export.parity.exact_showers` and
:func:`~caloflow.export.parity.compare` with the DS1 criterion, on energies log-uniform over the dataset's
range. The server needs nothing from this family: it serves the graph the manifest describes.
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.jit._trace import TracerWarning

from caloflow import __version__
from caloflow.data.datasets import Dataset, dataset
from caloflow.errors import CaloflowError
from caloflow.export._root import ExportRoot
from caloflow.export.errors import ExportError
from caloflow.export.fast_onnx_format import FAST_FORM
from caloflow.export.formats import FILENAMES, ExportedArtifact
from caloflow.export.onnx_float16 import store_float16
from caloflow.export.onnx_format import convert_program, save_onnx
from caloflow.export.packing import fold_flow_weights, replace_made_layers
from caloflow.export.parity import check_parity as shared_check_parity
from caloflow.export.torch_export_format import export_root
from caloflow.export.torchscript_format import torchscript_version
from caloflow.families.icaloflow.context import Conditioning
from caloflow.families.icaloflow.fast import fast_icaloflow_sampler
from caloflow.families.icaloflow.models import ICaloFlowModels
from caloflow.families.icaloflow.presets import ICaloFlowPreset, preset_from_dict
from caloflow.families.icaloflow.sampler import ICaloFlowSampler
from caloflow.families.icaloflow.scanned import scanned_generation
from caloflow.families.icaloflow.training import trained_models
from caloflow.publish import dataset_fields, pending_artifacts
from caloflow_repo import Manifest, ModelRepository, standard_inputs, standard_outputs, utc_now_iso

logger = logging.getLogger(__name__)

__all__ = ["FORMATS", "ICaloFlowRun", "check_parity", "export_sampler", "load_run", "publish_run", "reference"]

FORMATS = ("fast_onnx", "onnx", "torchscript")
STUDENT_FLOWS = ("flow2", "flow3")
"""The sampler's attributes holding the distilled students (packed when compact); flow-1 stays dense."""


@dataclass(frozen=True)
class ICaloFlowRun:
    directory: Path
    record: dict[str, Any]
    ds: Dataset
    preset: ICaloFlowPreset
    cond: Conditioning
    models: ICaloFlowModels

    def sampler(self, chain: str = "student", renormalise: bool | None = None) -> ICaloFlowSampler:
        """The generator with the students (served) or the teachers (``chain="teacher"``, slow)."""
        m = self.models
        flow2, flow3 = (m.student2, m.student3) if chain == "student" else (m.flow2, m.flow3)
        renorm = self.preset.renormalise if renormalise is None else renormalise
        return ICaloFlowSampler(m.flow1, flow2, flow3, self.cond, self.ds.threshold_mev, renorm).eval()


def load_run(directory: str | Path) -> ICaloFlowRun:
    root = Path(directory)
    path = root / "run.json"
    if not path.exists():
        raise CaloflowError(f"{root}: no run.json - not a training run directory")
    record = json.loads(path.read_text())
    if record.get("family") != "icaloflow":
        raise CaloflowError(f"{path}: family is {record.get('family', 'caloflow')!r}, not 'icaloflow'")
    preset = preset_from_dict(record["preset"])
    cond = Conditioning(**record["conditioning"])
    models = trained_models(root, preset, cond, int(record["seed"]))
    return ICaloFlowRun(root, record, dataset(record["dataset"]), preset, cond, models)


def reference(sampler: ICaloFlowSampler, compact: bool = True) -> ICaloFlowSampler:
    """The eager model an artifact holds: masks folded, the students rounded to float16 when ``compact``."""
    folded = copy.deepcopy(sampler).eval().requires_grad_(False)
    for name in ("flow1", *STUDENT_FLOWS):
        fold_flow_weights(getattr(folded, name), float16=compact and name in STUDENT_FLOWS)
    return folded


def _prepared(sampler: ICaloFlowSampler, compact: bool, materializing: bool) -> ICaloFlowSampler:
    prepared = copy.deepcopy(sampler).eval().requires_grad_(False)
    for name in ("flow1", *STUDENT_FLOWS):
        packing = compact and name in STUDENT_FLOWS
        replace_made_layers(getattr(prepared, name), packing=packing, materializing=materializing)
    return prepared


def parity_inputs(
    ds: Dataset, noise_dim: int, batch: int, seed: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Energies log-uniform over the dataset's range and seeded standard normal noise, float32."""
    low, high = np.log(ds.energies.min_mev), np.log(ds.energies.max_mev)
    energies = np.exp(np.linspace(low, high, batch)).astype(np.float32).reshape(batch, 1)
    noise = torch.randn(batch, noise_dim, generator=torch.Generator().manual_seed(seed)).numpy()
    return energies, noise


def export_sampler(
    sampler: ICaloFlowSampler, ds: Dataset, out_dir: Path, formats: Sequence[str] = FORMATS, *, compact: bool = True
) -> list[ExportedArtifact]:
    """Write ``sampler`` (the :func:`reference` a compact artifact holds) in ``formats`` into ``out_dir``:
    ``fast_onnx`` (the fast form, :mod:`caloflow.families.icaloflow.fast`, float16 storage when compact; what the
    server prefers), ``onnx`` (the plain graph, its flow-1 D-pass MAF solve) and ``torchscript`` (the plain graph
    traced, students packed). Both ONNX graphs hold flow-1's solve and the 44 flow-3 steps as ``Scan`` loops
    (:mod:`caloflow.families.icaloflow.scanned`): one copy of each loop body instead of hundreds."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown iCaloFlow export format(s) {unknown or list(formats)}; choose from {list(FORMATS)}")
    example = tuple(torch.from_numpy(a) for a in parity_inputs(ds, sampler.noise_dim, 3, seed=0))
    artifacts = []
    for fmt in formats:
        path = Path(out_dir) / FILENAMES[fmt]
        try:
            version = _write(fmt, sampler, example, path, compact)
        except Exception as error:  # exporters raise many types; report them as ours
            raise ExportError(f"{fmt} export to {path} failed: {error}") from error
        artifacts.append(ExportedArtifact(FILENAMES[fmt], fmt, version))
    return artifacts


def _write(fmt: str, sampler: ICaloFlowSampler, example: tuple[torch.Tensor, ...], path: Path, compact: bool) -> str:
    energies, noise = example
    if fmt == "fast_onnx":
        program = export_root(ExportRoot(scanned_generation(fast_icaloflow_sampler(sampler))), (energies, noise))
        model = convert_program(program)
        if compact:
            store_float16(model)
        io = {"inputs": sampler.noise_dim, "outputs": sampler.n_voxels}
        metadata = {"caloflow.io": io, "caloflow.compact": compact, "caloflow.form": FAST_FORM}
        return save_onnx(model, path, metadata)
    if fmt == "onnx":
        program = export_root(ExportRoot(scanned_generation(_prepared(sampler, compact, False))), (energies, noise))
        io = {"inputs": sampler.noise_dim, "outputs": sampler.n_voxels}
        return save_onnx(convert_program(program), path, {"caloflow.io": io, "caloflow.compact": compact})
    prepared = _prepared(sampler, compact, True)
    scripted = tuple(f"sampler.{n}" for n, m in prepared.named_modules() if isinstance(m, torch.jit.ScriptModule))
    root = ExportRoot(prepared, materializable=scripted)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", TracerWarning)
        traced = torch.jit.trace_module(root, {"forward": (energies, noise), "materialize": ()}, check_trace=False)  # type: ignore[no-untyped-call]
    for name in scripted:  # tracing ran materialize(): drop the dense weights so the file stays compact
        traced.get_submodule(name).release()
    traced.save(str(path))
    return torchscript_version()


def check_parity(
    out_dir: Path,
    artifacts: Sequence[ExportedArtifact],
    eager: ICaloFlowSampler,
    ds: Dataset,
    batch_sizes: Sequence[int] = (1, 100),
) -> dict[str, dict[int, dict[str, float | int]]]:
    """Every artifact against ``eager`` evaluated in float64: the shared check and criterion
    (:func:`caloflow.export.parity.check_parity`) on energies log-uniform over the dataset's range."""
    inputs = {b: parity_inputs(ds, eager.noise_dim, b, seed=b) for b in batch_sizes}
    return shared_check_parity(out_dir, artifacts, eager, inputs=inputs)


def publish_run(
    run_dir: str | Path,
    repo_root: str | Path,
    model: str,
    *,
    formats: Sequence[str] = FORMATS,
    compact: bool = True,
    make_default: bool = False,
    description: str | None = None,
    parity_batches: Sequence[int] = (1, 100),
    renormalise: bool | None = None,
) -> tuple[int, Manifest, dict[str, Any]]:
    """Export, check parity, add as the model's next version; returns (version, manifest, parity).
    ``renormalise`` overrides the run's generation setting (None: keep it); the manifest records the one used."""
    run = load_run(run_dir)
    if renormalise is not None:
        run = replace(run, preset=replace(run.preset, renormalise=renormalise))
    repo = ModelRepository(repo_root)
    Path(repo_root).mkdir(parents=True, exist_ok=True)
    eager = reference(run.sampler(), compact)
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=repo_root) as staging:
        artifacts = export_sampler(eager, run.ds, Path(staging), formats, compact=compact)
        parity = check_parity(Path(staging), artifacts, eager, run.ds, parity_batches)
        manifest = build_manifest(run, model, artifacts, parity, compact, description, eager.noise_dim)
        version = repo.add_version(model, staging, manifest, make_default=make_default)
    logger.info("exported %s as %s version %d (%s)", run_dir, model, version, ", ".join(formats))
    return version, repo.verify(model, version), parity


def build_manifest(
    run: ICaloFlowRun,
    model: str,
    artifacts: Sequence[ExportedArtifact],
    parity: dict[str, Any],
    compact: bool,
    description: str | None,
    noise_dim: int,
) -> Manifest:
    ds, data = run.ds, run.record["data"]
    standin = bool(data.get("standin"))
    source = "stand-in showers (stand-in, not Geant4)" if standin else "the file recorded in training.data_sha256"
    return Manifest(
        model=model,
        version=1,  # replaced by add_version
        particle=ds.particle,
        description=description
        or f"iCaloFlow {ds.name} generator (flow-1 + distilled flow-2/flow-3 students), preset "
        f"{run.preset.name}, trained on {source}",
        standin=standin,
        geometry=ds.geometry.to_dict(),
        energy_range_mev=(float(ds.energies.min_mev), float(ds.energies.max_mev)),
        noise_dim=noise_dim,
        n_voxels=ds.n_voxels,
        inputs=standard_inputs(noise_dim),
        outputs=standard_outputs(ds.n_voxels),
        preprocessing={"family": "icaloflow", **run.cond.to_dict(), "renormalise": run.preset.renormalise},
        training=_training_figures(run),
        artifacts=pending_artifacts(artifacts),
        created_utc=utc_now_iso(),
        producer=f"caloflow {__version__}",
        extra={
            "family": "icaloflow",
            "compact_fp16_weights": compact,
            "parity": parity,
            "preset": run.preset.to_dict(),
        },
        **dataset_fields(ds.manifest_fields()),
    )


def _training_figures(run: ICaloFlowRun) -> dict[str, Any]:
    path = run.directory / "summary.json"
    stages = json.loads(path.read_text()).get("stages", {}) if path.exists() else {}
    figures: dict[str, Any] = {
        "preset": run.preset.name,
        "seed": int(run.record["seed"]),
        "data_sha256": str(run.record["data"]["sha256"]),
        "n_train": int(run.record["data"]["n_train"]),
    }
    for name, stage in stages.items():
        figures[f"{name}_{stage['select_key']}"] = float(stage["best_metric"])
    return figures
