"""Builders of CaloFlow's three flows with the published architecture (method note 3.2-3.4).

Published parameter counts (masked weights counted as dense, as the CaloChallenge table does):

=====================================  ==========
photon flow-I (5 features, context 1)      97 842
pion flow-I (7 features, context 1)       116 550
photon teacher (D 368, C 6, H 378)     27 945 968
photon student (H 736)                 56 457 088
pion teacher (D 533, C 8, H 533)       56 962 776
pion student (H 500, refused: H < D-1) 53 310 072
pion student with H 532 (= D - 1)      56 851 832
=====================================  ==========

Weights get PyTorch's default ``nn.Linear`` initialisation drawn from a private RNG seeded with
``seed`` (the global RNG is left untouched); permutations come from a ``torch.Generator`` seeded with
``seed``. Pass ``device="meta"`` to build paper-size models without allocating them (e.g. to count).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from caloflow.flows.autoregressive import AutoregressiveRQS
from caloflow.flows.flow import Flow
from caloflow.flows.permutations import (
    Permutation,
    layerwise_inversion,
    layerwise_random_permutation,
    random_permutation,
)
from caloflow.flows.spline import SplineConfig

__all__ = ["build_flow1", "build_student", "build_teacher", "teacher_permutations"]

DeviceLike = torch.device | str | None


def _seeded_build(seed: int, device: DeviceLike, build: Callable[[], Flow]) -> Flow:
    """Run ``build`` with a private CPU RNG seeded with ``seed``, then move the flow to ``device``.

    Weights are drawn on the CPU, so a seed gives the same flow on every device; ``meta`` builds
    directly on the meta device (no allocation, no values).
    """
    target = torch.device(device if device is not None else "cpu")
    with torch.random.fork_rng(devices=[]), torch.device("meta" if target.type == "meta" else "cpu"):
        torch.default_generator.manual_seed(seed)
        flow = build()
    return flow.to(target)


def _blocks(
    n_blocks: int,
    features: int,
    context: int,
    hidden: int,
    n_hidden_blocks: int,
    dropout: float,
    spline: SplineConfig | None,
    inverse_autoregressive: bool = False,
    allow_incomplete_degrees: bool = False,
) -> list[AutoregressiveRQS]:
    return [
        AutoregressiveRQS(
            features,
            context,
            hidden,
            n_hidden_blocks=n_hidden_blocks,
            dropout=dropout,
            spline=spline,
            inverse_autoregressive=inverse_autoregressive,
            allow_incomplete_degrees=allow_incomplete_degrees,
        )
        for _ in range(n_blocks)
    ]


def build_flow1(
    n_features: int,
    hidden: int = 64,
    n_hidden_blocks: int = 2,
    n_blocks: int = 6,
    context: int = 1,
    spline: SplineConfig | None = None,
    seed: int = 0,
    device: DeviceLike = None,
) -> Flow:
    """Flow-I (MAF): ``n_blocks`` x [MADE-RQS, random permutation of all features], last one kept."""
    generator = torch.Generator().manual_seed(seed)

    def build() -> Flow:
        blocks = _blocks(n_blocks, n_features, context, hidden, n_hidden_blocks, 0.0, spline)
        return Flow(blocks, [random_permutation(n_features, generator) for _ in range(n_blocks)])

    return _seeded_build(seed, device, build)


def teacher_permutations(layer_sizes: Sequence[int], n_blocks: int, seed: int) -> list[Permutation]:
    """The n_blocks - 1 permutations of flow-II: after block i, per-layer inversion if i is even, an
    independent per-layer random permutation if i is odd; none after the last block."""
    generator = torch.Generator().manual_seed(seed)
    return [
        layerwise_inversion(layer_sizes) if i % 2 == 0 else layerwise_random_permutation(layer_sizes, generator)
        for i in range(n_blocks - 1)
    ]


def build_teacher(
    layer_sizes: Sequence[int],
    context: int,
    hidden: int,
    n_blocks: int = 8,
    n_hidden_blocks: int = 1,
    dropout: float = 0.05,
    spline: SplineConfig | None = None,
    seed: int = 0,
    device: DeviceLike = None,
    allow_incomplete_degrees: bool = False,
) -> Flow:
    """Flow-II teacher (MAF) over ``sum(layer_sizes)`` voxels; permutations: :func:`teacher_permutations`."""
    features = sum(layer_sizes)

    def build() -> Flow:
        blocks = _blocks(
            n_blocks,
            features,
            context,
            hidden,
            n_hidden_blocks,
            dropout,
            spline,
            allow_incomplete_degrees=allow_incomplete_degrees,
        )
        return Flow(blocks, teacher_permutations(layer_sizes, n_blocks, seed))

    return _seeded_build(seed, device, build)


def build_student(
    teacher: Flow,
    hidden: int,
    n_hidden_blocks: int = 1,
    dropout: float = 0.05,
    seed: int = 1,
    device: DeviceLike = None,
    allow_incomplete_degrees: bool = False,
) -> Flow:
    """Flow-II student (IAF) with the teacher's block count, context, spline and (copied) permutations.

    Student block i is distilled from teacher block i; see :mod:`caloflow.flows.flow` for the traces.
    The student is built on the teacher's device unless ``device`` is given.
    """
    first = teacher.block(0)
    context_layer = first.autoregressive_net.context_layer
    device = device if device is not None else context_layer.weight.device

    def build() -> Flow:
        blocks = _blocks(
            teacher.n_blocks,
            teacher.features,
            context_layer.in_features,
            hidden,
            n_hidden_blocks,
            dropout,
            first.spline,
            inverse_autoregressive=True,
            allow_incomplete_degrees=allow_incomplete_degrees,
        )
        permutations = [Permutation(p.indices.detach().clone()) for p in _permutations(teacher)]
        return Flow(blocks, permutations)

    return _seeded_build(seed, device, build)


def _permutations(flow: Flow) -> list[Permutation]:
    return [p for i in range(flow.n_blocks) if (p := flow.permutation(i)) is not None]
