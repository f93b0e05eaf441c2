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
