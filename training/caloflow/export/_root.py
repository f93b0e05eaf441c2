"""The module every format exports: ``forward(INCIDENT_ENERGY, NOISE) -> SHOWERS`` around a sampler."""

from __future__ import annotations

from typing import Protocol, cast

import torch
from torch import Tensor, nn

from caloflow.sampler import CaloFlowSampler

INPUT_NAMES = ("INCIDENT_ENERGY", "NOISE")
OUTPUT_NAMES = ("SHOWERS",)
EXAMPLE_BATCH = 3
"""Example batch size for tracing: not 0 or 1, which tracers and torch.export would specialise on."""


class _Materializable(Protocol):
    def materialize(self) -> Tensor: ...


class ExportRoot(nn.Module):
    """Wraps a prepared sampler (or its fast form) so the argument names are the graph's input names (Triton's
    PyTorch backend names TorchScript inputs after ``forward``'s arguments) and adds ``materialize``."""

    def __init__(self, sampler: nn.Module, materializable: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.sampler = sampler
        self.materializable = materializable

    def forward(self, INCIDENT_ENERGY: Tensor, NOISE: Tensor) -> Tensor:
        showers: Tensor = self.sampler(INCIDENT_ENERGY, NOISE)
        return showers

    def materialize(self) -> Tensor:
        """Rebuild and keep every packed weight (TorchScript); returns the number of entries rebuilt."""
        counts = [cast(_Materializable, self.get_submodule(name)).materialize() for name in self.materializable]
        return torch.stack(counts).sum() if counts else torch.zeros((), dtype=torch.int64)


def example_inputs(sampler: CaloFlowSampler, batch: int = EXAMPLE_BATCH) -> tuple[Tensor, Tensor]:
    """Valid example inputs (incident energies in the Dataset 1 range, standard normal noise)."""
    generator = torch.Generator().manual_seed(0)
    energies = 2.0 ** torch.linspace(8, 22, batch).reshape(batch, 1)
    return energies, torch.randn(batch, sampler.noise_dim, generator=generator)
