"""The published iCaloFlow generation chain rebuilt from ``nflows`` (bench-only dependency), the speed reference
of ``caloflow bench generate --model paper-ds2 --compare-reference``.

Architecture as the reference code's ``run.py:build_flow`` / ``build_flow_student`` (method note 2.2, counts
2.4): every flow is ``n_blocks`` x [``MaskedPiecewiseRationalQuadraticAutoregressiveTransform`` (ReLU, no batch
norm, no residual blocks, ``random_mask=False``, K bins, linear tails at 14, minimal bin width / height /
derivative 1e-6), permutation] with ``ReversePermutation`` after even blocks, ``RandomPermutation`` after odd
ones and the last permutation deleted. Flow-1 (45 layer energies, context 1) stays a MAF (one MADE pass per
feature per block when sampling); the flow-2 / flow-3 students are ``InverseTransform(IAFRQS)`` blocks (the
MAF-RQS transform with its elementwise directions swapped, :mod:`caloflow.bench.nflows_reference`) with a fresh
``ReversePermutation`` in even slots and ``Permutation(teacher's random permutation)`` in odd slots, their
hidden widths the students' (DS2 flow-3: 384), dropout 0. At ``paper`` size the chain (flow-1 + the two
students) has the published 24 519 512 (DS2) / 95 088 152 (DS3) parameters; the nflows teachers are built only
to hand their permutations to the students, as the reference does, and are not kept.

Generation is the reference's ``generate_flow_{1,2,3}`` order (note 2.8), run by the same loop as ours
(:class:`~caloflow.families.icaloflow.sampler.GenerationChain`: flow-1, the energy cut, flow-2 with
[y0, logit(E_0 / s) / 4], then 44 sequential flow-3 calls whose context [y0, logit(E_n / s),
logit(E_{n-1} / s), logit(normalise(previous layer + U[0, 5e-3) MeV)), one-hot(n - 1)] is concatenated at
every step, clamp, x E_n without renormalisation, cut at the reference's ``--threshold_cut`` 1.5e-2 MeV).
Where it cannot or should not be the reference to the letter:

* float32 (the reference runs float64; the comparison asked for is float32, same threads, same run);
* the base noise and the dequantisation noise are inputs (the project's noise layout) instead of being drawn
  inside ``Flow.sample`` and by ``torch.rand``: the dequantisation uniform is the normal CDF of its noise
  columns, one ``erf`` per voxel, so both sides get the same noise and random numbers are timed on neither;
* the reference's per-step context pieces y0, logit(E_n / s) and logit(E_{n-1} / s) are computed once for
  all 44 steps (three columns: negligible beside the MADE passes; the per-step concatenation is kept);
* the energy scale ``s`` is the run's (6.5e4 MeV, the reference's, for untrained builds).

:func:`copy_chain_weights` loads our flows' weights, masks and permutations into the reference, which is how
``tests/test_icaloflow_bench.py`` shows that it and our fast chain compute the same showers for the same noise.
"""

from __future__ import annotations

from typing import Any, cast

from torch import Tensor, nn

from caloflow.bench.nflows_reference import _nflows, _rqs, copy_weights, reference_student
from caloflow.families.icaloflow.context import Conditioning
from caloflow.families.icaloflow.presets import FlowSpec, ICaloFlowPreset, StudentSpec
from caloflow.families.icaloflow.sampler import CUT_FRACTION, ICaloFlowSampler
from caloflow.flows import Flow

__all__ = ["REFERENCE_CUT_MEV", "ReferenceChain", "copy_chain_weights", "reference_chain", "reference_teacher"]

REFERENCE_CUT_MEV = 1.5e-2
"""The reference's ``--threshold_cut`` (ours: 0.99 x the dataset threshold, 0.0149985 MeV)."""


def reference_teacher(features: int, context: int, hidden: int, n_hidden_blocks: int, n_blocks: int, bins: int) -> Any:
    """``build_flow``: [MAF-RQS, Reverse (even i) / Random (odd i) permutation] x ``n_blocks``, last one deleted."""
    t = _nflows()
    layers: list[nn.Module] = []
    for i in range(n_blocks):
        layers.append(_rqs(features, hidden, context, n_hidden_blocks, 0.0, bins))
        if i < n_blocks - 1:
            layers.append(t.ReversePermutation(features) if i % 2 == 0 else t.RandomPermutation(features))
    return t.CompositeTransform(layers)


def _student_of(teacher: Any, spec: StudentSpec, teacher_spec: FlowSpec, preset: ICaloFlowPreset) -> Any:
    """``build_flow_student``: IAF blocks, Reverse in even slots, the teacher's random permutations in odd ones."""
    features = teacher._transforms[0].autoregressive_net.initial_layer.in_features
    context = teacher._transforms[0].autoregressive_net.context_layer.in_features
    reverse = _nflows().ReversePermutation
    permutations = [
        reverse(features)._permutation if i % 2 == 0 else teacher._transforms[2 * i + 1]._permutation
        for i in range(teacher_spec.n_blocks - 1)
    ]
    return reference_student(
        permutations,
        features,
        context,
        preset.hidden(spec, features),
        n_blocks=teacher_spec.n_blocks,
        bins=preset.bins,
        n_hidden_blocks=teacher_spec.n_hidden_blocks,
        dropout=0.0,
    )


class _Sampled(nn.Module):
    """An nflows transform seen as a flow: ``sample(z, c)`` is its inverse (what ``nflows.flows.Flow.sample``
    does after drawing the base noise)."""

    def __init__(self, transform: nn.Module) -> None:
        super().__init__()
        self.transform = transform

    def sample(self, z: Tensor, c: Tensor) -> Tensor:
        x, _ = cast(Any, self.transform).inverse(z, c)
        return cast(Tensor, x)


class ReferenceChain(ICaloFlowSampler):
    """``forward(incident_energy_mev (B, 1), noise (B, n)) -> showers_mev (B, V)`` with nflows flows, float32."""

    def __init__(
        self, flow1: nn.Module, student2: nn.Module, student3: nn.Module, cond: Conditioning, cut_mev: float
    ) -> None:
        f1, f2, f3 = (cast(Flow, _Sampled(f)) for f in (flow1, student2, student3))
        super().__init__(f1, f2, f3, cond, cut_mev / CUT_FRACTION, renormalise=False)
        self.cut_mev = cut_mev

    def transforms(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        """The nflows transforms of flow-1, the flow-2 student and the flow-3 student."""
        return cast(
            tuple[nn.Module, nn.Module, nn.Module], tuple(f.transform for f in (self.flow1, self.flow2, self.flow3))
        )


def reference_chain(preset: ICaloFlowPreset, cond: Conditioning, cut_mev: float = REFERENCE_CUT_MEV) -> ReferenceChain:
    """The nflows generation chain of ``preset`` (fresh weights; build under ``torch.device("meta")`` to count)."""
    flow1 = reference_teacher(
        cond.n_layers, 1, preset.hidden(preset.flow1, cond.n_layers), preset.flow1.n_hidden_blocks,
        preset.flow1.n_blocks, preset.bins,
    )  # fmt: skip
    students: list[nn.Module] = []
    for spec, teacher_spec, context in (
        (preset.student2, preset.flow2, 2),
        (preset.student3, preset.flow3, cond.flow3_context_size),
    ):
        teacher = reference_teacher(
            cond.layer_size, context, preset.hidden(teacher_spec, cond.layer_size), teacher_spec.n_hidden_blocks,
            teacher_spec.n_blocks, preset.bins,
        )  # fmt: skip
        students.append(_student_of(teacher, spec, teacher_spec, preset))
    return ReferenceChain(flow1, students[0], students[1], cond, cut_mev).float().eval().requires_grad_(False)


def copy_chain_weights(reference: ReferenceChain, sampler: ICaloFlowSampler) -> None:
    """Load ``sampler``'s flow-1 and students (weights, masks, permutations) into ``reference`` (same shapes)."""
    flow1, student2, student3 = reference.transforms()
    copy_weights(flow1, sampler.flow1, iaf=False)
    copy_weights(student2, sampler.flow2, iaf=True)
    copy_weights(student3, sampler.flow3, iaf=True)
