"""The fully guided distillation converges: a student that matches its teacher (issue 18, item 1).

A small conditional problem with real structure: y ~ U(0, 1) and four correlated coordinates, one of
them skewed (an exponential) with a y-dependent width, one a sine of another, one a y-dependent
product. The MAF teacher (``build_teacher``) trains on fresh samples for a fixed number of steps
(the test checks that a classifier cannot tell its samples from the data); the IAF student
(``build_student``) is then distilled with ``distillation.distillation_loss`` (the presets' code
path: x path, z path, coordinates and spline parameters, block i to block i) under the project's
optimiser and OneCycle schedule.

Measures, on 5 000 fresh data points and 5 000 samples of each flow at the same conditions:

* the NLL gap ``(NLL_S - NLL_T) / NLL_T`` <= 5 %. NLLs of continuous data can be negative or near
  zero, where a relative gap means nothing, so the problem is scaled for an NLL of about 2.1 nats
  (0.53 nats per dimension) and the test first asserts NLL_T >= 1 nat: 5 % is then at most
  0.027 nats per dimension;
* the project's CaloChallenge classifier (narrowed, fewer epochs) on (x, y), student vs teacher
  samples: calibrated AUC <= 0.55; and, as a precondition, teacher vs data AUC <= 0.55.

Measured (the note's mutation script with no mutation, one thread): seed 1 NLL_T 2.1856, NLL_S
2.2102, gap 1.13 %, KL proxy 0.032, AUC student/teacher 0.506, teacher/data 0.516; seed 2 NLL_T
2.1397, NLL_S 2.1863, gap 2.18 %, KL 0.039, AUC 0.495, teacher/data 0.505. This file: 64.5 CPU s,
112 s wall on the shared 2-core machine at load average ~9 (68 s + 30 s per seed).

Mutations of the loss, seed 1, run once by hand (monkeypatching ``distillation.guidance_terms`` or
``distillation_loss``; the issue 18 note has the script):

* student block i matched to teacher block i + 1 (parameter path): gap 9.16 %, AUC 0.557 -> FAILS;
* parameter MSE weight 0: gap 1.70 %, AUC 0.499 -> passes;
* no x path (beta = 0): gap 2.33 %, AUC 0.513 -> passes;
* no z path (beta = 1): gap 2.03 %, AUC 0.499 -> passes;
* student spline parameters detached (parameter MSE gives no gradient): gap 2.63 %, AUC 0.527 -> passes.

So the test catches a wrong parameter-matching path, but on this 4-d problem the coordinate MSEs of
either path alone already distil the teacher: dropping the parameter term or one path is not detected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from torch import Tensor

from caloflow.evaluation.classifier import ClassifierSettings, Split, run_classifier
from caloflow.flows import Flow, SplineConfig, build_student, build_teacher
from caloflow.training import distillation as dist
from caloflow.training.presets import Schedule
from caloflow.training.schedules import build_optimizer, build_scheduler

D, BATCH, N_EVAL = 4, 256, 5000
TEACHER_STEPS, STUDENT_STEPS = 600, 500
SEEDS = (1, 2)
MAX_RELATIVE_GAP, MAX_AUC = 0.05, 0.55
CLASSIFIER = ClassifierSettings(hidden=64, epochs=30, batch_size=250, learning_rate=1e-3)
SPLIT = Split(train=3000, test=1000, validation=1000)


def sample_data(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(x (n, 4), y (n, 1)): correlated, skewed and label-dependent."""
    y = torch.rand(n, 1, generator=generator)
    noise = torch.randn(n, D, generator=generator)
    exponential = -torch.log(torch.rand(n, generator=generator))
    x0 = 2.0 * y[:, 0] - 1.0 + 0.5 * noise[:, 0]
    x1 = 0.8 * x0 + (0.3 + 0.7 * y[:, 0]) * (exponential - 1.0)
    x2 = torch.sin(2.0 * x0) + 0.3 * noise[:, 2]
    x3 = 0.5 * x1 * x2 + 0.3 * (1.0 + y[:, 0]) * noise[:, 3]
    return torch.stack([x0, x1, x2, x3], dim=1), y


def _optimise(flow: Flow, steps: int, max_lr: float, loss: Callable[[], Tensor]) -> None:
    schedule = Schedule(batch_size=BATCH, epochs=1, max_lr=max_lr, pct_start=0.1, three_phase=False)
    optimiser = build_optimizer([p for p in flow.parameters() if p.requires_grad], schedule)
    scheduler = build_scheduler(optimiser, schedule, steps)
    flow.train()
    for _ in range(steps):
        value = loss()
        optimiser.zero_grad(set_to_none=True)
        value.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        scheduler.step()
    flow.eval()


def train_teacher(seed: int, generator: torch.Generator) -> Flow:
    spline = SplineConfig(num_bins=8, tail_bound=8.0)
    teacher = build_teacher((2, 2), context=1, hidden=32, n_blocks=3, dropout=0.0, spline=spline, seed=seed)

    def nll() -> Tensor:
        return -teacher.log_prob(*sample_data(BATCH, generator)).mean()

    _optimise(teacher, TEACHER_STEPS, 3e-3, nll)
    return teacher.requires_grad_(False)


def distil(teacher: Flow, seed: int, generator: torch.Generator) -> Flow:
    student = build_student(teacher, hidden=32, dropout=0.0, seed=seed + 1)
    weights = dist.GuidanceWeights()

    def loss() -> Tensor:
        x, labels = sample_data(BATCH, generator)
        latent = dist.LatentBatch(torch.randn(BATCH, D, generator=generator), sample_data(BATCH, generator)[1])
        return dist.distillation_loss(student, teacher, x, labels, latent, beta=0.5, weights=weights)

    _optimise(student, STUDENT_STEPS, 1e-2, loss)
    return student


@dataclass(frozen=True)
class Convergence:
    teacher_nll: float
    student_nll: float
    kl_proxy: float
    auc_student_teacher: float
    auc_teacher_data: float

    @property
    def relative_gap(self) -> float:
        return (self.student_nll - self.teacher_nll) / abs(self.teacher_nll)


def _auc(generated: Tensor, reference: Tensor, labels: Tensor, seed: int) -> float:
    def features(x: Tensor) -> NDArray[np.float64]:
        return torch.cat([x, labels], dim=1).double().numpy()

    device = torch.device("cpu")
    result = run_classifier(
        features(generated), features(reference), SPLIT, CLASSIFIER, seed=seed, device=device, progress=False
    )
    return result.auc


def measure(seed: int) -> Convergence:
    """Train the teacher, distil the student and measure both on fresh data (all seeded by ``seed``)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        teacher = train_teacher(seed, generator)
        student = distil(teacher, seed, generator)
    x, labels = sample_data(N_EVAL, generator)
    with torch.no_grad():
        teacher_samples = teacher.sample(torch.randn(N_EVAL, D, generator=generator), labels)
        student_samples = student.sample(torch.randn(N_EVAL, D, generator=generator), labels)
        kl = dist.kl_proxy(student, teacher, dist.LatentBatch(torch.randn(N_EVAL, D, generator=generator), labels))
        teacher_nll = float(-teacher.log_prob(x, labels).mean())
        student_nll = float(-student.log_prob(x, labels).mean())
    return Convergence(
        teacher_nll=teacher_nll,
        student_nll=student_nll,
        kl_proxy=float(kl),
        auc_student_teacher=_auc(student_samples, teacher_samples, labels, seed),
        auc_teacher_data=_auc(teacher_samples, x, labels, seed),
    )


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: the same figures on any machine, and no thread spinning on a shared 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("seed", SEEDS)
def test_distilled_student_matches_its_teacher(seed: int) -> None:
    result = measure(seed)
    print(result, f"relative gap {result.relative_gap:.4f}")
    # preconditions: the teacher has converged, and its NLL is far enough from 0 for a relative gap
    assert result.auc_teacher_data <= MAX_AUC, result
    assert result.teacher_nll >= 1.0, result
    assert result.relative_gap <= MAX_RELATIVE_GAP, result
    assert result.auc_student_teacher <= MAX_AUC, result
