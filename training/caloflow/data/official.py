"""The official CaloChallenge Dataset 1 files: what they are, how they are split, and how to verify them.

The files are on Zenodo (DOI 10.5281/zenodo.8099322): ``dataset_1_photons_{1,2}.hdf5`` and
``dataset_1_pions_{1,2}.hdf5``. They **cannot be downloaded from the machines this project is built and
tested on**; fetch them elsewhere and copy them over. By convention ``_1`` is the training file (first
70 % of its rows for training, the last 30 % for model selection, in file order) and ``_2`` is the
evaluation reference.

:func:`verify_official_file` checks a copy: shape, every value (non-negative, finite), the exact
multiset of incident energies, and the checksum where one is known. No checksums are recorded here
(they could not be fetched), so it computes sha256 and md5 for the user to compare with the listing on
the Zenodo record, which shows md5.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caloflow.data.datasets import ds1_dataset, ds1_particles
from caloflow.data.hdf5 import ShowerFileInfo, read_incident_energies, validate_shower_file
from caloflow.errors import ShowerFileError

__all__ = [
    "KNOWN_MD5",
    "KNOWN_SHA256",
    "OFFICIAL_FILES",
    "TRAIN_FRACTION",
    "ZENODO_DOI",
    "ZENODO_URL",
    "OfficialFile",
    "OfficialFileReport",
    "energy_count_problems",
    "file_digests",
    "official_file",
    "training_split",
    "verify_official_file",
]

ZENODO_DOI = ds1_dataset("photon").doi
ZENODO_URL = f"https://doi.org/{ZENODO_DOI}"
TRAIN_FRACTION = 0.7

# file name -> hex digest. Empty on purpose: the digests could not be fetched from the build machines.
KNOWN_SHA256: dict[str, str] = {}
KNOWN_MD5: dict[str, str] = {}

_HASH_BLOCK_BYTES = 4 << 20


@dataclass(frozen=True)
class OfficialFile:
    """One Zenodo file of Dataset 1."""

    name: str
    particle: str
    role: str  # "training" (first 70 % train, last 30 % validation) or "evaluation"

    @property
    def n_showers(self) -> int:
        return ds1_dataset(self.particle).showers_per_file

    @property
    def n_voxels(self) -> int:
        return ds1_dataset(self.particle).n_voxels


OFFICIAL_FILES: tuple[OfficialFile, ...] = tuple(
    OfficialFile(f.name, particle, f.role) for particle in ds1_particles() for f in ds1_dataset(particle).official_files
)


def official_file(name: str) -> OfficialFile | None:
    """The official file called ``name`` (a base name), or None."""
    return next((f for f in OFFICIAL_FILES if f.name == name), None)


def training_split(particle: str) -> tuple[int, int]:
    """(training rows, validation rows) of the ``_1`` file: the first 70 % and the rest, in file order."""
    n = ds1_dataset(particle).showers_per_file
    n_train = n * 7 // 10
    return n_train, n - n_train


@dataclass(frozen=True)
class OfficialFileReport:
    """The result of a successful verification."""

    info: ShowerFileInfo
    particle: str
    official: OfficialFile | None  # matched by file name
    sha256: str
    md5: str
    checksum_known: bool  # True when a recorded checksum exists (and matched)


def verify_official_file(
    path: str | os.PathLike[str],
    particle: str,
    *,
    chunk_rows: int = 10_000,
    on_rows: Callable[[int], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> OfficialFileReport:
    """Check a Dataset 1 file for ``particle``; raise ShowerFileError naming the first problem found."""
    geometry = ds1_dataset(particle).geometry
    on_chunk = None if on_rows is None else (lambda _e, x: on_rows(len(x)))
    info = validate_shower_file(path, geometry, chunk_rows=chunk_rows, on_chunk=on_chunk)
    problems = energy_count_problems(_energy_counts(path), dict(ds1_dataset(particle).energies.counts))
    if problems:
        raise ShowerFileError(f"{path}: not the Dataset 1 {particle} energy multiset: " + "; ".join(problems))
    sha256, md5 = file_digests(path, on_bytes=on_bytes)
    name = Path(path).name
    _check_known(path, name, sha256, KNOWN_SHA256, "sha256")
    _check_known(path, name, md5, KNOWN_MD5, "md5")
    return OfficialFileReport(
        info=info,
        particle=particle,
        official=official_file(name),
        sha256=sha256,
        md5=md5,
        checksum_known=name in KNOWN_SHA256 or name in KNOWN_MD5,
    )


def energy_count_problems(found: dict[float, int], expected: dict[float, int]) -> list[str]:
    """Human-readable differences between two {energy MeV: count} multisets (empty when equal)."""
    problems = [
        f"{energy:g} MeV: {found.get(energy, 0)} showers, expected {n}"
        for energy, n in sorted(expected.items())
        if found.get(energy, 0) != n
    ]
    strays = {e: n for e, n in found.items() if e not in expected}
    if strays:
        examples = ", ".join(f"{e:g}" for e in sorted(strays)[:3])
        problems.append(f"{sum(strays.values())} showers at energies outside Dataset 1 (e.g. {examples} MeV)")
    return problems


def _energy_counts(path: str | os.PathLike[str]) -> dict[float, int]:
    values, counts = np.unique(read_incident_energies(path), return_counts=True)
    return {float(v): int(c) for v, c in zip(values, counts, strict=True)}


def file_digests(path: str | os.PathLike[str], *, on_bytes: Callable[[int], None] | None = None) -> tuple[str, str]:
    """(sha256, md5) hex digests of a file, read in blocks."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK_BYTES):
            sha256.update(block)
            md5.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return sha256.hexdigest(), md5.hexdigest()


def _check_known(path: str | os.PathLike[str], name: str, digest: str, known: dict[str, str], kind: str) -> None:
    expected = known.get(name)
    if expected is not None and expected.lower() != digest:
        raise ShowerFileError(f"{path}: {kind} is {digest}, the official {name} has {expected}")
