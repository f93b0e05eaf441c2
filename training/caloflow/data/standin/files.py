"""Stand-in Dataset 1 files: attributes and writing (through :class:`caloflow.data.hdf5.ShowerWriter`).

A file holds the Dataset 1 energy multiset (:func:`caloflow.data.energies.ds1_energy_multiset`, each
count times ``scale``) in a shuffled order (Dataset 1 files are shuffled), drawn from the seed's own
shuffle stream, and the showers of :func:`.generator.iter_standin_showers` for that order and seed.
Train and evaluation files (Dataset 1's ``_1`` and ``_2``) are two calls with different seeds, e.g.
1 and 2: every stream comes from ``SeedSequence(seed, ...)``, so distinct seeds are independent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from caloflow.data.energies import ds1_energy_multiset
from caloflow.data.geometry import geometry_for
from caloflow.data.hdf5 import ShowerWriter
from caloflow.data.standin.generator import (
    GENERATOR_NAME,
    GENERATOR_VERSION,
    SHUFFLE_STREAM,
    StandinError,
    checked_particle,
    checked_seed,
    iter_standin_showers,
    random_stream,
)

WRITE_CHUNK_SIZE = 10_000


def standin_attrs(particle: str, seed: int, scale: float) -> dict[str, str | int | float]:
    """HDF5 file attributes of a stand-in file: generator, version, particle, seed, scale, description."""
    checked_particle(particle)
    if not np.isfinite(scale) or scale <= 0:
        raise StandinError(f"scale must be a positive finite number, got {scale}")
    return {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "particle": particle,
        "seed": checked_seed(seed),
        "scale": float(scale),
        "description": (
            f"CaloChallenge Dataset 1 format and geometry, {particle} showers from the caloflow "
            "physics-parametrised shower generator: stand-in, not Geant4"
        ),
    }


def standin_energies(particle: str, seed: int, scale: float) -> np.ndarray:
    """The shuffled incident energies (MeV) of a stand-in file."""
    stream = random_stream(seed, particle, SHUFFLE_STREAM)
    try:
        energies = ds1_energy_multiset(particle, scale)
    except ValueError as exc:
        raise StandinError(str(exc)) from None
    return stream.permutation(energies)


def write_standin_file(
    particle: str,
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    scale: float = 1.0,
    progress: bool = True,
) -> Path:
    """Write a stand-in Dataset 1 file for ``particle`` to ``out``; returns its path.

    The file appears only when complete (:class:`ShowerWriter` writes to a temporary name first).
    """
    energies = standin_energies(particle, seed, scale)
    attrs = standin_attrs(particle, seed, scale)
    path = Path(out)
    with (
        ShowerWriter(path, geometry_for(particle).n_voxels, attrs=attrs, expected_rows=energies.size) as writer,
        tqdm(total=energies.size, unit="shower", desc=f"{particle} stand-in", disable=not progress) as bar,
    ):
        chunks = iter_standin_showers(particle, energies, seed, chunk_size=WRITE_CHUNK_SIZE)
        for start, showers in zip(range(0, energies.size, WRITE_CHUNK_SIZE), chunks, strict=True):
            writer.append(energies[start : start + len(showers), None], showers)
            bar.update(len(showers))
    return path
