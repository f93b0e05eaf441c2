"""Showers from a served model version (the server's verified runtime), written to a file and timed.

What the demo evaluation and the quality report evaluate is what the server serves: the version's artifact
through ``caloflow_server.runtime``, at the given incident energies, with standard-normal float32 noise drawn
batch by batch from ``numpy.random.default_rng(seed)``. Only the model calls are timed (wall and CPU seconds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

__all__ = ["GenerationTiming", "write_served_showers"]


@dataclass(frozen=True)
class GenerationTiming:
    n: int
    wall_seconds: float
    cpu_seconds: float

    @property
    def showers_per_s(self) -> float | None:
        return self.n / self.wall_seconds if self.wall_seconds > 0 else None


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
    wall = cpu = 0.0
    starts = range(0, len(energies), batch)
    with ShowerWriter(path, manifest.n_voxels, attrs=attrs, expected_rows=len(energies)) as writer:
        for start in tqdm(starts, desc=f"{manifest.particle} {purpose}", disable=not progress):
            e = energies[start : start + batch, None].astype(np.float32)
            noise = rng.standard_normal((len(e), manifest.noise_dim), dtype=np.float32)
            wall_0, cpu_0 = time.perf_counter(), time.process_time()
            showers = loaded.run(e, noise)
            wall, cpu = wall + time.perf_counter() - wall_0, cpu + time.process_time() - cpu_0
            writer.append(e, showers.astype(np.float64))
    return GenerationTiming(len(energies), wall, cpu)
