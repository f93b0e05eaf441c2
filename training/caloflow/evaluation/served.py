"""Showers from a served model version (the server's verified runtime), written to a file and timed.

What the demo evaluation and the quality report evaluate is what the server serves: the version's artifact
through ``caloflow_server.runtime``, at the given incident energies, with standard-normal float32 noise drawn
batch by batch from ``numpy.random.default_rng(seed)``. Only the model calls are timed (wall and CPU seconds).

The file has the layout of the manifest's dataset (the registry's ``layout``: CaloChallenge, or ILD's
``30x30`` group with GeV energies). A model that serves a crop of a grid (manifest ``geometry.crop``, e.g.
L2LFlows on the ILD ECAL) is written in the full grid's layout with its crop embedded and zeros outside, and the
file attribute ``crop`` (``"x0:x1,z0:z1"``) says which cells are modelled; ``caloflow evaluate --crop`` then
compares it with a reference on that region only (:mod:`caloflow.evaluation.region`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from caloflow.data.datasets import dataset
from caloflow.data.grid_geometry import GridGeometry
from caloflow.evaluation.region import CROP_ATTR, CropRegion, crop_from_manifest

__all__ = ["GenerationTiming", "served_crop", "write_served_showers"]


@dataclass(frozen=True)
class GenerationTiming:
    n: int
    wall_seconds: float
    cpu_seconds: float

    @property
    def showers_per_s(self) -> float | None:
        return self.n / self.wall_seconds if self.wall_seconds > 0 else None


def served_crop(manifest: Any) -> CropRegion | None:
    """The crop region a served model covers (its manifest's ``geometry.crop``); None when it covers its grid."""
    grid = dataset(manifest.dataset).geometry
    if not isinstance(grid, GridGeometry):
        return None
    return crop_from_manifest(manifest.geometry, grid)


def write_served_showers(
    loaded: Any,
    energies: NDArray[np.float64],
    path: Path,
    *,
    seed: int,
    batch: int,
    purpose: str,
    progress: bool = False,
) -> GenerationTiming:
    """Write ``loaded``'s showers at ``energies`` (MeV) to ``path``; ``purpose`` ends the file's description."""
    from caloflow.data.hdf5 import ShowerWriter

    manifest = loaded.manifest
    rng = np.random.default_rng(seed)
    attrs = {
        "generator": "caloflow demo model",
        "model": f"{loaded.model}@{loaded.version}",
        "artifact_sha256": loaded.sha256,
        "seed": seed,
        "trained_on_standin": int(manifest.standin),
        "description": f"{manifest.description}; {purpose}",
    }
    ds, region = dataset(manifest.dataset), served_crop(manifest)
    layout: dict[str, Any] = {}
    if ds.layout != "calochallenge":
        layout = {"layout": ds.layout, "shower_shape": ds.shower_shape}
    if region is not None:
        attrs[CROP_ATTR] = region.text()
    wall = cpu = 0.0
    starts = range(0, len(energies), batch)
    n_voxels = manifest.n_voxels if region is None else ds.n_voxels
    with ShowerWriter(path, n_voxels, attrs=attrs, expected_rows=len(energies), **layout) as writer:
        for start in tqdm(starts, desc=f"{manifest.particle} {purpose}", disable=not progress):
            e = energies[start : start + batch, None].astype(np.float32)
            noise = rng.standard_normal((len(e), manifest.noise_dim), dtype=np.float32)
            wall_0, cpu_0 = time.perf_counter(), time.process_time()
            showers = loaded.run(e, noise)
            wall, cpu = wall + time.perf_counter() - wall_0, cpu + time.process_time() - cpu_0
            writer.append(e, showers.astype(np.float64) if region is None else region.embed(showers))
    return GenerationTiming(len(energies), wall, cpu)
