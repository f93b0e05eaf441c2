"""Verified call shapes and the latency lane: a one-shower request is cheap and its bits never change with load,
with the bucket its call used, or with the request it came in (a real tiny ONNX artifact under ONNX Runtime)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from test_server_support import ENERGY_RANGE_MEV, RecordingRuntime, make_repository

from caloflow_server import Batcher, LoadedModel, constant_energies, listed_energies, load_runtime
from caloflow_server.shape_buckets import call_shapes, candidate_buckets, run_in_shapes, verify_buckets

REFERENCE = 64
SEED = 2**63 + 12345


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    torch.set_num_threads(1)
    repository = make_repository(tmp_path_factory.mktemp("buckets"))
    return load_runtime(repository, "tiny_photon", backend="onnx", intra_op_threads=1)


def test_call_shapes_cut_full_calls_then_the_smallest_bucket_that_holds_the_rest() -> None:
    assert candidate_buckets(64) == (1, 2, 4, 8, 16, 32)
    assert candidate_buckets(64, [128, 8, 64, 3]) == (3, 8)
    shapes = (4, 8, 64)
    assert call_shapes(1, shapes) == [4]
    assert call_shapes(5, shapes) == [8]
    assert call_shapes(9, shapes) == [64]
    assert call_shapes(130, shapes) == [64, 64, 4]
    assert call_shapes(128, shapes) == [64, 64]


def test_verification_refuses_every_shape_whose_rows_differ(model: LoadedModel) -> None:
    skewed = RecordingRuntime(model.runtime, skew_below=8)
    check = verify_buckets(skewed, REFERENCE, candidate_buckets(REFERENCE), ENERGY_RANGE_MEV)
    assert check.verified == (16, 32, 64) and check.refused == (1, 2, 4, 8)
    assert set(skewed.calls) == {1, 2, 4, 8, 16, 32, 64}  # every candidate was run, not assumed


def test_verified_shapes_give_the_reference_bits(model: LoadedModel) -> None:
    check = verify_buckets(model.runtime, REFERENCE, candidate_buckets(REFERENCE), ENERGY_RANGE_MEV)
    assert REFERENCE in check.verified
    rng = np.random.default_rng(7)
    incident = rng.uniform(300.0, 3e6, (REFERENCE, 1)).astype(np.float32)
    noise = rng.standard_normal((REFERENCE, model.runtime.noise_dim)).astype(np.float32)
    expected = run_in_shapes(model.runtime, incident, noise, [REFERENCE])
    for size in check.verified:
        got = run_in_shapes(model.runtime, incident, noise, [size])
        np.testing.assert_array_equal(got, expected, err_msg=str(size))


async def _collect(batcher: Batcher, energies: list[float], seed: int, start_index: int = 0) -> np.ndarray:
    async with batcher.stream(listed_energies(energies), len(energies), seed, start_index=start_index) as stream:
        return np.concatenate([chunk.showers async for chunk in stream])


async def _one_shower_cases(batcher: Batcher, energies: np.ndarray) -> dict[str, np.ndarray]:
    """Shower 37 of ``SEED``: alone when idle, alone while a stream and 20 one-shower clients run, and within a
    request of 50 showers."""
    index = 37
    cases = {"alone, idle": await _collect(batcher, [float(energies[index])], SEED, index)}
    async with batcher.stream(constant_energies(5e4), 5_000, seed=1) as big:
        chunks = aiter(big)
        await anext(chunks)  # the stream is running
        others = [_collect(batcher, [1e3 * (k + 1)], seed=k) for k in range(20)]
        probe = _collect(batcher, [float(energies[index])], SEED, index)
        *_, cases["alone, under load"] = await asyncio.gather(*others, probe)
    whole = await _collect(batcher, [float(e) for e in energies], SEED)
    cases["in a 50-shower request"] = whole[index : index + 1]
    return cases


def test_one_shower_bits_do_not_change_with_load_or_bucket(model: LoadedModel) -> None:
    skewed = RecordingRuntime(model.runtime, skew_below=2)  # like ONNX Runtime here, made certain
    check = verify_buckets(skewed, REFERENCE, candidate_buckets(REFERENCE), ENERGY_RANGE_MEV)
    energies = np.geomspace(300.0, 3e6, 50).astype(np.float32)
    expected = run_in_shapes(model.runtime, energies[37:38].reshape(-1, 1), _noise(model, 37), [REFERENCE])

    async def main() -> dict[str, np.ndarray]:
        batcher = Batcher(
            skewed,
            max_batch_showers=REFERENCE,
            deterministic=True,
            compute_buckets=check.verified,
            latency_lane_showers=8,
            max_concurrent_batches=2,
        )
        try:
            return await _one_shower_cases(batcher, energies)
        finally:
            await batcher.aclose()

    skewed.calls.clear()
    cases = asyncio.run(main())
    for name, showers in cases.items():
        np.testing.assert_array_equal(showers, expected, err_msg=name)
    assert 4 in skewed.calls and not {1, 2} & set(skewed.calls)  # the lane used the small verified bucket


def _noise(model: LoadedModel, index: int) -> np.ndarray:
    from caloflow_server import shower_noise

    return shower_noise(SEED, index, 1, model.runtime.noise_dim).numpy()


def test_lane_request_is_served_while_the_stream_workers_are_busy(model: LoadedModel) -> None:
    """One stream worker, busy with a long stream: a one-shower request still finishes (its own lane), and
    with the lane off it is batched with the stream instead."""

    async def calls_with_stream(lane: int) -> tuple[list[int], int]:
        recording = RecordingRuntime(model.runtime)
        batcher = Batcher(
            recording,
            max_batch_showers=REFERENCE,
            deterministic=True,
            compute_buckets=(4, 8, 16, 32),
            latency_lane_showers=lane,
        )
        try:
            async with batcher.stream(constant_energies(5e4), 20_000, seed=1) as big:
                await anext(aiter(big))
                recording.calls.clear()
                alone = await _collect(batcher, [1e4], seed=3)
                return list(recording.calls), alone.shape[0]
        finally:
            await batcher.aclose()

    with_lane, n = asyncio.run(calls_with_stream(8))
    assert n == 1 and 4 in with_lane
    without_lane, n = asyncio.run(calls_with_stream(0))
    assert n == 1 and 4 not in without_lane
