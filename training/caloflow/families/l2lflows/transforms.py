"""L2LFlows preprocessing: from cell energies (MeV) to the flows' spaces and back (method note 3.3).

* Conditions: ``2 log10(E_inc / GeV) - 3`` (10-100 GeV -> [-1, 1]) and ``log10(E_i / GeV + 1e-6) + 1`` for a
  layer energy (ConvL2LFlows' ILD transforms, note 3.3).
* Flow-I (the 30 layer energies): ``u_i = E_i / (ratio_scale E_inc)`` clamped to [0, 1], then the logit with
  ``alpha``; ``ratio_scale`` is fitted on the training split (1.5 x the largest E_i / E_inc seen).
* Layer flows: the cells of a layer as fractions of the layer's (noisy) energy, then the logit: CaloFlow's
  flow-II convention, which L2LFlows evolves (note 3.3); the layer energy comes back as a condition.
* Dequantisation: every cell gets ``U(0, noise_mev)`` before either transform; with the default 1 keV per
  cell an empty layer's noise sums to well below the 0.1 MeV threshold, so the renormalisation returns it
  empty (:mod:`caloflow.families.l2lflows.renormalize`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "L2LPreprocessing",
    "add_noise",
    "energy_condition",
    "fractions_to_logit",
    "incident_condition",
    "layer_energies_from_logit",
    "layer_energies_to_logit",
    "logit_to_fractions",
]

MEV_PER_GEV = 1000.0
LAYER_CONDITION_EPSILON_GEV = 1e-6


@dataclass(frozen=True)
class L2LPreprocessing:
    """The constants of one run (stored in ``run.json`` and in the manifest)."""

    n_layers: int
    cells_per_layer: int
    threshold_mev: float
    ratio_scale: float
    alpha: float = 1e-6
    noise_mev: float = 1e-3
    context_pool: int = 1
    """Previous images enter the layer flows' contexts summed over ``context_pool`` x ``context_pool`` cell
    blocks (:class:`~caloflow.families.l2lflows.context.ContextPooling`; 1: as they are)."""

    @property
    def n_voxels(self) -> int:
        return self.n_layers * self.cells_per_layer

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> L2LPreprocessing:
        return cls(**data)


def fit_ratio_scale(layer_energies_mev: Tensor, incident_mev: Tensor) -> float:
    """1.5 x the largest layer energy over incident energy in the training split (flow-I's unit scale)."""
    ratio = float((layer_energies_mev / incident_mev).max())
    return 1.5 * ratio if ratio > 0 else 1.0


def incident_condition(incident_mev: Tensor) -> Tensor:
    """(B, 1) MeV -> ``2 log10(E / GeV) - 3``."""
    return 2.0 * torch.log10(incident_mev / MEV_PER_GEV) - 3.0


def energy_condition(layer_energy_mev: Tensor) -> Tensor:
    """Layer energies (MeV, any shape) -> ``log10(E / GeV + 1e-6) + 1``."""
    return torch.log10(layer_energy_mev / MEV_PER_GEV + LAYER_CONDITION_EPSILON_GEV) + 1.0


def add_noise(cells_mev: Tensor, noise_mev: float, generator: torch.Generator | None) -> Tensor:
    """``cells + U(0, noise_mev)`` (dequantisation of the exact zeros and of the threshold)."""
    uniform = torch.rand(cells_mev.shape, generator=generator, device=cells_mev.device, dtype=cells_mev.dtype)
    return cells_mev + noise_mev * uniform


def _logit(u: Tensor, alpha: float) -> Tensor:
    v = alpha + (1.0 - 2.0 * alpha) * u
    return torch.log(v) - torch.log1p(-v)


def _inverse_logit(x: Tensor, alpha: float) -> Tensor:
    return ((torch.sigmoid(x) - alpha) / (1.0 - 2.0 * alpha)).clamp(0.0, 1.0)


def layer_energies_to_logit(energies_mev: Tensor, incident_mev: Tensor, prep: L2LPreprocessing) -> Tensor:
    """(B, L) layer energies and (B, 1) incident energies (MeV) -> flow-I's (B, L) inputs."""
    u = (energies_mev / (prep.ratio_scale * incident_mev)).clamp(0.0, 1.0)
    return _logit(u, prep.alpha)


def layer_energies_from_logit(x: Tensor, incident_mev: Tensor, prep: L2LPreprocessing) -> Tensor:
    """Inverse of :func:`layer_energies_to_logit` (MeV, clamped to [0, ratio_scale E_inc])."""
    return _inverse_logit(x, prep.alpha) * (prep.ratio_scale * incident_mev)


def fractions_to_logit(cells_mev: Tensor, layer_energy_mev: Tensor, alpha: float) -> Tensor:
    """(..., C) cells and (...) their layer's energy -> logit of the fractions (the layer flows' x)."""
    fractions = cells_mev / layer_energy_mev.clamp_min(1e-12).unsqueeze(-1)
    return _logit(fractions.clamp(0.0, 1.0), alpha)


def logit_to_fractions(x: Tensor, alpha: float) -> Tensor:
    """Inverse of :func:`fractions_to_logit` up to the layer energy (renormalisation restores it)."""
    return _inverse_logit(x, alpha)


def logit_bound(alpha: float) -> float:
    """|logit| of the clamped fractions never exceeds this (the spline's tail bound must cover it)."""
    return math.log((1.0 - alpha) / alpha)
