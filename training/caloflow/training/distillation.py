"""Probability density distillation of the MAF teacher into the IAF student, "fully guided" (method doc 4.4).

Per batch, with chi2(a, b) = mean over the batch of the sum over features of (a - b)^2:

* data (x) path: z_T = teacher(x | y); x_S = student^-1(z_T | y);
  L_x = w_c [chi2(x_S, x) + sum_i chi2(h^S_i, h^T_i)] + w_p sum_i chi2(p^S_i, p^T_i)
* latent (z) path: eps ~ N(0, 1), labels y' from sampled incident energies and flow-I layer energies;
  x^ = student^-1(eps | y'); z^ = teacher(x^ | y'); L_z likewise with eps in place of x;
* loss = (1 - beta) L_z + beta L_x,

where h_i are the coordinates between blocks and p_i the raw MADE outputs (spline parameters) of block i,
student block i matched to teacher block i.

Faithful to the published student, with these documented choices:
* The reference sums over every transform output, so the x- and z-MSE and each intermediate coordinate
  appear twice (before and after each permutation; equal values) and the spline parameters once. We
  write that as weights ``coordinates = 2``, ``params = 1`` instead of double counting: the same loss,
  and the weights can be changed.
* Nothing is detached in the z-path (gradients flow through the teacher's activations into the student),
  as in the reference; the teacher's parameters are frozen (``requires_grad_(False)``), which the
  reference forgot, wasting weight gradients.
* Each MADE is evaluated once per block (the reference evaluated it twice to collect p; with dropout the
  two calls used different masks).
* Incident energies of the z-path are drawn from the training file's own E_inc values. For photons this is
  the reference's discrete Dataset 1 distribution; for pions the reference drew uniform-linear energies
  (76 % above 1 TeV, weakness 7.2.6), which we replace by the data distribution as well.
* Model selection uses the KL proxy on a *fixed* held-out set of conditions and noise in eval mode
  (the reference averaged it over training batches with dropout on).

Does the loss converge? Yes, on a problem small enough to train to convergence:
``tests/test_distillation_convergence.py`` (4-d conditional density, MAF teacher, this module's loss and
the project's optimiser/OneCycle) reaches a student NLL 1.1 % (seed 1) and 2.2 % (seed 2) above the
teacher's and a student-vs-teacher classifier AUC of 0.506 / 0.495. Matching student block i to teacher
block i + 1 fails it (gap 9.2 %, AUC 0.557); dropping the parameter MSE, the x path or the z path, or
detaching the student's parameters, does not (gaps 1.7-2.6 %, AUC 0.50-0.53): on that problem the
coordinate MSEs of either path alone suffice. Figures for each mutation: the test's docstring.

Why the ``small`` photon demo student is far from its teacher (issue 18; measured on the photon stand-in,
not Geant4, one thread on a 2-core machine shared with four other jobs, so only CPU seconds and ratios):

* **Step budget.** ``small`` distils for 6 epochs x 120 batches = 720 optimiser steps; the published
  student took 100 x 484 = 48 400 (67x more). Its three-phase OneCycle (pct 0.3, div 25, final 1e4)
  rises 4e-5 -> 1e-3 over steps 0-216, falls back to 4e-5 by step 432 and anneals to 4e-9 over the last
  288 (40 %); only about steps 110-330 see LR >= 5e-4. Measured cost: 60 photon student steps at
  batch 64 (H = 367) with three evaluations took 28.7 CPU s, i.e. roughly 1.5-2 CPU s per batch-256 step,
  so 48 400 steps would be about 20-27 CPU hours on this CPU. The KL proxy and the losses were still
  falling when the LR annealed (below): the demo student is step-limited.
* **Loss balance** (one-epoch teacher, batch 64, preset schedule compressed to 60 steps; per-term gradient
  norms w.r.t. the student's weights, each term with its beta and weight): at step 1 x-coordinates 86 511,
  z-coordinates 44 070, z-params 5 352, x-params 2 564 - the coordinate MSEs (summed over 368 voxels and 4
  intermediates) drive the first steps 16x harder than the parameter MSEs; by step 20 they are balanced
  (18 369 / 16 311 / 13 590 / 11 610) and stay so at step 40. Terms at step 20 -> 40: x-coordinates 54 434
  -> 16 736, x-params 53 686 -> 29 384, z-coordinates 16 634 -> 4 029, z-params 11 654 -> 12 431; total
  gradient norm 58 771 -> 23 848; held-out KL proxy 1 230 -> 1 079 -> 1 053 nats (step 60, LR annealed to
  1.6e-7). No term is starved or exploding.
* **Schedule, same 60 steps** (batch 64): a two-phase OneCycle (5 % warm-up to 1e-3, cosine down, no
  40 % tail at <= 4e-5) ends at KL proxy 726 against the three-phase preset's 1 053 (-31 %), with every
  term lower (x-coordinates 10 597 vs 15 321, x-params 12 172 vs 25 140, z-coordinates 2 295 vs 3 359,
  z-params 5 308 vs 10 556) and layers 1-4 RMS logit errors 3.2 / 2.2 / 2.3 / 2.5 vs 3.7 / 2.8 / 2.7 /
  3.1; layer 0 stays at 7.7 and its sparsity at 0.288 under both. One seed, one short run each: a lead
  for the ``small`` student schedule (not changed here), not a measured fix of the demo models.
* **The excess filled voxels are a layer-0 logit error of the student, not threshold handling or noise.**
  Passing 500 validation showers through the teacher (x -> z_T) and back through the student
  (z_T -> x_S, the x path) and post-processing both with the same layer energies: data/teacher layer-0
  sparsity 0.762, student 0.288 (the demo's 0.76 vs 0.38); 47 % of all layer-0 voxels are empty in the
  data and filled by the student, none the other way. About 32 % of validation showers have an empty layer 0
  (kept empty: the layer energy is 0), so the student fills nearly every empty voxel of a non-empty
  layer 0. Median non-empty layer-0 energy ~50 MeV: an empty voxel's logit sits near
  log(1e-6 + 1e-3 / 50) = -10.8 (the 1 keV dequantisation noise), the 10 keV threshold at about -8.5, a
  margin of ~2.3, while the student's layer-0 RMS logit error is ~8 (its mean over data-empty voxels is
  +8.1, an average that also counts the voxels of empty layers). So the threshold and the noise do what
  they should; the student's layer-0 error is the cause. The RMS logit
  error per layer after steps 1 -> 20 -> 40 -> 60: layer 0 7.4 -> 7.9 -> 8.0 -> 8.0 (the fresh student's
  error, never reduced; its layer-0 sparsity is 0.289 after one step), layers 1-4 11.5 -> 4.4 -> 3.8 -> 3.7,
  11.7 -> 3.2 -> 2.8 -> 2.8, 6.1 -> 4.3 -> 2.7 -> 2.7, 6.4 -> 3.7 -> 3.2 -> 3.1. The student's own samples
  (flow-I conditions) agree: layer-0 sparsity 0.26, 5.9 % of layer-0 voxels in (10, 100] keV (data: 0 %).

Not found: a defect in the shared loss, schedule or threshold code (the loss and its gradients are
unchanged by the ``distillation_terms`` split, checked bit for bit with dropout on).

**Why layer 0 alone did not improve: the MADE gives the first features of a block almost no parameters,
and Adam moves those by about the learning rate per step** (issue 18; same teacher, data, seed, batch 64
and compressed preset schedule as above, ``--threads 1`` under heavy contention, so CPU seconds only).
In a MADE with nflows' sequential degrees and H = D - 1 (``small``; ``flows/made.py``) the output of the
feature at position k of a block reads exactly k hidden units: position 0 is the output bias alone
(constant, blind to E_inc and the layer energies), positions 1-7 read 1-7 units. The layer-wise
permutations keep calorimeter layer 0 at positions 0-7 of *every* block (voxels 0-7, 7-0, then
3 5 1 2 7 6 0 4), so all of layer 0's spline parameters, in teacher and student alike, come from 0-7
weights plus a bias each (layer 1 voxels: 8-167). Measured:

* The student's layer-0 parameters do not move. Their RMS error against the teacher's, block 0 positions
  0-7: 0.06 0.15 0.42 0.79 0.79 0.91 1.08 1.32 after step 1 and *the same to two decimals* after 20, 40
  and 60 steps, although their output-bias gradients are as large as layer 1's or larger (step 1: 224 to
  4 300 per position vs a layer-1 mean of 403); layer 1's error falls 2.07 -> 1.50 meanwhile. Under Adam a
  bias moves by about the learning rate per step, ~0.02 over these 60 steps and ~0.3 over the 720 of
  ``small``, while the teacher's layer-0 splines sit ~2 logits from a fresh student's (block 0 position 7
  width logits -2.05 1.94 1.77 1.92). Small parameter errors are large coordinate errors there: the
  teacher's layer-0 splines are steep (the empty-voxel spike), and the x-path error grows block by block
  (layer-0 RMS per voxel 0.2-2.0 after student block 2, 1.3-3.5 after block 1, 3.0-8.8 after block 0).
* The teacher has the same limitation: its layer-0 parameters hardly depend on the shower (variance over
  500 validation showers 0.00-1.35 per position in block 0, of which 0.0003-0.007 separates noise-only
  from non-empty layers 0), its layer-0 latent is not standard normal (RMS 1.47 against 1.0) and its own
  samples have layer-0 sparsity 0.507 against the data's 0.762 (one-epoch teacher).
* Not the spline tails: layer-0 coordinates stay inside [-14, 14] in every block (x from -13.8, z_T
  between -5.0 and 2.4 for 98 % of voxels), and the gradients are not zero.

The fix in the shared code: :func:`match_output_bias` (on by default for new students:
``StudentConfig.match_teacher_bias``; ``training/pipeline.py`` runs it on 2 000 training showers before the
first step) sets each student block's output bias so that its mean MADE output on the x path equals the
teacher block's. Same seed and steps, without -> with: layer-0 RMS logit error after 1 / 20 / 60 steps
7.43 / 7.89 / 7.98 -> 2.68 / 2.57 / 2.57, layers 1-4 at step 60 3.75 / 2.77 / 2.66 / 3.12 -> 1.87 / 1.88 /
2.27 / 2.10; x-path layer-0 sparsity 0.288 -> 0.617 (data 0.762); held-out KL proxy (500 conditions)
1 053 -> 329 nats at step 60 (3 069 -> 511 after one step); 28 vs 34 CPU s for the 60 steps including
evaluations. Layer 0 still stops improving after the first step (block 0 position 7 parameter error 0.35
at step 60): the shower-dependent part of its parameters is still learnt at the slow rate. Tried and not
adopted (the code was dropped again): an unmasked, zero-initialised context-to-output term in the student's
MADEs makes layer 0 worse (RMS 10.2 / 9.4 at steps 20 / 40, KL proxy 1 277 / 1 049); it is
not measured on a teacher trained with it.

The retrained DS1 demo students (``make models``, the ``small`` preset, same data, seed and - bit for bit - the
same teachers; the README's eval-demo table): data NLL above the teacher's photon +1 232 % -> +107 %, pion
+81 % -> +8.6 %; classifier student vs teacher (N = 10 000) photon AUC low/high 0.976/0.859 -> 0.919/0.845, pion
0.827/0.746 -> 0.664/0.613. Full-length curves of the held-out KL proxy, one value per epoch of 120 (photon) /
100 (pion) steps: 349 161 113 103 100.5 100.0 and 267 117 77 69 67.4 67.0 - the last three epochs, at learning
rates below 4e-5, gain 3 %; the photon student is still step-limited there. Not measured: the classifier AUC
per epoch.

Reproduce: ``caloflow data standin --particle photon --seed 1``; ``caloflow train flow1``/``teacher``
``--preset small --epochs-flow1 5 --epochs-teacher 2 --threads 1`` (stopped after epoch 1); then a
throwaway script, not committed (the issue 18 notes describe them): a fresh ``make_student``, the student
stage's batches and z-path labels, per step ``distillation_terms(...).figures()``, per term
``torch.autograd.grad`` norms, ``kl_proxy`` on 500 fixed conditions, x-path reconstruction errors per
layer, voxel, block and position, and sparsities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from caloflow import preprocessing as pp
from caloflow.flows import Flow, TraceOutput
from caloflow.flows.flow import standard_normal_log_prob
from caloflow.training.objectives import sample_layer_energies


@dataclass(frozen=True)
class GuidanceWeights:
    coordinates: float = 2.0
    """Weight of the x/z and intermediate-coordinate MSEs (the reference counts each twice)."""
    params: float = 1.0
    """Weight of the per-block spline-parameter MSEs (raw MADE outputs)."""


def chi2(a: Tensor, b: Tensor) -> Tensor:
    """Sum over features, mean over the batch, of (a - b)^2."""
    return (a - b).square().flatten(1).sum(dim=1).mean()


@dataclass(frozen=True)
class GuidanceTerms:
    """The unweighted sums of one path: coordinate MSEs (x side, between blocks, z side), parameter MSEs."""

    coordinates: Tensor
    params: Tensor

    def weighted(self, weights: GuidanceWeights) -> Tensor:
        return weights.coordinates * self.coordinates + weights.params * self.params


def guidance_terms(student: TraceOutput, teacher: TraceOutput) -> GuidanceTerms:
    """Coordinates and spline parameters, student block i against teacher block i."""
    coordinates = sum(
        (chi2(s, t) for s, t in zip(student.intermediates, teacher.intermediates, strict=True)),
        start=torch.zeros((), device=student.out.device),
    )
    params = sum(
        (chi2(s, t) for s, t in zip(student.params, teacher.params, strict=True)),
        start=torch.zeros((), device=student.out.device),
    )
    return GuidanceTerms(coordinates, params)


def guided_loss(student: TraceOutput, teacher: TraceOutput, weights: GuidanceWeights) -> Tensor:
    """Coordinates (x side, between blocks, z side) and spline parameters, block by block, weighted."""
    return guidance_terms(student, teacher).weighted(weights)


@dataclass(frozen=True)
class LatentBatch:
    """Conditions and base noise for the z-path (or for the held-out KL set)."""

    noise: Tensor
    labels: Tensor


def sample_latent_batch(
    flow1: Flow,
    incident_pool: Tensor,
    batch_size: int,
    prep: pp.Preprocessing,
    generator: torch.Generator | None,
) -> LatentBatch:
    """Incident energies drawn from ``incident_pool`` (B, 1), layer energies from flow-I, fresh noise."""
    device = incident_pool.device
    pick = torch.randint(len(incident_pool), (batch_size,), generator=generator, device=device)
    incident = incident_pool[pick]
    with torch.no_grad():
        energies = sample_layer_energies(flow1, incident, prep, generator)
    labels = pp.flow2_labels(incident, energies, prep.label_epsilon)
    noise = torch.randn(batch_size, prep.n_voxels, generator=generator, device=device, dtype=incident.dtype)
    return LatentBatch(noise, labels)


def match_output_bias(student: Flow, teacher: Flow, x: Tensor, labels: Tensor) -> None:
    """Shift each student block's output bias so that its mean raw MADE output on the x path (reading the
    teacher's z-side coordinates of that block) equals the teacher block's mean, over the batch ``x``.

    Run once on a fresh student. A feature's spline parameters that vary little between showers are then
    matched from the first step; without it they must be learnt through the output bias and the few hidden
    units the MADE gives the first features of a block, which Adam moves by about the learning rate per
    step (the module docstring: the photon student's layer 0).
    """
    was_training = student.training
    student.eval()
    with torch.no_grad():
        trace = teacher.forward_trace(x, labels)
        for i in range(student.n_blocks):
            made = student.block(i).autoregressive_net
            own = made(trace.intermediates[i + 1], labels)
            made.final_layer.bias.add_((trace.params[i] - own).mean(dim=0).flatten())
    student.train(was_training)


def distillation_loss(
    student: Flow,
    teacher: Flow,
    x: Tensor,
    labels: Tensor,
    latent: LatentBatch,
    *,
    beta: float,
    weights: GuidanceWeights,
) -> Tensor:
    """``(1 - beta) L_z + beta L_x`` for one batch (see the module docstring)."""
    return distillation_terms(student, teacher, x, labels, latent).total(beta=beta, weights=weights)


@dataclass(frozen=True)
class DistillationTerms:
    """The four unweighted terms of one batch, for the loss and for learning curves of each term."""

    x_path: GuidanceTerms
    z_path: GuidanceTerms

    def total(self, *, beta: float, weights: GuidanceWeights) -> Tensor:
        return (1.0 - beta) * self.z_path.weighted(weights) + beta * self.x_path.weighted(weights)

    def figures(self) -> dict[str, float]:
        return {
            "x_coordinates": float(self.x_path.coordinates.detach()),
            "x_params": float(self.x_path.params.detach()),
            "z_coordinates": float(self.z_path.coordinates.detach()),
            "z_params": float(self.z_path.params.detach()),
        }


def distillation_terms(
    student: Flow, teacher: Flow, x: Tensor, labels: Tensor, latent: LatentBatch
) -> DistillationTerms:
    """The x path (teacher(x) -> student^-1) and the z path (student^-1(eps) -> teacher) of one batch."""
    teacher_x = teacher.forward_trace(x, labels)
    student_x = student.inverse_trace(teacher_x.out, labels)
    student_z = student.inverse_trace(latent.noise, latent.labels)
    teacher_z = teacher.forward_trace(student_z.out, latent.labels)
    return DistillationTerms(guidance_terms(student_x, teacher_x), guidance_terms(student_z, teacher_z))


def kl_proxy(student: Flow, teacher: Flow, latent: LatentBatch) -> Tensor:
    """Mean of log q_S(x^) - log p_T(x^) over student samples x^ = S^-1(eps): a KL(q_S || p_T) estimate."""
    x_hat, student_ladj, _, _ = student.inverse_trace(latent.noise, latent.labels)
    log_q = standard_normal_log_prob(latent.noise) - student_ladj
    return (log_q - teacher.log_prob(x_hat, latent.labels)).mean()
