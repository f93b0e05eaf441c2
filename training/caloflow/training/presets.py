"""Architectures and schedules: ``paper`` (the published CaloFlow settings), ``small`` and ``tiny``.

``paper`` follows the method doc section 4.5. Schedules are expressed per epoch and turned into step
counts from the loader length at run time (the reference hard-codes ``steps_per_epoch`` = 424/423/484 and
``step_size_up`` = 850, which break silently when the batch size or the data size change); 850 steps of
a 424-step epoch are written as ``850 / 424`` epochs here.

One deliberate deviation: the published pion student has H = 500 < D - 1 = 532, so its MADE cannot
connect the last 32 outputs to every earlier input (method doc 3.4). Our ``paper`` pion student uses
H = 532 = D - 1, the smallest width with full autoregressive coverage: 56 851 832 parameters instead of
the published 53 310 072 (``caloflow train all --particle pion --preset paper --dry-run``).

``small`` is what the demo models use: it trains on 2 CPU cores in well under an hour per particle and
still gives recognisable showers. Its flow-II hidden width is D - 1 (the smallest exact MADE), with fewer
blocks and epochs. ``tiny`` trains in seconds, for tests; it is not expected to be good.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Literal, TypeVar

ScheduleKind = Literal["onecycle", "cyclic", "constant"]
PresetName = Literal["paper", "small", "tiny", "full", "tiny-full"]
"""Every family's preset names; ``full`` and ``tiny-full`` are L2LFlows' full-grid presets."""
PRESET_NAMES: tuple[PresetName, ...] = ("paper", "small", "tiny")


@dataclass(frozen=True)
class Schedule:
    """Optimiser and learning-rate schedule; step counts derive from ``steps_per_epoch`` at run time."""

    batch_size: int
    epochs: int
    lr: float = 1e-4
    kind: ScheduleKind = "onecycle"
    max_lr: float = 1e-3
    pct_start: float = 0.4
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = True
    cycle_epochs: float = 850 / 424
    """CyclicLR half-cycle (``step_size_up``) in epochs."""
    base_lr: float = 5e-5
    max_train_batches: int | None = None
    """Cap on batches per epoch (``tiny`` only), so tests run in seconds on any file size."""
    base_momentum: float = 0.85
    """OneCycle's lowest Adam beta1 (iCaloFlow's flow-3 student uses 0.80); the highest is 0.95."""


@dataclass(frozen=True)
class Flow1Config:
    hidden: int = 64
    n_hidden_blocks: int = 2
    n_blocks: int = 6
    schedule: Schedule = field(default_factory=lambda: Schedule(batch_size=200, epochs=100))


@dataclass(frozen=True)
class TeacherConfig:
    hidden: int
    n_blocks: int = 8
    n_hidden_blocks: int = 1
    dropout: float = 0.05
    schedule: Schedule = field(default_factory=lambda: Schedule(batch_size=200, epochs=100))


@dataclass(frozen=True)
class StudentConfig:
    hidden: int
    dropout: float = 0.05
    beta: float = 0.5
    """Weight of the data (x) path; the latent (z) path gets 1 - beta (reference: 0.5)."""
    kl_eval_size: int = 2000
    """Held-out conditions and noise for the KL model-selection proxy (fixed, eval mode)."""
    nll_eval_size: int = 500
    """Validation showers for the slow-direction student NLL quality gate."""
    schedule: Schedule = field(default_factory=lambda: Schedule(batch_size=175, epochs=100))
    match_teacher_bias: bool = True
    """Start the student from the teacher's mean spline parameters per block (``distillation.match_output_bias``)."""


@dataclass(frozen=True)
class Preset:
    name: PresetName
    particle: str
    flow1: Flow1Config
    teacher: TeacherConfig
    student: StudentConfig
    bins: int = 8
    tail_bound: float = 14.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _paper(particle: str, n_voxels: int) -> Preset:
    if particle == "photon":
        teacher = TeacherConfig(
            hidden=378,
            schedule=Schedule(batch_size=200, epochs=100, kind="cyclic", base_lr=5e-5, max_lr=2e-3),
        )
        student = StudentConfig(hidden=736, schedule=Schedule(batch_size=175, epochs=100))
    else:
        # the published pion teacher is as wide as its input: H = D
        teacher = TeacherConfig(hidden=n_voxels, schedule=Schedule(batch_size=500, epochs=100, pct_start=0.45))
        # H = D - 1 instead of the published 500 (< D - 1): every voxel sees every earlier one (module docstring)
        student = StudentConfig(hidden=n_voxels - 1, schedule=Schedule(batch_size=175, epochs=150, div_factor=50.0))
    return Preset("paper", particle, Flow1Config(), teacher, student)


def _small(particle: str, n_voxels: int) -> Preset:
    """Sized for 2 CPU cores and for the 25 MB budget of the committed demo models: 3 blocks of 4-bin
    splines, H = D - 1 (the narrowest exact MADE). Measured for the demo models (``make models``: both
    particles at once, one thread each, on a machine shared with other work): 69 min (photons) and
    87 min (pions) wall; per shower with 2 threads, photon teacher ~0.9 ms and student 3-9 ms. Version 3
    (students start from the teacher's mean parameters): 61 and 72 min wall, ~13 of them paused."""
    pion = particle == "pion"
    flow1 = Flow1Config(schedule=Schedule(batch_size=500, epochs=20))
    teacher = TeacherConfig(
        hidden=n_voxels - 1,
        n_blocks=3,
        dropout=0.0,
        schedule=Schedule(batch_size=256, epochs=5 if pion else 6, pct_start=0.3),
    )
    student = StudentConfig(
        hidden=n_voxels - 1,
        dropout=0.0,
        nll_eval_size=200,
        schedule=Schedule(batch_size=256, epochs=6, max_train_batches=100 if pion else 120, pct_start=0.3),
    )
    return Preset("small", particle, flow1, teacher, student, bins=4)


def _tiny(particle: str, n_voxels: int) -> Preset:
    quick = Schedule(batch_size=64, epochs=2, max_train_batches=4, pct_start=0.3)
    flow1 = Flow1Config(hidden=16, n_hidden_blocks=1, n_blocks=2, schedule=quick)
    teacher = TeacherConfig(hidden=n_voxels - 1, n_blocks=2, dropout=0.0, schedule=quick)
    student = StudentConfig(hidden=n_voxels - 1, dropout=0.0, kl_eval_size=64, nll_eval_size=8, schedule=quick)
    return Preset("tiny", particle, flow1, teacher, student, bins=4)


def get_preset(name: str, particle: str, n_voxels: int) -> Preset:
    """The preset ``name`` for ``particle`` whose flow-II has ``n_voxels`` dimensions."""
    if name == "paper":
        return _paper(particle, n_voxels)
    if name == "small":
        return _small(particle, n_voxels)
    if name == "tiny":
        return _tiny(particle, n_voxels)
    raise ValueError(f"unknown preset {name!r}; expected one of {list(PRESET_NAMES)}")


P = TypeVar("P", bound=Preset)


def with_epochs(preset: P, *, flow1: int | None, teacher: int | None, student: int | None) -> P:
    """Override epoch counts (command-line ``--epochs-*``), keeping everything else (any family's preset)."""

    def schedule(s: Schedule, epochs: int | None) -> Schedule:
        return s if epochs is None else replace(s, epochs=epochs)

    return replace(
        preset,
        flow1=replace(preset.flow1, schedule=schedule(preset.flow1.schedule, flow1)),
        teacher=replace(preset.teacher, schedule=schedule(preset.teacher.schedule, teacher)),
        student=replace(preset.student, schedule=schedule(preset.student.schedule, student)),
    )
