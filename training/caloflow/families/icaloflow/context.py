"""iCaloFlow's inputs and conditions (method note 2.3): what each flow sees, and nothing more.

With E_inc in MeV, y0 = log10(E_inc) - 4.5, E_n the energy of layer n and I^_n = layer n / its sum:

* flow-1: x = logit(E_0..E_{L-1} / s), c = [y0];
* flow-2: x = logit(I^_0), c = [y0, logit(E_0 / s) / 4];
* flow-3: x = logit(I^_n), c = [y0, logit(E_n / s), logit(E_{n-1} / s), logit(I^_{n-1}) (layer size),
  one-hot(n - 1) (L - 1)], the reference's order. Layer n's voxels never enter its own condition: only
  its sum E_n (from data in training, from flow-1 in generation).

``logit`` is ``logit(alpha + (1 - 2 alpha) u)`` with alpha = 1e-6, the shared one. Deviation from the
reference (weakness 4.1.1): ``u = E / s`` is clamped into [0, 1], so a layer energy at or above the scale
``s`` gives the finite edge value instead of inf/NaN; ``s`` is a stored run constant (the reference's
6.5e4 MeV, raised when a training file exceeds it, see :func:`fit_energy_scale`). The flow-3 energies stay
unscaled and the flow-2 one divided by 4 as in the reference (weakness 4.1.3: inconsistent, but the published
architecture was trained that way; standardising is an open improvement).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from caloflow.preprocessing import LOGIT_ALPHA, inverse_logit, logit

__all__ = ["REFERENCE_ENERGY_SCALE_MEV", "Conditioning", "fit_energy_scale", "uniform_from_normal"]

REFERENCE_ENERGY_SCALE_MEV = 6.5e4
Y0_OFFSET = 4.5
FLOW2_ENERGY_DIVISOR = 4.0
SUM_FLOOR = 1e-30
STATIC_COLUMNS = 3
"""y0, logit(E_n / s), logit(E_{n-1} / s): the flow-3 context columns before the previous layer."""


def fit_energy_scale(max_layer_energy_mev: float, margin: float = 0.01) -> float:
    """The reference's 6.5e4 MeV, or ``(1 + margin)`` x the largest training layer energy if that is larger."""
    return max(REFERENCE_ENERGY_SCALE_MEV, (1.0 + margin) * max_layer_energy_mev)


def uniform_from_normal(noise: Tensor) -> Tensor:
    """Standard normal -> U(0, 1) (the normal CDF), so a graph fed only normal noise can draw uniforms."""
    return 0.5 * (1.0 + torch.erf(noise * 0.7071067811865476))


@dataclass(frozen=True)
class Conditioning:
    """The run constants of the transforms above."""

    n_layers: int
    layer_size: int
    energy_scale_mev: float = REFERENCE_ENERGY_SCALE_MEV
    noise_mev: float = 5e-3
    alpha: float = LOGIT_ALPHA

    @property
    def flow3_context_size(self) -> int:
        return STATIC_COLUMNS + self.layer_size + self.n_layers - 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def incident_code(self, incident_mev: Tensor) -> Tensor:
        """y0 (B, 1) = log10(E_inc / MeV) - 4.5: flow-1's whole condition."""
        return torch.log10(incident_mev) - Y0_OFFSET

    def energy_logit(self, energy_mev: Tensor) -> Tensor:
        """logit(clamp(E / s, 0, 1)): finite for every energy."""
        return logit((energy_mev / self.energy_scale_mev).clamp(0.0, 1.0), self.alpha)

    def energy_from_logit(self, x: Tensor) -> Tensor:
        """Inverse of :meth:`energy_logit` on its range: clamp(inverse logit, 0, 1) x s."""
        return inverse_logit(x, self.alpha).clamp(0.0, 1.0) * self.energy_scale_mev

    def fraction_logit(self, layer_mev: Tensor) -> Tensor:
        """logit(I^) of (noisy) layers (..., layer_size): each normalised to unit sum first."""
        total = layer_mev.sum(dim=-1, keepdim=True).clamp_min(SUM_FLOOR)
        return logit((layer_mev / total).clamp(0.0, 1.0), self.alpha)

    def fraction_from_logit(self, x: Tensor) -> Tensor:
        """clamp(inverse logit, 0, 1): the generated voxel fractions (their sum is not forced to 1)."""
        return inverse_logit(x, self.alpha).clamp(0.0, 1.0)

    def flow2_context(self, incident_mev: Tensor, energy0_mev: Tensor) -> Tensor:
        """[y0, logit(E_0 / s) / 4] (B, 2) from (B, 1) incident and (B,) layer-0 energies."""
        scaled = self.energy_logit(energy0_mev)[:, None] / FLOW2_ENERGY_DIVISOR
        return torch.cat([self.incident_code(incident_mev), scaled], dim=1)

    def flow3_static(self, incident_mev: Tensor, energy_mev: Tensor, previous_mev: Tensor) -> Tensor:
        """[y0, logit(E_n / s), logit(E_{n-1} / s)] (..., 3); energies broadcast against incident (..., 1)."""
        y0 = self.incident_code(incident_mev).expand_as(energy_mev[..., None])
        return torch.cat([y0, self.energy_logit(energy_mev)[..., None], self.energy_logit(previous_mev)[..., None]], -1)

    def layer_code(self, layer: Tensor) -> Tensor:
        """one-hot(n - 1) over the L - 1 inductive steps, for layers n = 1 .. L - 1 (int64)."""
        return torch.nn.functional.one_hot(layer - 1, self.n_layers - 1).to(torch.get_default_dtype())

    def flow3_context(self, static: Tensor, previous_logit: Tensor, code: Tensor) -> Tensor:
        """The reference's concatenation order: static (3), previous layer (layer size), one-hot (L - 1)."""
        return torch.cat([static, previous_logit, code.to(static.dtype)], dim=-1)
