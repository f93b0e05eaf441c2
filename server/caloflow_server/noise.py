"""Counter-based noise: the latent of shower ``i`` of a seeded request is a pure function of (seed, i, dim).

Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11; the
Random123 reference) turns ``counter = (i mod 2**32, i // 2**32, block, stream)`` and ``key = (seed mod
2**32, seed // 2**32)`` into four 32-bit words. Block ``j`` of shower ``i`` gives noise columns
``4j .. 4j+3``: each pair of words becomes two uniforms in (0, 1) and, through Box-Muller, two standard
normals. So a shower's noise depends on nothing but (seed, index, dim): not on how a request is split into
chunks or batches, not on the device.

Everything is computed with operations that IEEE 754 rounds exactly and that torch runs as separate
kernels on every device: 64-bit integer arithmetic for Philox (a 32x32-bit product fits the low 64 bits
of an int64 exactly, even when it wraps the sign), then float64 ``+ - * / sqrt floor`` for the
uniform-to-normal transform, whose ``log``, ``sin`` and ``cos`` are evaluated by fixed polynomials here
rather than by the platform's libm (vectorised and scalar CPU paths, and CUDA, round those differently).
The float64 result is rounded once to float32. Hence the same bits on CPU and CUDA and for any split.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "NOISE_STREAM",
    "UINT64_MAX",
    "NoiseRange",
    "draw_seed",
    "philox4x32",
    "shower_noise",
    "shower_noise_ranges",
    "uniform_to_normal",
]

UINT64_MAX = 2**64 - 1
NOISE_STREAM = 0
"""The fourth counter word of the shower noise; other values are free for other per-shower draws."""
CPU_SLAB_ELEMENTS = 1 << 15
"""Most Philox blocks (4 columns each) per pass of the kernels on a CPU: a 256 KiB int64 operand. Measured on a
batch of 64 DS3 showers (80 145 columns), one thread, two rounds: 425 / 570 ms in one pass, 281 / 284 ms in
slabs of 2**15 blocks (2**16: 275 / 323, 2**17: 293 / 303); a DS2 batch 68 / 69 -> 48 / 64 ms; DS1 unchanged
(one slab). Same bits: every kernel is elementwise."""

_MASK32 = 0xFFFFFFFF
_PHILOX_M0 = 0xD2511F53
_PHILOX_M1 = 0xCD9E8D57
_PHILOX_W0 = 0x9E3779B9
_PHILOX_W1 = 0xBB67AE85
_PHILOX_ROUNDS = 10
_TWO_POW_M32 = 2.0**-32
_LN2 = 0.6931471805599453
_SQRT_HALF = 0.7071067811865476
_HALF_PI = 1.5707963267948966
# The series below are truncated where the first omitted term is < 1e-13 relative, far below the float32
# resolution (6e-8) of the result. log(m) = 2 atanh(s) = 2 sum s^(2k+1) / (2k+1), s = (m - 1) / (m + 1),
# |s| <= 0.172 for m in [sqrt(1/2), sqrt(2)).
_ATANH_COEFFS = tuple(2.0 / (2 * k + 1) for k in range(9))
# Taylor series of sin(x) / x and cos(x) in x^2, |x| <= pi/4.
_SIN_COEFFS = tuple((-1.0) ** k / math.factorial(2 * k + 1) for k in range(8))
_COS_COEFFS = tuple((-1.0) ** k / math.factorial(2 * k) for k in range(9))


def draw_seed() -> int:
    """A fresh uint64 seed from the operating system's CSPRNG."""
    return secrets.randbits(64)


def philox4x32(counter: Tensor, key: tuple[int, int], rounds: int = _PHILOX_ROUNDS) -> Tensor:
    """Philox4x32-R of ``counter`` (..., 4) int64 words in [0, 2**32) under ``key``; returns (..., 4) int64."""
    if counter.dtype != torch.int64 or counter.shape[-1] != 4:
        raise ValueError(f"counter must be int64 of shape (..., 4), got {counter.dtype} {tuple(counter.shape)}")
    words = tuple(word.contiguous() for word in counter.unbind(-1))
    return torch.stack(_philox_words(words, key, rounds), dim=-1)


Key = tuple[int, int] | tuple[Tensor, Tensor]


def _philox_words(words: tuple[Tensor, ...], key: Key, rounds: int) -> tuple[Tensor, ...]:
    """Philox on four same-shaped int64 word tensors (contiguous: the loop is 120 elementwise kernels).

    ``key``: two ints, or two int64 tensors that broadcast against the words (one key per row)."""
    c0, c1, c2, c3 = words
    k0, k1 = key[0] & _MASK32, key[1] & _MASK32
    for round_index in range(rounds):
        if round_index:
            k0, k1 = (k0 + _PHILOX_W0) & _MASK32, (k1 + _PHILOX_W1) & _MASK32
        hi0, lo0 = _mulhilo(_PHILOX_M0, c0)
        hi1, lo1 = _mulhilo(_PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1.bitwise_xor_(c1).bitwise_xor_(k0), lo1, hi0.bitwise_xor_(c3).bitwise_xor_(k1), lo0
    return c0, c1, c2, c3


def _mulhilo(multiplier: int, word: Tensor) -> tuple[Tensor, Tensor]:
    """High and low 32-bit halves of ``multiplier * word``; the int64 product wraps but its low 64 bits are exact."""
    product = word * multiplier
    return (product >> 32) & _MASK32, product & _MASK32


class NoiseRange(NamedTuple):
    """Showers ``start_index .. start_index + n - 1`` of the request seeded ``seed``."""

    seed: int
    start_index: int
    n: int


def shower_noise(seed: int, start_index: int, count: int, dim: int, device: str | torch.device = "cpu") -> Tensor:
    """Standard-normal noise ``(count, dim)`` float32 of showers ``start_index .. start_index + count - 1``."""
    return shower_noise_ranges([NoiseRange(seed, start_index, count)], dim, device)


def shower_noise_ranges(ranges: Sequence[NoiseRange], dim: int, device: str | torch.device = "cpu") -> Tensor:
    """The noise of several ranges, stacked: ``torch.cat([shower_noise(*r, dim) for r in ranges])``, bit for bit,
    in one pass of ~200 elementwise kernels (one Philox key per row) instead of one pass per range - a batch
    of many one-shower requests costs about what one request does. On a CPU the rows go through those kernels
    in slabs of at most :data:`CPU_SLAB_ELEMENTS` Philox blocks, so that each kernel's operands stay in cache."""
    for seed, start_index, n in ranges:
        _check_arguments(seed, start_index, n, dim)
    n_blocks = (dim + 3) // 4
    index = torch.from_numpy(_row_indices(ranges)).to(device)[:, None]
    seeds = [r.seed for r in ranges]
    counts = torch.tensor([r.n for r in ranges], dtype=torch.int64)
    key0 = torch.tensor([s & _MASK32 for s in seeds], dtype=torch.int64).repeat_interleave(counts).to(device)
    key1 = torch.tensor([s >> 32 for s in seeds], dtype=torch.int64).repeat_interleave(counts).to(device)
    rows = index.shape[0]
    step = rows if index.device.type != "cpu" else max(1, CPU_SLAB_ELEMENTS // n_blocks)
    out = torch.empty((rows, n_blocks * 4), dtype=torch.float32, device=device)
    for start in range(0, rows, step):
        part = slice(start, start + step)
        out[part] = _normals(index[part], (key0[part, None], key1[part, None]), n_blocks)
    return out[:, :dim].contiguous() if dim < n_blocks * 4 else out


def _normals(index: Tensor, key: tuple[Tensor, Tensor], n_blocks: int) -> Tensor:
    """(rows, 4 n_blocks) float32 normals of the showers ``index`` (rows, 1) under one key per row."""
    block = torch.arange(n_blocks, dtype=torch.int64, device=index.device)[None, :]
    shape = (index.shape[0], n_blocks)
    counter = (
        (index & _MASK32).expand(shape).contiguous(),
        (index >> 32).expand(shape).contiguous(),
        block.expand(shape).contiguous(),
        torch.full(shape, NOISE_STREAM, dtype=torch.int64, device=index.device),
    )
    w0, w1, w2, w3 = _philox_words(counter, key, _PHILOX_ROUNDS)
    z0, z1 = _box_muller(_uniform(w0), _uniform(w1))
    z2, z3 = _box_muller(_uniform(w2), _uniform(w3))
    return torch.stack((z0, z1, z2, z3), dim=-1).to(torch.float32).reshape(shape[0], n_blocks * 4)


def _row_indices(ranges: Sequence[NoiseRange]) -> np.ndarray:
    """The shower index of every row: ``start_index + k`` for ``k < n``, range after range (int64)."""
    if not ranges:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(r.n, dtype=np.int64) + np.int64(r.start_index) for r in ranges])


def _check_arguments(seed: int, start_index: int, count: int, dim: int) -> None:
    if not 0 <= seed <= UINT64_MAX:
        raise ValueError(f"seed must be a uint64 (0 .. 2**64 - 1), got {seed}")
    if start_index < 0 or count < 0 or start_index + count > 2**63:
        raise ValueError(f"shower indices must lie in [0, 2**63), got start_index={start_index} count={count}")
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")


def _uniform(words: Tensor) -> Tensor:
    """32-bit words -> float64 uniforms ``(w + 0.5) / 2**32``, exactly, in (0, 1): never 0, so log is finite."""
    return (words.to(torch.float64) + 0.5) * _TWO_POW_M32


def uniform_to_normal(uniforms: Tensor) -> Tensor:
    """Box-Muller on consecutive pairs of the last dimension (even length) of float64 uniforms in (0, 1)."""
    z0, z1 = _box_muller(uniforms[..., 0::2].contiguous(), uniforms[..., 1::2].contiguous())
    return torch.stack((z0, z1), dim=-1).flatten(-2)


def _box_muller(u1: Tensor, u2: Tensor) -> tuple[Tensor, Tensor]:
    """Two independent standard normals from two float64 uniforms in (0, 1)."""
    radius = _log(u1).mul_(-2.0).sqrt_()
    cos, sin = _cos_sin_turns(u2)
    return cos.mul_(radius), sin.mul_(radius)


def _log(x: Tensor) -> Tensor:
    """Natural log of positive float64 ``x`` from frexp and an atanh series: the same bits on every device."""
    mantissa, exponent = torch.frexp(x)
    low = mantissa < _SQRT_HALF
    mantissa = torch.where(low, mantissa * 2.0, mantissa)
    exponent = (exponent - low.to(exponent.dtype)).to(torch.float64)
    s = (mantissa - 1.0) / (mantissa + 1.0)
    return exponent * _LN2 + s * _horner(s * s, _ATANH_COEFFS)


def _cos_sin_turns(turns: Tensor) -> tuple[Tensor, Tensor]:
    """cos and sin of ``2 pi turns`` for float64 ``turns`` in [0, 1], reduced exactly to +-1/8 turn."""
    quarters = turns * 4.0
    quadrant = torch.floor(quarters + 0.5)
    angle = (quarters - quadrant).mul_(_HALF_PI)
    square = angle * angle
    sin = _horner(square, _SIN_COEFFS).mul_(angle)
    cos = _horner(square, _COS_COEFFS)
    # quadrant q (mod 4): (cos, sin) of the full angle is (c, s), (-s, c), (-c, -s), (s, -c)
    q = quadrant.to(torch.int64) & 3
    odd = (q & 1).bool()
    cos_out = torch.where(odd, sin, cos)
    sin_out = torch.where(odd, cos, sin)
    cos_out = torch.where(((q + 1) & 2).bool(), -cos_out, cos_out)
    sin_out = torch.where((q & 2).bool(), -sin_out, sin_out)
    return cos_out, sin_out


def _horner(x: Tensor, coeffs: tuple[float, ...]) -> Tensor:
    """``sum coeffs[k] x**k``, evaluated as separate multiply and add kernels (never fused)."""
    result = torch.full_like(x, coeffs[-1])
    for coeff in reversed(coeffs[:-1]):
        result.mul_(x).add_(coeff)
    return result
