"""ILD photon stand-in (stand-in, not Geant4): CPU time of generation and of the file write, and physics figures.

Usage: ``OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/standin_ild_speed.py [--showers N] [--seed S]
[--figures-only | --speed-only]``.

Speed: the first ``N`` energies of the seed's full-scale file are generated (CPU seconds, ``time.process_time``,
so a loaded machine does not inflate it), then written with the stand-in file writer (same dtype, gzip level,
chunking and generate-and-write step as ``caloflow data standin``); both are printed per shower and scaled to
100 000 showers, the issue's target being under 60 s for the whole command on one core.

Figures at 10, 50 and 100 GeV (300 showers each, the tests' sample): mean layer of the maximum, visible fraction
E_vis / E_inc, hits (cells above threshold) per shower, mean and spread of the CoG layer.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from caloflow.data.datasets import dataset
from caloflow.data.hdf5 import ShowerWriter
from caloflow.data.standin import iter_standin_showers
from caloflow.data.standin.files import GZIP_LEVEL, standin_energies, write_chunk_rows

NAME = "ild-photon"
FIGURE_ENERGIES_GEV = (10.0, 50.0, 100.0)


def speed(n_showers: int, seed: int) -> None:
    """Print CPU seconds of generation and of writing ``n_showers`` showers, per shower and per 100 000."""
    ds = dataset(NAME)
    energies = standin_energies(NAME, seed, 1.0)[:n_showers]
    rows = write_chunk_rows(ds.n_voxels)
    start = time.process_time()
    chunks = list(iter_standin_showers(NAME, energies, seed, chunk_size=rows))
    generation = time.process_time() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.process_time()
        with ShowerWriter(
            Path(tmp) / "ild.h5",
            ds.n_voxels,
            expected_rows=energies.size,
            layout=ds.layout,
            shower_shape=ds.shower_shape,
            dtype=ds.shower_dtype,
            energies_dtype=np.float64,
            gzip_level=GZIP_LEVEL,
        ) as writer:
            for first, showers in zip(range(0, energies.size, rows), chunks, strict=True):
                writer.append(energies[first : first + len(showers), None], showers)
        write = time.process_time() - start
        size_mb = (Path(tmp) / "ild.h5").stat().st_size / 1e6
    for what, seconds in (("generation", generation), ("write", write), ("total", generation + write)):
        per_ms = seconds / n_showers * 1e3
        print(f"{what:10s}: {seconds:7.2f} s CPU = {per_ms:.3f} ms/shower = {per_ms * 100:5.1f} s per 100 000")
    print(f"file: {size_mb:.1f} MB = {size_mb * 1e3 / n_showers:.1f} kB/shower")


def figures(seed: int) -> None:
    """Print the physics figures at 10, 50 and 100 GeV."""
    ds = dataset(NAME)
    for energy_gev in FIGURE_ENERGIES_GEV:
        x = np.concatenate(list(iter_standin_showers(NAME, np.full(300, energy_gev * 1e3), seed)))
        layers = x.reshape(len(x), ds.n_layers, -1).sum(axis=2)
        visible = layers.sum(axis=1)
        cog = (layers * np.arange(ds.n_layers)).sum(axis=1) / visible
        print(
            f"{energy_gev:5.0f} GeV: layer of max {layers.argmax(axis=1).mean():5.2f}, "
            f"E_vis/E_inc {visible.mean() / (energy_gev * 1e3):.4f} +- {visible.std() / visible.mean():.4f}, "
            f"hits {(x > 0).sum(axis=1).mean():7.1f}, CoG layer {cog.mean():5.2f} +- {cog.std():.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--showers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--figures-only", action="store_true")
    only.add_argument("--speed-only", action="store_true")
    args = parser.parse_args()
    if not args.figures_only:
        speed(args.showers, args.seed)
    if not args.speed_only:
        figures(args.seed)


if __name__ == "__main__":
    main()
