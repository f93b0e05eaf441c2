"""Incident energies of CaloChallenge Dataset 1: 15 powers of two, 2^8 ... 2^22 MeV.

Counts per energy in one Dataset 1 file (``Dataset_creation.ipynb``): 10 000 for 2^8 ... 2^18 (pions:
9 800 at 2^18), 5 000 for 2^19, 3 000 for 2^20, 2 000 for 2^21, 1 000 for 2^22; 121 000 photon and
120 800 pion showers per file.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

DS1_ENERGIES_MEV: tuple[float, ...] = tuple(float(2**k) for k in range(8, 23))
DS1_ENERGY_MIN_MEV = DS1_ENERGIES_MEV[0]
DS1_ENERGY_MAX_MEV = DS1_ENERGIES_MEV[-1]


def _counts(particle: str) -> dict[float, int]:
    counts = {float(2**k): 10_000 for k in range(8, 19)}
    counts.update({float(2**19): 5_000, float(2**20): 3_000, float(2**21): 2_000, float(2**22): 1_000})
    if particle == "pion":
        counts[float(2**18)] = 9_800
    elif particle != "photon":
        raise ValueError(f"unknown particle {particle!r}; expected 'photon' or 'pion'")
    return counts


DS1_ENERGY_COUNTS: dict[str, dict[float, int]] = {p: _counts(p) for p in ("photon", "pion")}


def ds1_energy_multiset(particle: str, scale: float = 1.0) -> NDArray[np.float64]:
    """The Dataset 1 incident energies (MeV), sorted ascending, each count scaled by ``scale``.

    A scale below 1 makes small files with the same energy mix; every energy keeps at least one shower.
    """
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive finite number, got {scale}")
    counts = DS1_ENERGY_COUNTS[particle] if particle in DS1_ENERGY_COUNTS else _counts(particle)
    return np.concatenate([np.full(max(1, round(n * scale)), e, dtype=np.float64) for e, n in sorted(counts.items())])
