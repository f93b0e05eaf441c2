"""Counter-based shower noise: Philox4x32-10 known answers, split invariance, distribution and accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from caloflow_server import draw_seed, shower_noise
from caloflow_server.noise import UINT64_MAX, NoiseRange, philox4x32, shower_noise_ranges, uniform_to_normal

# Random123 kat_vectors (Salmon et al. 2011): counter (4 words), key (2 words) -> output (4 words)
PHILOX4X32_10_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize(("counter", "key", "expected"), PHILOX4X32_10_KAT)
def test_philox_known_answers(counter: tuple[int, ...], key: tuple[int, int], expected: tuple[int, ...]) -> None:
    out = philox4x32(torch.tensor(counter, dtype=torch.int64), key)
    assert [hex(word) for word in out.tolist()] == [hex(word) for word in expected]


def test_philox_batched_equals_single() -> None:
    counters = torch.tensor([c for c, _, _ in PHILOX4X32_10_KAT[:2]], dtype=torch.int64)
    out = philox4x32(counters, (0, 0))
    assert out[0].tolist() == list(PHILOX4X32_10_KAT[0][2])
    assert out[1].tolist() == philox4x32(counters[1], (0, 0)).tolist()


@pytest.mark.parametrize("dim", [1, 3, 4, 13, 373])
def test_rows_do_not_depend_on_the_split(dim: int) -> None:
    whole = shower_noise(2**40 + 7, 0, 100, dim)
    parts = torch.cat([shower_noise(2**40 + 7, 0, 37, dim), shower_noise(2**40 + 7, 37, 63, dim)])
    singles = torch.cat([shower_noise(2**40 + 7, i, 1, dim) for i in range(100)])
    assert whole.shape == (100, dim) and whole.dtype == torch.float32
    assert torch.equal(whole, parts)
    assert torch.equal(whole, singles)


def test_dim_only_truncates() -> None:
    assert torch.equal(shower_noise(5, 10, 20, 13)[:, :8], shower_noise(5, 10, 20, 8))


def test_every_seed_and_index_bit_matters() -> None:
    base = shower_noise(12345, 0, 4, 8)
    assert not torch.equal(base, shower_noise(12346, 0, 4, 8))
    assert not torch.equal(base, shower_noise(12345 + 2**32, 0, 4, 8))  # high key word
    assert not torch.equal(shower_noise(1, 0, 1, 8), shower_noise(1, 2**32, 1, 8))  # high counter word
    assert not torch.equal(base[0], base[1])


def test_largest_seed_and_index() -> None:
    noise = shower_noise(UINT64_MAX, 2**63 - 2, 2, 5)
    assert torch.isfinite(noise).all()


def test_moments_are_standard_normal() -> None:
    z = shower_noise(99, 0, 20_000, 20).double()
    n = z.numel()
    assert abs(z.mean().item()) < 5 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / n)
    assert abs((z**3).mean().item()) < 5 * math.sqrt(15 / n)
    assert abs((z**4).mean().item() - 3) < 5 * math.sqrt(96 / n)
    correlation = torch.corrcoef(z.T)
    off_diagonal = correlation - torch.eye(20, dtype=torch.float64)
    assert off_diagonal.abs().max().item() < 5 / math.sqrt(20_000)


def test_box_muller_matches_libm_to_float32() -> None:
    """The polynomial log/sin/cos agree with the C library to float32 rounding."""
    u = (np.arange(1, 20_001, dtype=np.float64) - 0.5) / 20_000
    pairs = np.stack([u, np.roll(u, 7_777)], axis=-1).reshape(-1)
    ours = uniform_to_normal(torch.from_numpy(pairs)).numpy().reshape(-1, 2)
    radius = np.sqrt(-2 * np.log(pairs[0::2]))
    angle = 2 * np.pi * pairs[1::2]
    expected = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    extreme = uniform_to_normal(torch.tensor([0.5 * 2.0**-32, 0.25], dtype=torch.float64))
    assert extreme.tolist() == [0.0, pytest.approx(math.sqrt(66 * math.log(2)), rel=1e-15)]


@pytest.mark.parametrize(
    ("seed", "start", "count", "dim"), [(-1, 0, 1, 1), (2**64, 0, 1, 1), (0, -1, 1, 1), (0, 0, -1, 1), (0, 0, 1, 0)]
)
def test_bad_arguments(seed: int, start: int, count: int, dim: int) -> None:
    with pytest.raises(ValueError):
        shower_noise(seed, start, count, dim)


def test_draw_seed_is_uint64() -> None:
    seeds = {draw_seed() for _ in range(64)}
    assert len(seeds) == 64
    assert all(0 <= seed <= UINT64_MAX for seed in seeds)
    assert max(seeds) >= 2**32  # uses the whole 64 bits


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_same_bits() -> None:
    cpu = shower_noise(2**63 + 5, 1000, 512, 373)
    cuda = shower_noise(2**63 + 5, 1000, 512, 373, device="cuda").cpu()
    assert torch.equal(cpu, cuda)


def test_ranges_equal_one_call_per_range() -> None:
    """The batcher's one-pass noise for many requests is, bit for bit, each request's own noise, stacked - with
    keys that differ in either 32-bit half, indices past 2**32 and an empty range in between."""
    ranges = [
        NoiseRange(UINT64_MAX, 0, 1),
        NoiseRange(12_345, 2**40 + 7, 3),
        NoiseRange(7, 5, 0),
        NoiseRange(2**32 + 12_345, 2**63 - 2, 2),
        NoiseRange(0, 1_000, 5),
    ]
    stacked = shower_noise_ranges(ranges, 37)
    separate = torch.cat([shower_noise(*r, 37) for r in ranges])
    assert stacked.shape == (11, 37)
    assert torch.equal(stacked, separate)
    assert shower_noise_ranges([], 37).shape == (0, 37)


def test_ranges_check_every_range() -> None:
    with pytest.raises(ValueError, match="seed"):
        shower_noise_ranges([NoiseRange(1, 0, 1), NoiseRange(-1, 0, 1)], 8)


def test_cpu_slabs_give_the_bits_of_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide model's noise runs in row slabs on a CPU (cache-sized kernels): the same bits as one pass, for ranges
    of several keys cut across slab boundaries and a width that is not a multiple of 4."""
    import caloflow_server.noise as noise

    ranges = [NoiseRange(3, 0, 2), NoiseRange(2**40 + 9, 2**33, 5), NoiseRange(11, 7, 3)]
    dim = 30_001  # 7 501 Philox blocks per row
    monkeypatch.setattr(noise, "CPU_SLAB_ELEMENTS", 3 * 7_501)  # slabs of 3 rows: 4 slabs, the last of one row
    slabbed = shower_noise_ranges(ranges, dim)
    monkeypatch.setattr(noise, "CPU_SLAB_ELEMENTS", 2**40)
    one_pass = shower_noise_ranges(ranges, dim)
    assert slabbed.shape == (10, dim) and slabbed.is_contiguous()
    assert torch.equal(slabbed, one_pass)
    assert not torch.equal(slabbed[3], slabbed[4])
