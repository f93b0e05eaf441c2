"""Read and check the two files of an evaluation: the generated showers and the reference.

Both are validated first (structure and every value, ``validate_shower_file``) and every problem is an
``EvaluationError`` that says which of the two files it is. The classifier test needs equally many
showers of each; like ``evaluate.py`` we require the same number, but rather than fail we use the first
``min(N_gen, N_ref)`` rows of each (files are shuffled, so that is a random subset) and record it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from caloflow.data.geometry import Geometry
from caloflow.data.hdf5 import AttrValue, open_shower_file, read_showers, validate_shower_file
from caloflow.errors import ShowerFileError
from caloflow.evaluation.errors import EvaluationError

__all__ = ["ShowerSample", "load_pair"]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class ShowerSample:
    """One file's showers in MeV, float64, *before* the evaluation's energy cut."""

    role: str  # "generated" or "reference"
    path: Path
    incident_mev: Array  # (N,)
    showers: Array  # (N, V)
    n_in_file: int
    attrs: dict[str, AttrValue]

    def __len__(self) -> int:
        return len(self.incident_mev)

    def cut(self, min_energy_mev: float) -> Array:
        """The showers with voxels below ``min_energy_mev`` set to 0, as ``evaluate.py`` does first."""
        return np.where(self.showers < min_energy_mev, 0.0, self.showers)


def load_pair(
    generated: str | Path, reference: str | Path, geometry: Geometry, *, max_showers: int | None = None
) -> tuple[ShowerSample, ShowerSample]:
    """Validate both files, then read the same number of rows from each (at most ``max_showers``)."""
    if max_showers is not None and max_showers < 1:
        raise EvaluationError(f"--max-showers must be positive, got {max_showers}")
    sizes = {
        role: _validated_size(role, Path(p), geometry)
        for role, p in (("generated", generated), ("reference", reference))
    }
    n = min(sizes.values()) if max_showers is None else min(*sizes.values(), max_showers)
    return _read("generated", Path(generated), geometry, n, sizes["generated"]), _read(
        "reference", Path(reference), geometry, n, sizes["reference"]
    )


def _validated_size(role: str, path: Path, geometry: Geometry) -> int:
    try:
        return validate_shower_file(path, geometry).n_showers
    except ShowerFileError as exc:
        raise EvaluationError(f"{role} file: {exc}") from exc


def _read(role: str, path: Path, geometry: Geometry, n: int, n_in_file: int) -> ShowerSample:
    try:
        energies, showers = read_showers(path, geometry, stop=n)
        attrs = open_shower_file(path, geometry).attrs
    except ShowerFileError as exc:
        raise EvaluationError(f"{role} file: {exc}") from exc
    return ShowerSample(
        role=role,
        path=path,
        incident_mev=np.asarray(energies[:, 0], dtype=np.float64),
        showers=np.asarray(showers, dtype=np.float64),
        n_in_file=n_in_file,
        attrs=attrs,
    )
