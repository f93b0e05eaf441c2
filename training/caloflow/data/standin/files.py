"""Stand-in files of any registered dataset: attributes and writing, in the dataset's official layout.

A file holds the dataset's incident energies (:meth:`caloflow.data.datasets.Dataset.file_energies`: Dataset 1's
multiset with each count times ``scale``, shuffled as the official files are; the others ``scale`` times the
official file size drawn from their continuous spectrum) from the seed's own shuffle stream, and the showers
of :func:`.generator.iter_standin_showers` for those energies and seed. Train and evaluation files (``_1`` and
``_2``) are two calls with different seeds, e.g. 1 and 2: every stream comes from ``SeedSequence(seed, ...)``,
so distinct seeds are independent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from caloflow.data.datasets import DatasetError
from caloflow.data.hdf5 import ShowerWriter, chunk_rows_for
from caloflow.data.standin.generator import (
    BLOCK_SIZE,
    GENERATOR_NAME,
    GENERATOR_VERSION,
    SHUFFLE_STREAM,
    StandinError,
    checked_dataset,
    checked_seed,
    iter_standin_showers,
    random_stream,
)

WRITE_CHUNK_BYTES = 256 << 20  # at most this much float64 generated and written at a time
GZIP_LEVEL = 1  # gzip at level 1: the write is half of the time for DS2/3 and ILD, level 4 saves ~10 %


def standin_attrs(name: str, seed: int, scale: float) -> dict[str, str | int | float]:
    """HDF5 file attributes of a stand-in file: generator, version, dataset, particle, seed, scale, description."""
    ds = checked_dataset(name)
    if not np.isfinite(scale) or scale <= 0:
        raise StandinError(f"scale must be a positive finite number, got {scale}")
    return {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "dataset": ds.name,
        "particle": ds.particle,
        "seed": checked_seed(seed),
        "scale": float(scale),
        "description": (
            f"{ds.title}: official format and geometry, {ds.particle} showers from the caloflow "
            "physics-parametrised shower generator: stand-in, not Geant4"
        ),
    }


def standin_energies(name: str, seed: int, scale: float) -> np.ndarray:
    """The incident energies (MeV) of a stand-in file, in file order."""
    stream = random_stream(seed, name, SHUFFLE_STREAM)
    try:
        return checked_dataset(name).file_energies(scale, stream)
    except DatasetError as exc:
        raise StandinError(str(exc)) from None


def write_standin_file(
    name: str,
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    scale: float = 1.0,
    progress: bool = True,
) -> Path:
    """Write a stand-in file of dataset ``name`` (or its short form) to ``out``; returns its path.

    The file appears only when complete (:class:`ShowerWriter` writes to a temporary name first). Showers are
    generated and written :func:`write_chunk_rows` at a time, so memory stays bounded for any dataset.
    """
    ds = checked_dataset(name)
    energies = standin_energies(name, seed, scale)
    attrs = standin_attrs(name, seed, scale)
    path = Path(out)
    rows = write_chunk_rows(ds.n_voxels)
    writer = ShowerWriter(
        path,
        ds.n_voxels,
        attrs=attrs,
        expected_rows=energies.size,
        layout=ds.layout,
        shower_shape=ds.shower_shape,
        dtype=ds.shower_dtype,
        energies_dtype=np.float64,
        gzip_level=GZIP_LEVEL,
    )
    with (
        writer,
        tqdm(total=energies.size, unit="shower", desc=f"{ds.name} stand-in", disable=not progress) as bar,
    ):
        chunks = iter_standin_showers(name, energies, seed, chunk_size=rows)
        for start, showers in zip(range(0, energies.size, rows), chunks, strict=True):
            writer.append(energies[start : start + len(showers), None], showers)
            bar.update(len(showers))
    return path


def write_chunk_rows(n_voxels: int) -> int:
    """Showers per generate-and-write step: one generator block, fewer if it exceeds :data:`WRITE_CHUNK_BYTES`.

    A step of one block writes each block as the generator returns it: a longer step would join blocks into a
    fresh array (ILD: 1 242 rows were 268 MB copied and page-faulted per step, ~10 % of the command's CPU time).
    """
    return chunk_rows_for(n_voxels, WRITE_CHUNK_BYTES, max_rows=BLOCK_SIZE)
