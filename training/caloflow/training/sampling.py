"""Generate showers from a trained run into its dataset's file, in batches, with provenance attributes.

Any family's run: a CaloFlow or iCaloFlow run (CaloChallenge file; :mod:`caloflow.families.icaloflow.sampling`)
or an L2LFlows run (ILD file, the crop embedded in the full grid: :mod:`caloflow.families.l2lflows.sampling`).
What a family provides is a :class:`SampleSource`: its generator ``(incident energies MeV (B, 1), noise (B,
noise_dim)) -> showers``, its dataset, the file's attributes and, for a model that covers only part of its
dataset's grid, how its cells land in the full grid.

Sampling runs the fast form of the sampler (:mod:`caloflow.export.fast`: the same function up to float
rounding, no log-determinants, masked-out weights skipped). For the teacher that matters most: its MAF
inverse recomputed all D features' spline parameters in each of its D passes (measured on the ``small``
photon run, 1 thread, batch 100: 668 ms per shower plain, 37 ms fast).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from tqdm import tqdm

from caloflow import __version__
from caloflow.data.datasets import Dataset, dataset
from caloflow.data.hdf5 import ShowerWriter, file_layout, read_incident_energies
from caloflow.export.fast import fast_sampler
from caloflow.sampler import draw_noise
from caloflow.training.run_dir import TrainedRun, load_run, run_family
from caloflow.training.runner import resolve_device

__all__ = ["SampleSource", "iter_samples", "run_attrs", "sample_to_file"]

Attrs = dict[str, str | int | float]


@dataclass(frozen=True)
class SampleSource:
    """A trained run's generator, whatever its family, and how its showers land in the dataset's file."""

    sampler: nn.Module  # forward(incident_energy_mev (B, 1), noise (B, noise_dim)) -> (B, V_model) MeV
    noise_dim: int
    ds: Dataset
    attrs: Attrs
    to_grid: Callable[[NDArray[np.float32]], NDArray[np.floating[Any]]] | None = None
    """(n, V_model) showers -> (n, ds.n_voxels) for a model covering part of the grid; None: they are the grid."""

    def file_showers(self, showers: NDArray[np.float32]) -> NDArray[np.floating[Any]]:
        return showers.astype(np.float64) if self.to_grid is None else self.to_grid(showers)


def _batches(
    source: SampleSource, energies_mev: NDArray[np.float64], seed: int, batch_size: int, device: torch.device | str
) -> Iterator[NDArray[np.float32]]:
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for start in range(0, len(energies_mev), batch_size):
            chunk = torch.as_tensor(energies_mev[start : start + batch_size], dtype=torch.float32, device=device)
            noise = draw_noise(len(chunk), source.noise_dim, generator, device)
            yield source.sampler(chunk[:, None], noise).cpu().numpy()


def _caloflow_source(run: TrainedRun, flow: str, seed: int, device: torch.device | str) -> SampleSource:
    sampler = fast_sampler(run.sampler(flow), chunk=None).to(device)
    return SampleSource(sampler, sampler.noise_dim, dataset(run.particle), _attrs(run, seed, flow))


def iter_samples(
    run: TrainedRun,
    energies_mev: NDArray[np.float64],
    *,
    seed: int = 0,
    flow: str = "student",
    batch_size: int = 1000,
    device: torch.device | str = "cpu",
) -> Iterator[NDArray[np.float32]]:
    yield from _batches(_caloflow_source(run, flow, seed, device), energies_mev, seed, batch_size, device)


def _source(
    run_dir: str | Path, flow: str, seed: int, device: torch.device, renormalise: bool | None = None
) -> SampleSource:
    family = run_family(run_dir)
    if renormalise is not None and family != "icaloflow":
        raise ValueError(f"--renormalise applies to iCaloFlow runs; {run_dir} is a {family} run")
    if family == "icaloflow":
        from caloflow.families.icaloflow.sampling import icaloflow_sample_source

        return icaloflow_sample_source(run_dir, flow, seed, device, renormalise)
    if family == "l2lflows":
        from caloflow.families.l2lflows.sampling import l2l_sample_source

        return l2l_sample_source(run_dir, flow, seed, device)
    return _caloflow_source(load_run(run_dir, device), flow, seed, device)


def _energies(ds: Dataset, energies_from: str | Path | None, scale: float, seed: int) -> NDArray[np.float64]:
    if energies_from is None:
        return ds.file_energies(scale, np.random.default_rng(seed))
    layout = file_layout(energies_from) or "calochallenge"
    return read_incident_energies(energies_from, layout=layout).astype(np.float64)


def sample_to_file(
    run_dir: str | Path,
    out: str | Path,
    *,
    scale: float = 0.1,
    energies_from: str | Path | None = None,
    seed: int = 0,
    flow: str = "student",
    batch_size: int = 1000,
    device: str = "auto",
    progress: bool = True,
    renormalise: bool | None = None,
) -> Path:
    """Showers of ``run_dir``'s ``flow`` chain at the energies of ``energies_from`` (any dataset layout, in order)
    or ``scale`` x the dataset's file spectrum, written to ``out`` in the run's dataset's layout. ``renormalise``
    (iCaloFlow only; None: the run's setting) overrides the generation's layer renormalisation."""
    torch_device = resolve_device(device)
    source = _source(run_dir, flow, seed, torch_device, renormalise)
    energies = _energies(source.ds, energies_from, scale, seed)
    layout: dict[str, Any] = {}
    if source.ds.layout != "calochallenge":
        layout = {"layout": source.ds.layout, "shower_shape": source.ds.shower_shape}
    with ShowerWriter(out, source.ds.n_voxels, attrs=source.attrs, expected_rows=len(energies), **layout) as writer:
        bar = tqdm(total=len(energies), unit="shower", disable=not progress, desc=f"sampling ({flow})")
        start = 0
        for showers in _batches(source, energies, seed, batch_size, torch_device):
            writer.append(energies[start : start + len(showers)], source.file_showers(showers))
            start += len(showers)
            bar.update(len(showers))
        bar.close()
    return Path(out)


def _attrs(run: TrainedRun, seed: int, flow: str) -> Attrs:
    return run_attrs(
        run.record, run.directory, preset=run.preset.name, flow=flow, seed=seed, what=f"CaloFlow {flow} samples"
    )


def run_attrs(record: dict[str, Any], directory: Path, *, preset: str, flow: str, seed: int, what: str) -> Attrs:
    """A sampled file's provenance: the run, its preset and data, the chain, the seed; ``what`` opens the
    description, which ends with what the run was trained on (stand-in data, not Geant4, when it was)."""
    standin = bool(record["data"].get("standin"))
    trained_on = "stand-in data (not Geant4)" if standin else "the data in data_sha256"
    particle = record.get("particle") or dataset(str(record["dataset"])).particle  # iCaloFlow runs name the dataset
    return {
        "generator": "caloflow",
        "caloflow_version": __version__,
        "particle": str(particle),
        "flow": flow,
        "preset": preset,
        "run": str(directory),
        "seed": seed,
        "data_sha256": str(record["data"]["sha256"]),
        "trained_on_standin": int(standin),
        "description": f"{what}, trained on {trained_on}",
    }
