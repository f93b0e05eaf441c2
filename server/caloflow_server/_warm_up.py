"""The warm-up every backend runs before traffic: one call per batch size on constant inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["warm_up_calls"]


def warm_up_calls(
    run: Callable[[np.ndarray, np.ndarray], object], noise_dim: int, batch_sizes: Sequence[int], energy_mev: float
) -> None:
    """Call ``run`` once per batch size (first-call allocations, kernel choices and constant folding happen here,
    not on the first request), with every shower at ``energy_mev`` and zero noise."""
    for size in batch_sizes:
        incident = np.full((size, 1), energy_mev, dtype=np.float32)
        run(incident, np.zeros((size, noise_dim), dtype=np.float32))
