"""The published CaloFlow generator rebuilt from ``nflows`` (bench-only dependency), the speed reference.

Architecture exactly as published (method notes 3.1-3.4): flow-I is ``n_blocks`` x
[``MaskedPiecewiseRationalQuadraticAutoregressiveTransform`` (hidden 64, 2 hidden blocks, no residual
blocks, context 1), ``RandomPermutation``]; the student is 8 x ``InverseTransform(IAFRQS)`` - the MAF-RQS
transform with its elementwise forward and inverse swapped, so sampling is one MADE pass per block -
with the per-calorimeter-layer inversion / random permutations in between, dropout 0.05 (inactive in
eval mode), 8-bin splines with linear tails at 14, minimal bin width, height and derivative 1e-6.

Generation follows the published ``generate_single_with_rec`` (method notes 2.3, 2.5, 5): flow-I
sample -> clamped inverse logit -> the layer-energy recursion as a Python loop -> labels with +1e-8 ->
student sample -> unclamped inverse logit, per-layer division by the sum of absolute values, times the
layer energy -> clamp to [0, 1e6] MeV -> zero below the threshold. Unlike the published code it runs in
float32 (the published float64 is 2-7x slower; the comparison asked for is float32, same threads) and
takes the base noise as an input instead of drawing it inside ``Flow.sample`` (so both sides get the same
noise and random-number generation is timed on neither side).

:func:`copy_weights` loads a caloflow flow's weights into the reference (the state-dict names follow
nflows), which is how ``tests/test_bench_generate.py`` shows that both compute the same showers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from caloflow import preprocessing as pp
from caloflow.flows import Flow
from caloflow.sampler import CaloFlowSampler

__all__ = ["ReferenceGenerator", "copy_weights", "reference_flow1", "reference_from_sampler", "reference_student"]


def _nflows() -> Any:
    try:
        import nflows.transforms as transforms
    except ImportError as error:  # a bench-only dependency
        raise ImportError("the nflows reference needs nflows: pip install 'caloflow-serve[bench]'") from error
    return transforms


def _rqs(features: int, hidden: int, context: int, n_hidden_blocks: int, dropout: float, bins: int) -> Any:
    return _nflows().MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
        features=features,
        hidden_features=hidden,
        context_features=context,
        num_bins=bins,
        tails="linear",
        tail_bound=14.0,
        num_blocks=n_hidden_blocks,
        use_residual_blocks=False,
        random_mask=False,
        activation=F.relu,
        dropout_probability=dropout,
        use_batch_norm=False,
        min_bin_width=1e-6,
        min_bin_height=1e-6,
        min_derivative=1e-6,
    )


def _iaf_class() -> type:
    base = _nflows().MaskedPiecewiseRationalQuadraticAutoregressiveTransform

    class IAFRQS(base):  # type: ignore[misc,valid-type]
        """The published student block: the MAF-RQS transform with its elementwise directions swapped."""

        def _elementwise_forward(self, inputs: Tensor, autoregressive_params: Tensor) -> Any:
            return super()._elementwise_inverse(inputs, autoregressive_params)

        def _elementwise_inverse(self, inputs: Tensor, autoregressive_params: Tensor) -> Any:
            return super()._elementwise_forward(inputs, autoregressive_params)

    return IAFRQS


def reference_flow1(
    features: int, hidden: int = 64, n_hidden_blocks: int = 2, n_blocks: int = 6, bins: int = 8
) -> nn.Module:
    """Flow-I's transform: [MAF-RQS, RandomPermutation] x ``n_blocks`` (the last permutation kept)."""
    t = _nflows()
    layers: list[nn.Module] = []
    for _ in range(n_blocks):
        layers += [_rqs(features, hidden, 1, n_hidden_blocks, 0.0, bins), t.RandomPermutation(features)]
    return t.CompositeTransform(layers)  # type: ignore[no-any-return]


def reference_student(
    permutations: Sequence[Tensor],
    features: int,
    context: int,
    hidden: int,
    n_blocks: int = 8,
    bins: int = 8,
    n_hidden_blocks: int = 1,
    dropout: float = 0.05,
) -> nn.Module:
    """The student's transform: InverseTransform(IAFRQS) blocks with ``permutations[i]`` after block i (dropout:
    DS1's 0.05, iCaloFlow's 0; inactive in eval mode either way)."""
    t, iaf = _nflows(), _iaf_class()
    layers: list[nn.Module] = []
    for i in range(n_blocks):
        block = iaf(
            features=features,
            hidden_features=hidden,
            context_features=context,
            num_bins=bins,
            tails="linear",
            tail_bound=14.0,
            num_blocks=n_hidden_blocks,
            use_residual_blocks=False,
            random_mask=False,
            activation=F.relu,
            dropout_probability=dropout,
            use_batch_norm=False,
            min_bin_width=1e-6,
            min_bin_height=1e-6,
            min_derivative=1e-6,
        )
        layers.append(t.InverseTransform(block))
        if i < len(permutations):
            layers.append(t.Permutation(permutations[i].clone()))
    return t.CompositeTransform(layers)  # type: ignore[no-any-return]


def _reference_key(key: str, iaf: bool) -> str:
    """caloflow ``blocks.{i}.autoregressive_net...`` / ``permutations.{i}._permutation`` -> nflows names."""
    kind, index, rest = key.split(".", 2)
    if kind == "blocks":
        return f"_transforms.{2 * int(index)}.{'_transform.' if iaf else ''}{rest}"
    return f"_transforms.{2 * int(index) + 1}.{rest}"


def copy_weights(reference: nn.Module, flow: Flow, iaf: bool) -> None:
    """Load ``flow``'s weights, masks and permutations into the nflows ``reference`` (strict, same shapes)."""
    state = {_reference_key(k, iaf): v for k, v in flow.state_dict().items() if not k.endswith("_inverse")}
    missing, unexpected = reference.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith("_inverse")]:
        raise ValueError(f"nflows reference does not match the flow: missing {missing}, unexpected {unexpected}")


class ReferenceGenerator(nn.Module):
    """``forward(incident_energy_mev (B, 1), noise (B, L + V)) -> showers_mev (B, V)``, published style."""

    flow1: Any
    student: Any

    def __init__(self, flow1: nn.Module, student: nn.Module, prep: pp.Preprocessing) -> None:
        super().__init__()
        self.flow1, self.student = flow1, student
        self.layer_sizes = list(prep.layer_sizes)
        self.u0_scale, self.alpha, self.threshold_mev = prep.u0_scale, prep.alpha, prep.threshold_mev

    def layer_energies(self, u: Tensor, incident: Tensor) -> Tensor:
        """``trafo_to_energy_space``: the recursion E_n = u_{n+1} (E_hat - sum_{k<n} E_k), one layer at a time."""
        total = u[:, 0] * self.u0_scale * incident[:, 0]
        energies, used = [], torch.zeros_like(total)
        for n in range(len(self.layer_sizes)):
            share = u[:, n + 1] if n + 1 < u.shape[1] else torch.ones_like(total)
            energies.append(share * (total - used))
            used = used + energies[-1]
        return torch.stack(energies, dim=1)

    def forward(self, incident_energy_mev: Tensor, noise: Tensor) -> Tensor:
        n_layers = len(self.layer_sizes)
        incident = incident_energy_mev / pp.ENERGY_UNIT_MEV
        x1, _ = self.flow1.inverse(noise[:, :n_layers], torch.log10(3.0 * incident))
        u = ((torch.sigmoid(x1) - self.alpha) / (1 - 2 * self.alpha)).clamp(0.0, 1.0)
        energies = self.layer_energies(u, incident)
        labels = torch.cat([torch.log10(3.0 * incident), torch.log10(energies + 1e-8) - 1.0], dim=1)
        x2, _ = self.student.inverse(noise[:, n_layers:], labels)
        fractions = (torch.sigmoid(x2) - self.alpha) / (1 - 2 * self.alpha)
        layers = []
        for i, part in enumerate(torch.split(fractions, self.layer_sizes, dim=1)):
            layers.append(part / part.abs().sum(dim=1, keepdim=True) * energies[:, i : i + 1])
        showers = (torch.cat(layers, dim=1) * pp.ENERGY_UNIT_MEV).clamp(0.0, pp.VOXEL_CAP_MEV)
        return torch.where(showers < self.threshold_mev, torch.zeros_like(showers), showers)


def reference_from_sampler(sampler: CaloFlowSampler, prep: pp.Preprocessing, copy: bool = True) -> ReferenceGenerator:
    """The nflows generator with ``sampler``'s architecture (and, with ``copy``, its weights), float32, eval."""
    first1, first2 = sampler.flow1.block(0), sampler.flow2.block(0)
    made1, made2 = first1.autoregressive_net, first2.autoregressive_net
    flow1 = reference_flow1(
        made1.features,
        hidden=made1.initial_layer.out_features,
        n_hidden_blocks=len(made1.blocks),
        n_blocks=sampler.flow1.n_blocks,
        bins=first1.spline.num_bins,
    )
    permutations = [p.indices for i in range(sampler.flow2.n_blocks) if (p := sampler.flow2.permutation(i)) is not None]
    student = reference_student(
        permutations,
        made2.features,
        made2.context_layer.in_features,
        made2.initial_layer.out_features,
        n_blocks=sampler.flow2.n_blocks,
        bins=first2.spline.num_bins,
        n_hidden_blocks=len(made2.blocks),
    )
    if copy:
        copy_weights(flow1, sampler.flow1, iaf=False)
        copy_weights(student, sampler.flow2, iaf=True)
    return ReferenceGenerator(flow1, student, prep).float().eval().requires_grad_(False)
