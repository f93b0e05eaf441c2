"""``caloflow bench generate --model paper-ds2`` (``PRESET-ds2`` / ``PRESET-ds3``, PRESET one of paper, small,
tiny, or an iCaloFlow run directory): per-shower time of the iCaloFlow chains through the command's own timing
loop (interleaved rounds, median / IQR, CPU time, peak RSS, ``--warm-up-rows``, ``--json`` records).

Untrained builds (speed does not depend on the weights) at the preset's size, float32, on energies log-uniform
over the dataset's range (1 GeV - 1 TeV) and seeded noise. Formats:

* ``eager``: flow-1 + the distilled students (what is served), :class:`~caloflow.families.icaloflow.sampler.
  ICaloFlowSampler`, masks folded;
* ``fast``: the same, :mod:`caloflow.families.icaloflow.fast` (``--groups``);
* ``fast_onnx`` (what the server prefers), ``onnx``, ``torchscript``: exported as ``caloflow export`` writes
  them (compact) into a temporary directory, run by :func:`caloflow.export.runners.load_runner` (CPU);
* ``teacher``: flow-1 + the MAF teacher chain, eager (D MADE passes per block and flow call, as published);
  ``teacher_fast``: the teacher chain in the fast form (one feature's spline per pass). Their "L1 vs eager" is
  the distance between two different models, not a parity figure;
* ``--compare-reference`` adds ``nflows_reference``: the published generation chain rebuilt from nflows
  (:mod:`caloflow.families.icaloflow.nflows_reference`, the published 24 519 512 / 95 088 152 parameters at
  ``paper`` size) with our student chain's weights, so its "L1 vs eager" is a parity figure, and each format's
  "x vs reference" is the speed ratio the issue asks for (target: >= 3x at batch 1 000).

After the table: student / reference and teacher / student ratios per batch size, and the published
CaloChallenge CPU figures. The commands of the issue's measurement (each a long run on two cores: the paper
teacher chain at batch 1 000 is tens of minutes per call; ``--warm-up-rows`` keeps the warm-up short)::

    caloflow bench generate --model paper-ds2 --formats eager,fast,fast_onnx --compare-reference \
        --batch-sizes 1,100,1000,10000 --threads 1 --repeats 3 --json ds2-student.json
    caloflow bench generate --model paper-ds3 --formats eager,fast,fast_onnx --compare-reference \
        --batch-sizes 1,100,1000 --threads 1 --repeats 3 --json ds3-student.json
    caloflow bench generate --model paper-ds2 --formats fast_onnx,teacher --batch-sizes 1,100,1000 \
        --threads 1 --repeats 1 --warm-up-rows 10 --json ds2-teacher.json

(the former ``python -m caloflow.families.icaloflow.bench`` with its own loop is folded into this path).

First figures (untrained, float32, 1 thread, wall ms per shower; contended: both cores busy with a training job,
CPU time within 5 % of wall; the README has the commands): nflows reference / fast / fast_onnx at batch 1 and
100 - small DS2 389 / 205 / 54 and 30.4 / 8.7 / 7.2; small DS3 400 / 145 / 63 and 74.6 / 18.4 / 19.1; paper DS2
at batch 1 (one call each): reference 1 196, eager 630, fast 462, teacher 52 600; in a second run reference
1 239, fast 457, fast_onnx 165 (7.5x). The paper-size figures at batch 100 - 10 000 are not measured yet.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from caloflow.bench.generate import REFERENCE, Timing
from caloflow.data.datasets import Dataset, dataset
from caloflow.families.icaloflow.context import Conditioning
from caloflow.families.icaloflow.export import FORMATS, export_sampler, load_run, parity_inputs, reference
from caloflow.families.icaloflow.fast import fast_icaloflow_sampler
from caloflow.families.icaloflow.models import build_models
from caloflow.families.icaloflow.presets import ICaloFlowPreset, get_preset
from caloflow.families.icaloflow.runner import DATASETS
from caloflow.families.icaloflow.sampler import ICaloFlowSampler
from caloflow.training.run_dir import run_family

__all__ = [
    "ICALOFLOW_FORMATS",
    "PUBLISHED_CPU_MS",
    "BenchModel",
    "icaloflow_bench_model",
    "icaloflow_runners",
    "print_icaloflow_summary",
]

Array = NDArray[np.float32]
Runner = Callable[[Array, Array], Array]

ICALOFLOW_FORMATS = ["eager", "fast", "fast_onnx", "teacher"]
"""The default ``--formats`` for an iCaloFlow model."""
TORCH_FORMATS = ("eager", "fast", "teacher", "teacher_fast")
STUDENT_FORMATS = ("eager", "fast", *FORMATS)
PUBLISHED_CPU_MS: dict[str, dict[int, tuple[float, float | None]]] = {
    "ds2-electron": {1: (3048.0, 250171.0), 100: (135.0, 11614.0), 10000: (77.6, 8179.0)},
    "ds3-electron": {1: (20217.0, 15512081.0), 100: (455.0, 438642.0), 10000: (446.0, None)},
}
"""CaloChallenge final results, iCaloFlow on a CPU: batch -> (student, teacher) ms per shower (method note 3.2;
hardware not stated there; the DS3 teacher was not timed at batch 10 000)."""
REFERENCE_RATIO_TARGET, TEACHER_RATIO_TARGET = 3.0, 30.0
"""Issue 14's targets at batch 1 000: the student chain >= 3x the nflows reference, >= 30x the teacher chain."""


@dataclass(frozen=True)
class BenchModel:
    """A resolved ``--model``: the student and teacher chains and what builds the nflows reference."""

    name: str
    ds: Dataset
    preset: ICaloFlowPreset
    cond: Conditioning
    student: ICaloFlowSampler
    teacher: ICaloFlowSampler


def _pattern() -> re.Pattern[str]:
    names = sorted({*DATASETS, *(n.split("-")[0] for n in DATASETS)}, key=len, reverse=True)
    return re.compile(rf"(paper|small|tiny)-({'|'.join(re.escape(n) for n in names)})")


def icaloflow_bench_model(text: str) -> BenchModel | None:
    """``PRESET-ds2`` / ``PRESET-ds3-electron`` (untrained) or an iCaloFlow run directory; ``None`` otherwise."""
    if match := _pattern().fullmatch(text):
        ds = dataset(next(n for n in DATASETS if n.startswith(match.group(2))))
        preset = get_preset(match.group(1), ds, renormalise=False)  # the reference's generation path, to compare
        cond = Conditioning(ds.n_layers, ds.n_voxels // ds.n_layers)
        models = build_models(preset, cond, seed=0)
        chains = [
            ICaloFlowSampler(models.flow1, f2, f3, cond, ds.threshold_mev, preset.renormalise).eval()
            for f2, f3 in ((models.student2, models.student3), (models.flow2, models.flow3))
        ]
        return BenchModel(f"{text} (untrained)", ds, preset, cond, *chains)
    if run_family(text) == "icaloflow":
        run = load_run(text)
        return BenchModel(text, run.ds, run.preset, run.cond, run.sampler("student"), run.sampler("teacher"))
    return None


def _exported(model: BenchModel, fmt: str, threads: int) -> Runner:
    from caloflow.export.runners import load_runner

    print(f"exporting the student chain ({fmt}, compact) ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="icaloflow-bench-") as scratch:  # the runner holds the loaded graph
        (artifact,) = export_sampler(reference(model.student), model.ds, Path(scratch), (fmt,))
        return load_runner(Path(scratch) / artifact.filename, fmt, threads)


def _torch_module(model: BenchModel, fmt: str, groups: int) -> torch.nn.Module:
    if fmt == REFERENCE:
        from caloflow.families.icaloflow.nflows_reference import copy_chain_weights, reference_chain

        chain = reference_chain(model.preset, model.cond)
        copy_chain_weights(chain, model.student)
        return chain
    sampler = model.teacher if fmt.startswith("teacher") else model.student
    return fast_icaloflow_sampler(sampler, groups) if fmt.endswith("fast") else reference(sampler, compact=False)


def icaloflow_runners(
    model: BenchModel, formats: Sequence[str], compare_reference: bool, device: str, threads: int, groups: int
) -> tuple[dict[str, Runner], Callable[[int], tuple[Array, Array]]]:
    """One runner per format (in the order given), then the nflows reference when asked for; and the inputs."""
    from caloflow.bench._generate_runners import _torch_runner

    allowed = (*TORCH_FORMATS, *(FORMATS if device == "cpu" else ()))
    if unknown := [f for f in formats if f not in allowed] or ([] if formats else ["(none)"]):
        choices = ",".join((*TORCH_FORMATS, *FORMATS))
        raise ValueError(f"--formats {','.join(unknown)}: an iCaloFlow model runs {choices} (exported ones on the CPU)")
    runners: dict[str, Runner] = {}
    for fmt in [*formats, *([REFERENCE] if compare_reference else [])]:
        if fmt in FORMATS:
            runners[fmt] = _exported(model, fmt, threads)
        else:
            runners[fmt] = _torch_runner(_torch_module(model, fmt, groups).to(device), device)

    def inputs(batch: int) -> tuple[Array, Array]:
        return parity_inputs(model.ds, model.student.noise_dim, batch, seed=batch)

    return runners, inputs


def print_icaloflow_summary(records: Sequence[Timing], ds: Dataset) -> None:
    """Per batch size: the reference and the teacher chain over each student format, beside the targets; then the
    published CaloChallenge CPU figures."""
    median = {(r.format, r.batch_size): r.ms_per_shower for r in records}
    print(
        f"ratios of medians (issue targets at batch 1000: nflows reference / student >= {REFERENCE_RATIO_TARGET:.0f}x, "
        f"teacher / student >= {TEACHER_RATIO_TARGET:.0f}x):"
    )
    for batch in sorted({b for _, b in median}):
        for fmt in (f for f in STUDENT_FORMATS if (f, batch) in median):
            ratios = [
                f"{slow} / {fmt} = {median[slow, batch] / median[fmt, batch]:.2f}x"
                for slow in (REFERENCE, "teacher", "teacher_fast")
                if (slow, batch) in median
            ]
            if ratios:
                print(f"  batch {batch}: " + ", ".join(ratios))
    print(f"published iCaloFlow on a CPU (CaloChallenge, {ds.name}), ms per shower, student / teacher:")
    for batch, (student, teacher) in PUBLISHED_CPU_MS.get(ds.name, {}).items():
        print(f"  batch {batch}: {student:,.1f} / {'-' if teacher is None else f'{teacher:,.0f}'}")
