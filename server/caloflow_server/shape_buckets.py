"""Verified call shapes ("buckets") of deterministic mode: smaller model calls whose rows carry the same bits.

Deterministic mode promises that a seeded shower's bits depend only on (seed, index, energy), never on what it
was batched with. The plain way to keep it is to run every model call with the same number of rows, padding the
last one; that makes one shower cost a full ``compute_showers``-row call. A backend's kernels depend on the
call's shape, not on the values: ONNX Runtime's CPU GEMM takes another code path below 4 rows (measured on the
photon demo model: rows of 1- and 2-row calls differ from the 64-row call in their last bits, rows of 4- to
32-row calls are identical). So the shape a call may use is decided by measurement on the machine that serves:

``verify_buckets`` runs random inputs (energies over the model's range, noise from the server's own generator)
once in the reference shape and once cut into calls of each candidate shape (every in-call row position, the
last call padded the way the batcher pads), and keeps only the shapes whose every output bit equals the
reference's. ``call_shapes`` then cuts a batch into full reference calls and one call of the smallest verified
shape that holds the rest. A shape that fails is never served, so a backend, a device or an artifact that is not
row-invariant falls back to the fixed shape by itself.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from caloflow_server.noise import shower_noise
from caloflow_server.runtime import Runtime

__all__ = ["BucketCheck", "call_shapes", "candidate_buckets", "run_in_shapes", "verify_buckets"]

logger = logging.getLogger(__name__)

_VERIFY_SEED = 0x5EED_B0C7
_MIN_VERIFY_ROWS = 64


@dataclass(frozen=True)
class BucketCheck:
    """The outcome of ``verify_buckets``: the shapes that may be served (the reference shape always) and those not."""

    reference: int
    verified: tuple[int, ...]
    refused: tuple[int, ...]


def candidate_buckets(reference: int, requested: Sequence[int] = ()) -> tuple[int, ...]:
    """The shapes to try below ``reference``: ``requested``, or the powers of two below it when none is given."""
    if requested:
        return tuple(sorted({size for size in requested if 1 <= size < reference}))
    return tuple(2**k for k in range(max(0, math.ceil(math.log2(reference)))) if 2**k < reference)


def call_shapes(n: int, shapes: Sequence[int]) -> list[int]:
    """Call shapes for ``n`` rows: full calls of the largest shape, the rest in the smallest shape that holds it."""
    largest = max(shapes)
    calls = [largest] * (n // largest)
    rest = n - largest * len(calls)
    if rest:
        calls.append(min(size for size in shapes if size >= rest))
    return calls


def run_in_shapes(runtime: Runtime, incident: np.ndarray, noise: np.ndarray, shapes: Sequence[int]) -> np.ndarray:
    """Run the rows in the calls ``call_shapes`` gives; a short call is padded by repeating its last row."""
    outputs = []
    start = 0
    for rows in call_shapes(incident.shape[0], shapes):
        part_incident, part_noise = incident[start : start + rows], noise[start : start + rows]
        n = part_incident.shape[0]
        if n < rows:
            part_incident = np.concatenate([part_incident, np.repeat(part_incident[-1:], rows - n, axis=0)])
            part_noise = np.concatenate([part_noise, np.repeat(part_noise[-1:], rows - n, axis=0)])
        outputs.append(runtime.run(part_incident, part_noise)[:n])
        start += n
    return np.concatenate(outputs)


def verify_buckets(
    runtime: Runtime, reference: int, candidates: Sequence[int], energy_range_mev: tuple[float, float]
) -> BucketCheck:
    """Keep the ``candidates`` whose calls give exactly the reference shape's bits on random inputs (see above)."""
    n = max(reference, _MIN_VERIFY_ROWS)
    rng = np.random.default_rng(_VERIFY_SEED)
    low, high = energy_range_mev
    incident = np.exp(rng.uniform(math.log(low), math.log(high), (n, 1))).astype(np.float32)
    noise = shower_noise(_VERIFY_SEED, 0, n, runtime.noise_dim).numpy()
    expected = run_in_shapes(runtime, incident, noise, [reference]).view(np.uint32)
    verified: list[int] = []
    refused: list[int] = []
    for size in candidates:
        rows = min(n, max(2 * size, _MIN_VERIFY_ROWS))  # every in-call position, twice for large shapes
        got = run_in_shapes(runtime, incident[:rows], noise[:rows], [size]).view(np.uint32)
        (verified if np.array_equal(got, expected[:rows]) else refused).append(size)
    check = BucketCheck(reference, (*verified, reference), tuple(refused))
    logger.info(
        "call shapes of %s on %s: serving %s rows (reference %d); refused %s (their rows' bits differ)",
        runtime.backend,
        runtime.device,
        list(check.verified),
        reference,
        list(check.refused) or "none",
    )
    return check
