"""``make eval-demo``: the demo models evaluated against independent stand-in files, and a summary table.

Per particle:

1. the reference ``<data>/standin_<particle>_2.h5`` (stand-in seed 2, full Dataset 1 size; the demo
   models were trained on seed 1) is written if missing;
2. the student: the repository's default ``caloflow_<particle>`` version (ONNX, through the server's
   verified runtime, so what is evaluated is what is served) generates showers at the first ``count``
   reference incident energies, with seeded standard-normal noise;
3. the teacher, when its training run ``<runs>/small_<particle>`` is present: ``teacher_count`` showers
   at the first reference energies (the MAF inverts one voxel per pass; its fast form,
   :mod:`caloflow.export.fast`, makes the default 10 000 showers a matter of minutes on a CPU);
4. ``evaluate`` for student vs reference (``count`` showers, and ``teacher_count`` when that is fewer),
   teacher vs reference, and student vs teacher (the first ``teacher_count`` student showers, whose
   energies equal the teacher's); only rows of the same N compare;
5. ``<out>/summary.md``: one row per comparison, marked as stand-in data and small-preset models.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from caloflow.data.hdf5 import ShowerWriter, read_incident_energies
from caloflow.evaluation.classifier import ClassifierSettings
from caloflow.evaluation.config import EvaluationConfig
from caloflow.evaluation.errors import EvaluationError
from caloflow.evaluation.run import EvaluationResult, evaluate, summary_row
from caloflow.evaluation.served import write_served_showers

__all__ = ["DemoConfig", "run_demo"]

logger = logging.getLogger(__name__)
Array = NDArray[np.float64]
_BATCH = 1000


@dataclass(frozen=True)
class DemoConfig:
    repo: Path = Path("model_repo")
    runs_dir: Path = Path("runs")
    data: Path = Path("data")
    out: Path = Path("eval-demo")
    particles: tuple[str, ...] = ("photon", "pion")
    count: int = 10_000
    teacher_count: int = 10_000
    reference_seed: int = 2
    seed: int = 0
    runs: int = 1
    device: str = "auto"
    classifier: ClassifierSettings = field(
        default_factory=lambda: ClassifierSettings(hidden=256, epochs=30, batch_size=100)
    )
    threads: int | None = 1
    fpd_min_samples: int = 5_000
    fpd_max_samples: int = 20_000
    kpd_batch_size: int = 5_000
    progress: bool = True


@dataclass(frozen=True)
class _Row:
    particle: str
    generated: str
    reference: str
    n: int
    figures: dict[str, Any]


def run_demo(config: DemoConfig) -> Path:
    """Run every step for every particle; returns the path of ``summary.md``."""
    rows: list[_Row] = []
    notes: list[str] = []
    for particle in config.particles:
        if particle not in ("photon", "pion"):
            raise EvaluationError(f"--particles: unknown particle {particle!r}")
        particle_rows, note = _run_particle(config, particle)
        rows += particle_rows
        notes += [note] if note else []
    path = config.out / "summary.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_summary(config, rows, notes))
    return path


def _run_particle(config: DemoConfig, particle: str) -> tuple[list[_Row], str | None]:
    out = config.out / particle
    reference = _reference_file(config, particle)
    energies = read_incident_energies(reference)[: config.count].astype(np.float64)
    student = _student_file(config, particle, energies, out / "student.h5")
    rows = [
        _evaluate(config, particle, student, reference, "student", "stand-in reference", config.count, out / "student")
    ]
    run_dir = config.runs_dir / f"small_{particle}"
    if not (run_dir / "run.json").is_file():
        return rows, f"{particle}: teacher run not present ({run_dir}), teacher rows skipped"
    n_teacher = min(config.teacher_count, len(energies))
    teacher = _teacher_file(config, run_dir, energies[:n_teacher], out / "teacher.h5")
    if n_teacher < config.count:  # the student at the teacher's N: the like-for-like row
        small = out / "student_small"
        rows.append(_evaluate(config, particle, student, reference, "student", "stand-in reference", n_teacher, small))
    rows.append(
        _evaluate(config, particle, teacher, reference, "teacher", "stand-in reference", n_teacher, out / "teacher")
    )
    rows.append(
        _evaluate(config, particle, student, teacher, "student", "teacher", n_teacher, out / "student_vs_teacher")
    )
    return rows, None


def _reference_file(config: DemoConfig, particle: str) -> Path:
    from caloflow.data.standin import write_standin_file

    path = config.data / f"standin_{particle}_{config.reference_seed}.h5"
    if not path.is_file():
        logger.info("writing the stand-in reference %s (seed %d)", path, config.reference_seed)
        write_standin_file(particle, path, seed=config.reference_seed, scale=1.0, progress=config.progress)
    if len(read_incident_energies(path)) < config.count:
        raise EvaluationError(f"{path} holds fewer than --count {config.count} showers")
    return path


def _student_file(config: DemoConfig, particle: str, energies: Array, path: Path) -> Path:
    """Showers from the repository's default version of ``caloflow_<particle>``, via the verified runtime."""
    from caloflow_repo import ModelRepository
    from caloflow_server.runtime import load_runtime

    device = "cuda" if config.device == "auto" and _cuda() else ("cpu" if config.device == "auto" else config.device)
    model = load_runtime(
        ModelRepository(config.repo), f"caloflow_{particle}", device=device, intra_op_threads=config.threads
    )
    write_served_showers(
        model, energies, path, seed=config.seed, batch=_BATCH, purpose="student samples", progress=config.progress
    )
    return path


def _teacher_file(config: DemoConfig, run_dir: Path, energies: Array, path: Path) -> Path:
    """Teacher (MAF) showers from the training run, sampled in the fast form (one pass per voxel)."""
    import torch

    from caloflow.training.run_dir import load_run
    from caloflow.training.sampling import iter_samples

    device = torch.device(
        "cuda" if config.device == "auto" and _cuda() else ("cpu" if config.device == "auto" else config.device)
    )
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    run = load_run(run_dir, device)
    attrs = {
        "generator": "caloflow teacher",
        "run": str(run_dir),
        "seed": config.seed,
        "trained_on_standin": 1,
        "description": f"CaloFlow teacher samples from {run_dir}, trained on stand-in data (not Geant4)",
    }
    batches = iter_samples(run, energies, seed=config.seed, flow="teacher", batch_size=_BATCH, device=device)
    with ShowerWriter(path, run.prep.n_voxels, attrs=attrs, expected_rows=len(energies)) as writer:
        start = 0
        for showers in tqdm(
            batches, total=-(-len(energies) // _BATCH), desc=f"{run.particle} teacher", disable=not config.progress
        ):
            writer.append(energies[start : start + len(showers)], showers.astype(np.float64))
            start += len(showers)
    return path


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _evaluate(
    config: DemoConfig, particle: str, generated: Path, reference: Path, gen_name: str, ref_name: str, n: int, out: Path
) -> _Row:
    evaluation = EvaluationConfig(
        generated=generated,
        reference=reference,
        dataset=particle,
        out=out,
        runs=config.runs,
        seed=config.seed,
        device=config.device,
        max_showers=n,
        classifier=config.classifier,
        fpd_min_samples=config.fpd_min_samples,
        fpd_max_samples=config.fpd_max_samples,
        kpd_batch_size=config.kpd_batch_size,
        threads=config.threads,
        progress=config.progress,
    )
    result: EvaluationResult = evaluate(evaluation)
    return _Row(particle, gen_name, ref_name, len(result.reference), summary_row(result))


def _cell(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_summary(config: DemoConfig, rows: list[_Row], notes: list[str]) -> str:
    s = config.classifier
    lines = [
        "# eval-demo: demo models on stand-in data (NOT Geant4)",
        "",
        "Our figures are on stand-in data, not Geant4, with small-preset models: they are not comparable",
        "with the published CaloChallenge numbers, which are on the official Dataset 1 files.",
        "",
        "| particle | generated | reference | N | AUC low | AUC low-normed | AUC high | chi2/NDF E_tot/E_inc "
        "| FPD x1e3 | KPD x1e3 |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        f = r.figures
        cells = [r.particle, r.generated, r.reference, str(r.n), _cell(f["auc_low"]), _cell(f["auc_low_normed"])]
        cells += [_cell(f["auc_high"]), _cell(f["chi2_per_ndf"], 2), _cell(f["fpd_x1e3"], 2), _cell(f["kpd_x1e3"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"* {note}" for note in notes]
    lines += [
        f"* reference: `{config.data}/standin_<particle>_{config.reference_seed}.h5` (stand-in seed "
        f"{config.reference_seed}; the demo models were trained on seed 1), first N showers; voxels below 1 MeV cut.",
        f"* classifier: {s.hidden} wide (published: 2048), {s.epochs} epochs (published: 50), lr {s.learning_rate}, "
        f"batch {s.batch_size}, {config.runs} run(s), seed {config.seed}; split in the published proportions.",
        f"* FPD: bootstrap sizes {config.fpd_min_samples}-{config.fpd_max_samples} (published 10000-50000); KPD: "
        f"batches of {config.kpd_batch_size} (published 10000); both on the cls-high features.",
        "* student = the served ONNX model (model_repo); teacher = the MAF of the training run (fast form);",
        "  compare rows of the same N only: the classifiers and FPD depend on the number of showers.",
        "",
    ]
    return "\n".join(lines)
