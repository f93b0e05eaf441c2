"""The stand-in generators' core: seeded, chunk-size-independent streams of showers, one model per dataset.

Reproducibility: showers are generated in blocks of :data:`BLOCK_SIZE` consecutive showers (the last
block may be shorter). Block ``b`` of dataset ``d`` draws from its own random stream,
``Philox(SeedSequence(seed, spawn_key=(SHOWER_STREAM, *stream_key(d), b)))`` (Dataset 1: the particle's pid
alone, as before the registry had other datasets; the others add a tag of the dataset's name), so shower ``i``
depends only on (dataset, seed, the energies of its block, ``i``), never on ``chunk_size``: any chunking gives
byte-identical showers. SeedSequence hashes the seed together with the spawn key, so any two
distinct seeds (``s`` and ``s + 1`` included) give independent streams; the train (``_1``) and
evaluation (``_2``) files of a pair are simply written with two different seeds.

Byte-identity holds for one numpy version on one platform: numpy may change its distribution
algorithms or its float32 trigonometry between versions, which moves a few spots across bin edges.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator

import numpy as np
from numpy.typing import ArrayLike, NDArray

from caloflow.data.datasets import Dataset, DatasetError, dataset
from caloflow.data.standin.electron import ElectronShowerModel
from caloflow.data.standin.ild import ild_photon_showers
from caloflow.data.standin.photon import photon_showers
from caloflow.data.standin.pion import pion_showers
from caloflow.errors import CaloflowError

FloatArray = NDArray[np.float64]
BlockModel = Callable[[FloatArray, np.random.Generator], FloatArray]

GENERATOR_NAME = "caloflow-standin"
GENERATOR_VERSION = "1"  # bump whenever the showers for a given (dataset, energies, seed) change
BLOCK_SIZE = 512
SHOWER_STREAM = 0
SHUFFLE_STREAM = 1

# dataset name -> block model: (energies MeV (n,), generator) -> showers (n, n_voxels) MeV, flat (C order)
_MODELS: dict[str, BlockModel] = {
    "ds1-photon": photon_showers,
    "ds1-pion": pion_showers,
    **{
        name: ElectronShowerModel(dataset(name).cylindrical_geometry, dataset(name).threshold_mev)
        for name in ("ds2-electron", "ds3-electron")
    },
    "ild-photon": ild_photon_showers,
}


class StandinError(CaloflowError, ValueError):
    """Invalid arguments to the stand-in generator (a ``ValueError``; the CLI prints it as one line)."""


def random_stream(seed: int, name: str, purpose: int, index: int = 0) -> np.random.Generator:
    """An independent generator for (seed, dataset ``name`` or its short form, purpose, index)."""
    key = (purpose, *stream_key(checked_dataset(name)), index)
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(checked_seed(seed), spawn_key=key)))


def stream_key(ds: Dataset) -> tuple[int, ...]:
    """The dataset's part of every spawn key (Dataset 1: its pid, so DS1 files are what they always were)."""
    return (ds.pid,) if ds.is_ds1 else (ds.pid, zlib.crc32(ds.name.encode()))


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


def checked_dataset(name: str) -> Dataset:
    """The registry entry of ``name`` (a dataset or its short form); :class:`StandinError` otherwise."""
    try:
        return dataset(name)
    except DatasetError as exc:
        raise StandinError(str(exc)) from None


def _model(name: str) -> BlockModel:
    ds = checked_dataset(name)
    if ds.name not in _MODELS:
        raise StandinError(f"no stand-in generator for {ds.name} (have: {', '.join(_MODELS)})")
    return _MODELS[ds.name]


def iter_standin_showers(
    name: str, energies_mev: np.ndarray, seed: int, chunk_size: int = 10_000
) -> Iterator[np.ndarray]:
    """Stand-in showers (float64 MeV, (n, n_voxels) flat) for ``energies_mev``, one array per chunk, in order.

    ``name`` is a dataset or its short form (``photon`` / ``pion`` for Dataset 1). The result is byte-identical
    for the same (dataset, energies, seed) whatever ``chunk_size``.
    """
    model = _model(name)
    energies = _checked_energies(energies_mev)
    seed = checked_seed(seed)
    if chunk_size < 1:
        raise StandinError(f"chunk_size must be positive, got {chunk_size}")
    blocks = (
        model(energies[start : start + BLOCK_SIZE], random_stream(seed, name, SHOWER_STREAM, start // BLOCK_SIZE))
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
