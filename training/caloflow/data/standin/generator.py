"""The stand-in generator's core: seeded, chunk-size-independent streams of Dataset 1 showers.

Reproducibility: showers are generated in blocks of :data:`BLOCK_SIZE` consecutive showers (the last
block may be shorter). Block ``b`` of particle ``p`` draws from its own random stream,
``Philox(SeedSequence(seed, spawn_key=(SHOWER_STREAM, pid(p), b)))``, so shower ``i`` depends only
on (particle, seed, the energies of its block, ``i``), never on ``chunk_size``: any chunking gives
byte-identical showers. SeedSequence hashes the seed together with the spawn key, so any two
distinct seeds (``s`` and ``s + 1`` included) give independent streams; the train (``_1``) and
evaluation (``_2``) files of a pair are simply written with two different seeds.

Byte-identity holds for one numpy version on one platform: numpy may change its distribution
algorithms or its float32 trigonometry between versions, which moves a few spots across bin edges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
from numpy.typing import ArrayLike, NDArray

from caloflow.data.geometry import geometry_for
from caloflow.data.standin.photon import photon_showers
from caloflow.data.standin.pion import pion_showers
from caloflow.errors import CaloflowError

FloatArray = NDArray[np.float64]
BlockModel = Callable[[FloatArray, np.random.Generator], FloatArray]

GENERATOR_NAME = "caloflow-standin"
GENERATOR_VERSION = "1"  # bump whenever the showers for a given (particle, energies, seed) change
BLOCK_SIZE = 512
SHOWER_STREAM = 0
SHUFFLE_STREAM = 1

_MODELS: dict[str, BlockModel] = {"photon": photon_showers, "pion": pion_showers}


class StandinError(CaloflowError, ValueError):
    """Invalid arguments to the stand-in generator (a ``ValueError``; the CLI prints it as one line)."""


def random_stream(seed: int, particle: str, purpose: int, index: int = 0) -> np.random.Generator:
    """An independent generator for (seed, particle, purpose, index)."""
    key = (purpose, checked_particle(particle), index)
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(checked_seed(seed), spawn_key=key)))


def checked_seed(seed: int) -> int:
    """``seed`` as an int if it is a non-negative integer; :class:`StandinError` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise StandinError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _checked_energies(energies_mev: ArrayLike) -> FloatArray:
    energies = np.asarray(energies_mev, dtype=np.float64)
    if energies.ndim == 2 and energies.shape[1] == 1:
        energies = energies[:, 0]
    if energies.ndim != 1:
        raise StandinError(f"energies_mev must have shape (n,) or (n, 1), got {energies.shape}")
    if not np.all(np.isfinite(energies) & (energies > 0)):
        raise StandinError("energies_mev must be finite and positive")
    return energies


def checked_particle(particle: str) -> int:
    """The PDG id of a known particle ("photon" or "pion"); :class:`StandinError` otherwise."""
    try:
        return geometry_for(particle).pid
    except ValueError as exc:
        raise StandinError(str(exc)) from None


def _model(particle: str) -> BlockModel:
    checked_particle(particle)
    return _MODELS[particle]


def iter_standin_showers(
    particle: str, energies_mev: np.ndarray, seed: int, chunk_size: int = 10_000
) -> Iterator[np.ndarray]:
    """Stand-in showers (float64 MeV, (n, n_voxels)) for ``energies_mev``, one array per chunk, in order.

    The result is byte-identical for the same (particle, energies, seed) whatever ``chunk_size``.
    """
    model = _model(particle)
    energies = _checked_energies(energies_mev)
    seed = checked_seed(seed)
    if chunk_size < 1:
        raise StandinError(f"chunk_size must be positive, got {chunk_size}")
    blocks = (
        model(energies[start : start + BLOCK_SIZE], random_stream(seed, particle, SHOWER_STREAM, start // BLOCK_SIZE))
        for start in range(0, energies.size, BLOCK_SIZE)
    )
    return _rechunked(blocks, chunk_size)


def _rechunked(blocks: Iterable[FloatArray], chunk_size: int) -> Iterator[FloatArray]:
    """Re-cut a stream of row blocks into chunks of ``chunk_size`` rows (the last may be shorter)."""
    parts: list[FloatArray] = []
    held = 0
    for block in blocks:
        start = 0
        while start < len(block):
            take = min(chunk_size - held, len(block) - start)
            parts.append(block[start : start + take])
            held, start = held + take, start + take
            if held == chunk_size:
                yield _joined(parts)
                parts, held = [], 0
    if parts:
        yield _joined(parts)


def _joined(parts: list[FloatArray]) -> FloatArray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
