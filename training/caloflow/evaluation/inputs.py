"""Read and check the two files of an evaluation, chunk by chunk: the generated showers and the reference.

Both are validated first against the dataset (``validate_dataset_file``: structure, the dataset's layout and
shape, every value, energies inside the spectrum) and every problem is an ``EvaluationError`` that says which
of the two files it is. The classifier test needs equally many showers of each; like ``evaluate.py`` we
require the same number, but rather than fail we use the first ``min(N_gen, N_ref)`` rows of each (files are
shuffled, so that is a random subset) and record it. No file is ever held whole: the validation pass keeps
the incident energies and the largest voxel of the rows used, and :func:`iter_used` yields the used rows
again in chunks of about ``CHUNK_BYTES``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from caloflow.data.dataset_files import check_dataset_file, validate_dataset_file
from caloflow.data.datasets import Dataset
from caloflow.data.hdf5 import AttrValue, FloatArray, iter_showers, open_shower_file
from caloflow.errors import ShowerFileError
from caloflow.evaluation.errors import EvaluationError
from caloflow.evaluation.region import CropRegion, crop_layout, stored_crop

__all__ = ["CHUNK_BYTES", "ShowerSample", "chunk_rows", "iter_used", "load_pair"]

Array = NDArray[np.float64]
CHUNK_BYTES = 128 * 2**20  # float64 bytes of one chunk of showers


@dataclass(frozen=True)
class ShowerSample:
    """What the evaluation keeps of one file: its incident energies (MeV) of the rows used, never the showers."""

    role: str  # "generated" or "reference"
    path: Path
    dataset: Dataset
    incident_mev: Array  # (N,) the rows used
    n_in_file: int
    attrs: dict[str, AttrValue]
    max_voxel_mev: float  # the largest voxel of the rows used
    part: CropRegion | None = None  # the file holds only this crop's cells (a client's file): embedded on reading

    def __len__(self) -> int:
        return len(self.incident_mev)


def chunk_rows(ds: Dataset) -> int:
    """Rows per chunk: about ``CHUNK_BYTES`` of float64 showers (1 000 rows of Dataset 3, 10 000 of Dataset 1)."""
    return int(min(10_000, max(1, CHUNK_BYTES // (8 * ds.n_voxels))))


def load_pair(
    generated: str | Path,
    reference: str | Path,
    ds: Dataset,
    *,
    max_showers: int | None = None,
    crop: CropRegion | None = None,
) -> tuple[ShowerSample, ShowerSample]:
    """Validate both files in one chunked pass each; use the same number of rows from each (at most ``max_showers``).

    A generated file holding only a crop's cells (:func:`~caloflow.evaluation.region.stored_crop`; ``crop`` is
    ``--crop``) is read with the crop embedded in the grid (``ShowerSample.part``).
    """
    if max_showers is not None and max_showers < 1:
        raise EvaluationError(f"--max-showers must be positive, got {max_showers}")
    paths = {"generated": Path(generated), "reference": Path(reference)}
    parts = {"generated": stored_crop(paths["generated"], ds, crop), "reference": None}
    sizes = {role: _checked_size(role, path, ds, parts[role]) for role, path in paths.items()}
    n = min(sizes.values()) if max_showers is None else min(*sizes.values(), max_showers)
    generated_sample, reference_sample = (_validated(role, path, ds, n, parts[role]) for role, path in paths.items())
    return generated_sample, reference_sample


def _checked_size(role: str, path: Path, ds: Dataset, part: CropRegion | None) -> int:
    try:
        if part is not None:
            return open_shower_file(path, None, layout=crop_layout(ds, part)).n_showers
        return check_dataset_file(path, ds).n_showers
    except (ShowerFileError, OSError) as exc:
        raise EvaluationError(f"{role} file: {exc}") from exc


def _validated(role: str, path: Path, ds: Dataset, n: int, part: CropRegion | None) -> ShowerSample:
    energies: list[Array] = []
    largest = [0.0]

    def keep(chunk_energies: FloatArray, showers: FloatArray) -> None:
        room = n - sum(len(e) for e in energies)
        if room > 0:
            energies.append(np.asarray(chunk_energies[:room, 0], dtype=np.float64))
            largest[0] = max(largest[0], float(np.max(showers[:room], initial=0.0)))

    try:
        layout = None if part is None else crop_layout(ds, part)
        info = validate_dataset_file(path, ds, chunk_rows=chunk_rows(ds), on_chunk=keep, part=layout)
    except (ShowerFileError, OSError) as exc:
        raise EvaluationError(f"{role} file: {exc}") from exc
    return ShowerSample(role, path, ds, np.concatenate(energies), info.n_showers, info.attrs, largest[0], part)


def iter_used(sample: ShowerSample) -> Iterator[tuple[Array, Array]]:
    """(incident energies (n,) MeV, showers (n, V) MeV float64, uncut) of the rows used, chunk by chunk."""
    done, ds, part = 0, sample.dataset, sample.part
    geometry, layout = (ds.geometry, ds.layout) if part is None else (None, crop_layout(ds, part))
    for energies, showers in iter_showers(sample.path, geometry, chunk_rows=chunk_rows(ds), layout=layout):
        take = min(len(showers), len(sample) - done)
        if take <= 0:
            return
        full = np.asarray(showers[:take], dtype=np.float64) if part is None else part.embed(showers[:take])
        yield np.asarray(energies[:take, 0], dtype=np.float64), full
        done += take
