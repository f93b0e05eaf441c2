"""The whole iCaloFlow generator as one module: ``(incident energies MeV (B, 1), noise (B, n)) -> showers``.

The generation path of the reference (note 2.8), in its order:

1. flow-1 (MAF) samples the L layer energies given y0; E_n = clamp(inverse logit, 0, 1) x s, then E_n below
   the cut -> 0;
2. flow-2 samples I^_0 given [y0, logit(E_0 / s) / 4]; layer 0 = clamp(I^_0, 0, 1) x E_0, cut;
3. for n = 1 .. L - 1, flow-3 samples I^_n given [y0, logit(E_n / s), logit(E_{n-1} / s) (both from flow-1),
   logit(normalise(layer n-1 + U[0, noise))) (the generated, cut previous layer, dequantised again as in
   training), one-hot(n - 1)]; layer n = clamp(I^_n, 0, 1) x E_n, cut.

``renormalise=True`` divides each layer's fractions by their sum before multiplying by E_n, so every layer
sums to flow-1's energy before the cut (the reference leaves sum I^ != 1 in the showers, note 3.2).

The cut is 0.99 x the dataset's threshold (15.0 keV for DS2/3, just below ``evaluate.py``'s 15.15 keV, as the
reference's 1.5e-2 MeV). Noise is an input, so generation is a pure function of ``(energies, noise)``; its
columns are [flow-1 (L) | flow-2 (layer size) | flow-3 latents ((L - 1) x layer size) | previous-layer
dequantisation ((L - 1) x layer size, standard normal turned uniform by the normal CDF)]. The constant part
of flow-3's condition (y0, the energies, the one-hot) is built once for all L - 1 steps before the loop.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from caloflow.families.icaloflow.context import Conditioning, uniform_from_normal
from caloflow.flows import Flow

__all__ = ["CUT_FRACTION", "GenerationChain", "ICaloFlowSampler", "noise_dim"]

CUT_FRACTION = 0.99


def noise_dim(cond: Conditioning) -> int:
    """L + layer size + 2 (L - 1) layer size standard normal columns per shower."""
    return cond.n_layers + cond.layer_size * (1 + 2 * (cond.n_layers - 1))


class GenerationChain(nn.Module):
    """The generation loop above, over flows supplied by a subclass (eager :class:`ICaloFlowSampler`, or the fast
    form in :mod:`caloflow.families.icaloflow.fast`): ``forward(incident_energy_mev (B, 1), noise (B, noise_dim))
    -> showers_mev (B, L x layer size)``."""

    def __init__(self, cond: Conditioning, threshold_mev: float, renormalise: bool) -> None:
        super().__init__()
        self.cond = cond
        self.n_layers, self.layer_size = cond.n_layers, cond.layer_size
        self.n_voxels = cond.n_layers * cond.layer_size
        self.threshold_mev = threshold_mev
        self.cut_mev = CUT_FRACTION * threshold_mev
        self.renormalise = renormalise
        self.register_buffer("layer_codes", cond.layer_code(torch.arange(1, cond.n_layers)).float())

    @property
    def noise_dim(self) -> int:
        return noise_dim(self.cond)

    def sample_flow1(self, z: Tensor, c: Tensor) -> Tensor:
        raise NotImplementedError

    def sample_flow2(self, z: Tensor, c: Tensor) -> Tensor:
        raise NotImplementedError

    def prepare_flow3(self, static: Tensor, codes: Tensor) -> list[Tensor]:
        """What flow-3 needs of the (B, L-1, 3) static conditions and (L-1, L-1) one-hot codes, once per batch:
        tensors with the step axis first (L-1, ...), entry ``step`` of each being what step ``step`` reads."""
        raise NotImplementedError

    def sample_flow3(self, z: Tensor, previous_logit: Tensor, prepared: list[Tensor]) -> Tensor:
        """Flow-3 for one step, given that step's entries of :meth:`prepare_flow3`'s tensors."""
        raise NotImplementedError

    def _cut(self, energy: Tensor) -> Tensor:
        return torch.where(energy < self.cut_mev, torch.zeros_like(energy), energy)

    def _layer(self, x: Tensor, energy: Tensor) -> Tensor:
        fractions = self.cond.fraction_from_logit(x)
        if self.renormalise:
            fractions = fractions / fractions.sum(dim=1, keepdim=True).clamp_min(1e-30)
        return self._cut(fractions * energy[:, None])

    def layer_energies(self, incident_mev: Tensor, noise: Tensor) -> Tensor:
        """Flow-1: (B, L) layer energies in MeV, cut."""
        x = self.sample_flow1(noise, self.cond.incident_code(incident_mev))
        return self._cut(self.cond.energy_from_logit(x))

    def step_inputs(self, noise: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Split ``noise`` into flow-1, flow-2, flow-3 latents (B, L-1, size) and dequantisation (B, L-1, size)."""
        size, steps = self.layer_size, self.n_layers - 1
        flow1_noise, rest = noise[:, : self.n_layers], noise[:, self.n_layers :]
        latents = rest[:, size : size * (1 + steps)].reshape(-1, steps, size)
        dequantise = uniform_from_normal(rest[:, size * (1 + steps) :].reshape(-1, steps, size)) * self.cond.noise_mev
        return flow1_noise, rest[:, :size], latents, dequantise

    def forward(self, incident_energy_mev: Tensor, noise: Tensor) -> Tensor:
        flow1_noise, flow2_noise, latents, dequantise = self.step_inputs(noise)
        energies = self.layer_energies(incident_energy_mev, flow1_noise)
        c2 = self.cond.flow2_context(incident_energy_mev, energies[:, 0])
        layers = [self._layer(self.sample_flow2(flow2_noise, c2), energies[:, 0])]
        static = self.cond.flow3_static(incident_energy_mev[:, None], energies[:, 1:], energies[:, :-1])
        prepared = self.prepare_flow3(static, cast(Tensor, self.layer_codes).to(static.dtype))
        per_step = [latents.transpose(0, 1), dequantise.transpose(0, 1), energies[:, 1:].t(), *prepared]
        return torch.cat([layers[0], self.flow3_loop(layers[0], per_step)], dim=1)

    def step(self, previous: Tensor, per_step: list[Tensor]) -> Tensor:
        """Layer n (B, layer size) MeV from layer n - 1 and step n - 1's entries of ``per_step``: [flow-3 latent,
        dequantisation, E_n, *flow-3's prepared inputs]."""
        latent, dequantise, energy, *prepared = per_step
        previous_logit = self.cond.fraction_logit(previous + dequantise)
        return self._layer(self.sample_flow3(latent, previous_logit, prepared), energy)

    def flow3_loop(self, layer0: Tensor, per_step: list[Tensor]) -> Tensor:
        """Layers 1 .. L - 1 (B, (L - 1) layer size): :meth:`step` over the step-major ``per_step`` tensors."""
        layers = [layer0]
        for n in range(self.n_layers - 1):
            layers.append(self.step(layers[-1], [t[n] for t in per_step]))
        return torch.cat(layers[1:], dim=1)


class ICaloFlowSampler(GenerationChain):
    """The eager generator from three :class:`~caloflow.flows.Flow` (flow-1 and the flow-2/3 students or
    teachers); flow-3's context is concatenated per step in the reference's order."""

    def __init__(
        self, flow1: Flow, flow2: Flow, flow3: Flow, cond: Conditioning, threshold_mev: float, renormalise: bool
    ) -> None:
        super().__init__(cond, threshold_mev, renormalise)
        self.flow1, self.flow2, self.flow3 = flow1, flow2, flow3

    def sample_flow1(self, z: Tensor, c: Tensor) -> Tensor:
        return self.flow1.sample(z, c)

    def sample_flow2(self, z: Tensor, c: Tensor) -> Tensor:
        return self.flow2.sample(z, c)

    def prepare_flow3(self, static: Tensor, codes: Tensor) -> list[Tensor]:
        return [static.transpose(0, 1), codes]

    def sample_flow3(self, z: Tensor, previous_logit: Tensor, prepared: list[Tensor]) -> Tensor:
        static, code = prepared
        context = self.cond.flow3_context(static, previous_logit, code.expand(previous_logit.shape[0], -1))
        return self.flow3.sample(z, context)
