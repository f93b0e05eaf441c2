"""CaloFlow pre- and post-processing for Dataset 1 (method doc section 2), as batched torch functions.

Everything here is pure tensor math: static shapes, no host syncs, no data-dependent control flow, so the
same functions run on CPU or GPU, inside training loops and inside the exported sampler graph.

Units: the reference code works in units of 100 GeV (``ENERGY_UNIT_MEV`` = 1e5 MeV); these functions take
and return that unit unless a name says ``_mev``.

Flow-I (section 2.3) works on the unit-space vector ``u`` (L entries for L layers):
  u_0 = sum_i E_i / (c E_inc),  u_{n+1} = E_n / sum_{k>=n} E_k  (n = 0 .. L-2),
then ``logit(alpha + (1 - 2 alpha) u)``. The rescale constant c is computed from the training data
(``fit_u0_scale``), not hard-coded (the reference uses 2.42 for photons and 6.93 for pions).
Flow-II (section 2.4) works on per-layer normalised voxels passed through the same logit, conditioned on
labels ``[log10(3 E_inc), log10(E_i + 1e-8) - 1 ...]``.

Deviations from the reference, each a documented weakness there (section 7.2):
* empty trailing layers: ``u_{n+1}`` is 0 where its denominator is 0 (the reference gives 0/0 = NaN);
* post-processing clamps the voxel fractions to [0, 1] *before* the per-layer renormalisation and guards
  the division with an epsilon (the reference renormalises on sum|I| including negative mass);
* the pion label offset is 1e-8 at training *and* generation time (the reference uses 1e-9 when generating);
* the layer-energy recursion runs on the tensor's device as a cumulative product (no CPU round trip).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

ENERGY_UNIT_MEV = 1e5
"""The internal energy unit of CaloFlow: 100 GeV."""

LOGIT_ALPHA = 1e-6
LABEL_EPSILON = 1e-8
"""Offset inside ``log10(E_i + eps)`` of the flow-II layer labels (1 keV in units of 100 GeV)."""

NORMALISATION_EPSILON = 1e-16
VOXEL_CAP_MEV = 1e6
"""Post-processing caps every voxel at 1 TeV, as the reference ``save_samples_to_file``."""

DEFAULT_THRESHOLD_MEV = 0.01
"""Voxels below 10 keV are zeroed after generation (above the 1 keV dequantisation noise)."""


@dataclass(frozen=True)
class Preprocessing:
    """The constants of one model's pre- and post-processing; stored in checkpoints and manifests."""

    layer_sizes: tuple[int, ...]
    u0_scale: float
    alpha: float = LOGIT_ALPHA
    noise_flow1: float = 1e-8
    noise_flow2: float = 1e-8
    label_epsilon: float = LABEL_EPSILON
    threshold_mev: float = DEFAULT_THRESHOLD_MEV

    @property
    def n_layers(self) -> int:
        return len(self.layer_sizes)

    @property
    def n_voxels(self) -> int:
        return sum(self.layer_sizes)

    def to_dict(self) -> dict[str, object]:
        return {
            "layer_sizes": list(self.layer_sizes),
            "u0_scale": self.u0_scale,
            "alpha": self.alpha,
            "noise_flow1": self.noise_flow1,
            "noise_flow2": self.noise_flow2,
            "label_epsilon": self.label_epsilon,
            "threshold_mev": self.threshold_mev,
            "energy_unit_mev": ENERGY_UNIT_MEV,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Preprocessing:
        sizes = data["layer_sizes"]
        if not isinstance(sizes, list | tuple):
            raise ValueError("preprocessing.layer_sizes must be a list of integers")
        return cls(
            layer_sizes=tuple(int(s) for s in sizes),
            u0_scale=float(data["u0_scale"]),  # type: ignore[arg-type]
            alpha=float(data["alpha"]),  # type: ignore[arg-type]
            noise_flow1=float(data["noise_flow1"]),  # type: ignore[arg-type]
            noise_flow2=float(data["noise_flow2"]),  # type: ignore[arg-type]
            label_epsilon=float(data["label_epsilon"]),  # type: ignore[arg-type]
            threshold_mev=float(data["threshold_mev"]),  # type: ignore[arg-type]
        )


def default_noise(particle: str) -> tuple[float, float]:
    """Dequantisation noise (flow-I, flow-II) in units of 100 GeV: U[0, 1 keV), pion flow-I U[0, 0.1 keV)."""
    return (1e-9, 1e-8) if particle == "pion" else (1e-8, 1e-8)


def fit_u0_scale(total_over_incident: Tensor, margin: float = 0.01) -> float:
    """The u_0 rescale constant c from training data: ``max(E_tot / E_inc)`` times (1 + margin), 2 decimals up.

    With c at least the largest ratio seen in training, u_0 stays inside [0, 1]; the reference values
    (2.42 photons, 6.93 pions) are this maximum on the real Dataset 1 files.
    """
    largest = float(total_over_incident.max())
    if not math.isfinite(largest) or largest <= 0:
        raise ValueError(f"cannot fit u0 scale: max E_tot/E_inc is {largest}")
    return math.ceil(largest * (1 + margin) * 100) / 100


def layer_membership(layer_sizes: Sequence[int], *, dtype: torch.dtype = torch.float32) -> Tensor:
    """(V, L) one-hot matrix: ``showers @ M`` gives layer sums with one static-shape matmul."""
    index = torch.repeat_interleave(torch.arange(len(layer_sizes)), torch.tensor(list(layer_sizes)))
    return torch.nn.functional.one_hot(index, len(layer_sizes)).to(dtype)


def voxel_layer_index(layer_sizes: Sequence[int]) -> Tensor:
    """(V,) layer index of every voxel."""
    return torch.repeat_interleave(torch.arange(len(layer_sizes)), torch.tensor(list(layer_sizes)))


def add_noise(showers: Tensor, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """Dequantisation: add U[0, scale) to every voxel (a new tensor)."""
    noise = torch.rand(showers.shape, generator=generator, device=showers.device, dtype=showers.dtype)
    return showers + noise * scale


def logit(u: Tensor, alpha: float = LOGIT_ALPHA) -> Tensor:
    """``logit(alpha + (1 - 2 alpha) u)``: maps [0, 1] into about [-13.8, 13.8] for alpha = 1e-6."""
    # Both sides computed from u directly: 1 - v = alpha + (1 - 2 alpha)(1 - u) keeps float32 precise near u = 1.
    return torch.log(alpha + (1 - 2 * alpha) * u) - torch.log(alpha + (1 - 2 * alpha) * (1 - u))


def inverse_logit(x: Tensor, alpha: float = LOGIT_ALPHA) -> Tensor:
    """Inverse of ``logit``, clamped to [0, 1]."""
    return ((torch.sigmoid(x) - alpha) / (1 - 2 * alpha)).clamp(0.0, 1.0)


def energies_to_unit(layer_energies: Tensor, incident: Tensor, u0_scale: float) -> Tensor:
    """(B, L) layer energies and (B, 1) incident energies -> (B, L) unit-space vector u (section 2.3)."""
    total = layer_energies.sum(dim=1, keepdim=True)
    u0 = total / (u0_scale * incident)
    suffix = torch.flip(torch.cumsum(torch.flip(layer_energies, [1]), dim=1), [1])  # sum_{k>=n} E_k
    numerator = layer_energies[:, :-1]
    denominator = suffix[:, :-1]
    ratios = torch.where(denominator > 0, numerator / denominator.clamp_min(1e-30), torch.zeros_like(numerator))
    return torch.cat([u0, ratios], dim=1).clamp(0.0, 1.0)


def unit_to_energies(u: Tensor, incident: Tensor, u0_scale: float) -> Tensor:
    """Inverse of ``energies_to_unit``: (B, L) u and (B, 1) E_inc -> (B, L) layer energies.

    E_n = u_{n+1} R_n with the remainder R_0 = u_0 c E_inc and R_{n+1} = R_n (1 - u_{n+1}); the last layer
    takes the remainder. As a cumulative product it is one vectorised pass on the tensor's device.
    """
    total = u[:, :1] * (u0_scale * incident)
    fractions = u[:, 1:]  # (B, L-1)
    keep = torch.cumprod(1.0 - fractions, dim=1)  # prod_{k<=n} (1 - u_{k+1})
    remainders = total * torch.cat([torch.ones_like(total), keep], dim=1)  # (B, L): R_0 .. R_{L-1}
    shares = torch.cat([fractions, torch.ones_like(total)], dim=1)  # u_1 .. u_{L-1}, then 1
    return remainders * shares


def flow1_condition(incident: Tensor) -> Tensor:
    """Flow-I context ``log10(3 E_inc)`` = log10(E_inc / 33.3 GeV), shape (B, 1)."""
    return torch.log10(3.0 * incident)


def flow2_labels(incident: Tensor, layer_energies: Tensor, epsilon: float = LABEL_EPSILON) -> Tensor:
    """Flow-II context ``[log10(3 E_inc), log10(E_i + eps) - 1 for each layer]``, shape (B, 1 + L)."""
    return torch.cat([torch.log10(3.0 * incident), torch.log10(layer_energies + epsilon) - 1.0], dim=1)


def normalise_layers(showers: Tensor, layer_energies: Tensor, voxel_layer: Tensor) -> Tensor:
    """Divide every voxel by its layer's energy (+1e-16): fractions in [0, 1] summing to 1 per layer."""
    return showers / (layer_energies[:, voxel_layer] + NORMALISATION_EPSILON)


def flow2_inputs(showers: Tensor, layer_energies: Tensor, voxel_layer: Tensor, alpha: float) -> Tensor:
    """Noisy showers and their layer sums -> the flow-II input space (logit of layer fractions)."""
    return logit(normalise_layers(showers, layer_energies, voxel_layer), alpha)


def flow2_outputs_to_showers(
    x: Tensor,
    layer_energies: Tensor,
    membership: Tensor,
    voxel_layer: Tensor,
    *,
    alpha: float,
    threshold_mev: float,
) -> Tensor:
    """Flow-II samples (logit space) and flow-I layer energies (100 GeV) -> voxel energies in MeV.

    Fractions are clamped to [0, 1], renormalised per layer on the clamped values (epsilon-guarded), scaled
    to the layer energies, capped at 1 TeV, and voxels below the threshold are zeroed. Non-finite values
    (which a healthy model never produces) become 0 rather than propagating.
    """
    fractions = torch.nan_to_num(inverse_logit(x, alpha), nan=0.0)
    sums = fractions @ membership  # (B, L)
    scale = layer_energies / (sums + NORMALISATION_EPSILON)
    showers_mev = fractions * scale[:, voxel_layer] * ENERGY_UNIT_MEV
    showers_mev = torch.nan_to_num(showers_mev, nan=0.0, posinf=0.0, neginf=0.0).clamp(0.0, VOXEL_CAP_MEV)
    return torch.where(showers_mev < threshold_mev, torch.zeros_like(showers_mev), showers_mev)
