"""A dataset's files: structure and value checks that know the registry (which dataset a file fits, energies).

:func:`check_dataset_file` refuses a file of another dataset naming the dataset it does fit, and
:func:`validate_dataset_file` reads the file chunk by chunk (a Dataset 3 file, 8 GB in float32, is never held
whole) checking every value: finite, non-negative voxels, positive incident energies inside the dataset's
spectrum (continuous spectra; Dataset 1's exact multiset is checked by ``caloflow data real --verify``), and,
for a layout that stores GeV, energies that look like MeV are refused with that sentence. Errors name the file,
the row and the field.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from caloflow.data.datasets import DATASETS, Dataset
from caloflow.data.hdf5 import (
    FileLayoutSpec,
    FloatArray,
    ShowerFileInfo,
    file_layout,
    layout_spec,
    open_shower_file,
    validate_shower_file,
)
from caloflow.errors import ShowerFileError

__all__ = ["check_dataset_file", "datasets_fitting", "validate_dataset_file"]


def datasets_fitting(path: str | os.PathLike[str]) -> tuple[ShowerFileInfo, list[Dataset]]:
    """The file's structure and the registry's datasets whose layout and shower shape it has."""
    layout = file_layout(path)
    if layout is None:
        raise ShowerFileError(
            f"{path}: holds neither the CaloChallenge arrays (incident_energies, showers) nor the ILD ones "
            "(30x30/energy, 30x30/layers)"
        )
    info = open_shower_file(path, layout=layout)
    fits = [d for d in DATASETS.values() if d.layout == layout and d.shower_shape == info.shower_shape]
    return info, fits


def check_dataset_file(path: str | os.PathLike[str], ds: Dataset) -> ShowerFileInfo:
    """The file's structure if it is a ``ds`` file; ShowerFileError naming the dataset it fits otherwise."""
    info, fits = datasets_fitting(path)
    if ds in fits:
        return info
    shape = "x".join(str(d) for d in info.shower_shape)
    what = f"{info.layout} layout, showers of {shape} voxels"
    hint = f"it fits {' / '.join(d.name for d in fits)}" if fits else "no known dataset has that shape"
    raise ShowerFileError(f"{path}: not a {ds.name} file ({what}; {ds.name} has {ds.n_voxels}): {hint}")


def validate_dataset_file(
    path: str | os.PathLike[str],
    ds: Dataset,
    *,
    chunk_rows: int = 10_000,
    on_chunk: Callable[[FloatArray, FloatArray], None] | None = None,
    part: FileLayoutSpec | None = None,
) -> ShowerFileInfo:
    """Check a ``ds`` file's structure and every value in one chunked pass; ``on_chunk`` sees each chunk.

    ``part``: the file holds only part of the dataset's grid in this layout (a crop, :func:`lateral_layout`); its
    values and energies are checked, its shape is the caller's to check.
    """
    if part is None:
        check_dataset_file(path, ds)
    geometry, layout = (ds.geometry, ds.layout) if part is None else (None, part)
    checked = _energy_checked(path, ds, on_chunk)
    return validate_shower_file(path, geometry, chunk_rows=chunk_rows, on_chunk=checked, layout=layout)


def _energy_checked(
    path: str | os.PathLike[str], ds: Dataset, on_chunk: Callable[[FloatArray, FloatArray], None] | None
) -> Callable[[FloatArray, FloatArray], None]:
    """``on_chunk`` after the check of each chunk's incident energies against the dataset's spectrum."""
    start = 0

    def check(energies: FloatArray, showers: FloatArray) -> None:
        nonlocal start
        _check_energies(path, ds, start, energies[:, 0])
        start += len(showers)
        if on_chunk is not None:
            on_chunk(energies, showers)

    return check


def _check_energies(path: str | os.PathLike[str], ds: Dataset, start: int, energies_mev: FloatArray) -> None:
    if ds.energies.kind == "discrete":
        return
    spec = layout_spec(ds.layout)
    outside = ~ds.energies.contains(np.asarray(energies_mev, dtype=np.float64))
    if not outside.any():
        return
    row = int(np.argmax(outside))
    stored = float(energies_mev[row]) / spec.energy_unit_mev
    field = f"{spec.energies_path} row {start + row}"
    if spec.energy_unit_mev != 1.0 and ds.energies.contains(np.asarray([stored]))[0]:
        raise ShowerFileError(
            f"{path}: {field} is {stored:g}: the energies look like MeV instead of GeV "
            f"(the {ds.name} layout stores incident energies in {spec.energy_unit})"
        )
    raise ShowerFileError(
        f"{path}: {field} is {stored:g} {spec.energy_unit}, outside the {ds.name} spectrum ({ds.energies.describe()})"
    )
