"""``caloflow bench generate --model paper-ild`` (or any ``PRESET-ild``, or an L2LFlows run directory): the
student chain against the teacher chain (the published L2LFlows generation) in the same run.

Runners: ``eager`` (flow-I + the IAF student chain, masks folded), ``onnx`` (the same exported as ``caloflow
export`` writes it: scanned, compact) and ``teacher`` (flow-I + the MAF teacher chain, D passes per block, as
published; its "L1 vs eager" is the distance between two different models, not a parity figure). Untrained
builds: speed does not depend on the weights. Inputs: energies spread over the dataset's range, seeded noise.

Measured on this project's shared 2-core CPU (other jobs running: medians are noisy, minima steadier), untrained
``paper`` sizes (UNVERIFIED, see :mod:`caloflow.families.l2lflows.presets`), ms per shower, 2 threads::

    caloflow bench generate --model paper-ild --formats eager,teacher --batch-sizes 1 --repeats 3 --seconds 1
      batch 1: student chain (eager) 219 (min 217); teacher chain (eager, D-pass MAF) 41 288 (min 12 012)
    caloflow bench generate --model paper-ild --formats eager,onnx --batch-sizes 1,100,1000 --repeats 3 --seconds 1
      batch 1: eager 15 398 / 7 706 (two runs, heavy contention), onnx 596 / 573
      batch 100: eager 22.1 (an uncontended run) / 846 (contended), onnx 14.6 / 34.4
      batch 1000: eager 14.2, onnx 30.2 (first run, whose onnx graph had the per-layer permutation bug; same ops)

The teacher chain at batch 1 000 (one thread, quiet; ``--warm-up-rows 10``, one 40-minute call: 24 000 MADE
passes for 30 layers x 8 blocks x 100 cells) against the student chain in the same run::

    caloflow bench generate --model paper-ild --formats eager,teacher --batch-sizes 1000 --repeats 1 --threads 1 \
        --warm-up-rows 10
      batch 1000: eager 27.1, teacher 2 410 ms per shower (CPU time alike): 88.9x

The slides' published L2LFlows CPU figure is 2 066 ms per shower, hardware not stated.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from caloflow.bench.generate import Timing
from caloflow.data.datasets import DATASETS, Dataset
from caloflow.families.l2lflows.export import export_l2l, l2l_parity_inputs, reference_l2l_sampler
from caloflow.families.l2lflows.models import make_flow1, make_layer_students, make_layer_teachers
from caloflow.families.l2lflows.presets import L2L_PRESET_NAMES, get_l2l_preset
from caloflow.families.l2lflows.runner import is_l2l_run, load_l2l_run
from caloflow.families.l2lflows.sampler import L2LSampler
from caloflow.families.l2lflows.transforms import L2LPreprocessing

__all__ = [
    "L2L_FORMATS",
    "PUBLISHED_CPU_MS",
    "RATIO_TARGET",
    "UNTRAINED_RATIO_SCALE",
    "l2l_bench_model",
    "l2l_runners",
    "print_l2l_summary",
]

L2L_FORMATS = ["eager", "onnx", "teacher"]

Array = NDArray[np.float32]
Runner = Callable[[Array, Array], Array]

PUBLISHED_CPU_MS = 2066.0
"""The slides' L2LFlows generation time on a CPU, ms per shower (hardware, threads and batch size not stated)."""
RATIO_TARGET = 50.0
"""Issue 15's target: the student chain at least this many times faster than the teacher chain at batch 1 000."""
STUDENT_FORMATS = ("eager", "onnx")

UNTRAINED_RATIO_SCALE = 0.05
"""flow-I's unit scale for untrained builds (a trained run fits its own; speed does not depend on it)."""


def _cartesian() -> dict[str, Dataset]:
    """``{"ild": ild-photon, "ild-photon": ild-photon}``: the registered layered-grid datasets by name and prefix."""
    grids = [d for d in DATASETS.values() if d.geometry_kind == "cartesian"]
    return {**{d.name.split("-")[0]: d for d in grids}, **{d.name: d for d in grids}}


def _pattern() -> re.Pattern[str]:
    names = "|".join(re.escape(n) for n in sorted(_cartesian(), key=len, reverse=True))
    return re.compile(rf"({'|'.join(L2L_PRESET_NAMES)})-({names})")


def l2l_bench_model(text: str) -> tuple[str, Dataset, L2LSampler, L2LSampler] | None:
    """``(name, dataset, student sampler, teacher sampler)`` for ``PRESET-ild`` or an L2LFlows run directory;
    ``None`` for anything else (the CaloFlow models)."""
    if match := _pattern().fullmatch(text):
        ds = _cartesian()[match.group(2)]
        return (f"{text} (untrained)", ds, *_untrained(match.group(1), ds))
    if (Path(text) / "run.json").is_file() and is_l2l_run(text):
        run = load_l2l_run(text)
        return text, run.ds, run.sampler("student"), run.sampler("teacher")
    return None


def _untrained(preset_name: str, ds: Dataset, seed: int = 0) -> tuple[L2LSampler, L2LSampler]:
    preset = get_l2l_preset(preset_name, ds)
    cells = preset.crop_cells**2
    prep = L2LPreprocessing(
        ds.n_layers, cells, ds.threshold_mev, ratio_scale=UNTRAINED_RATIO_SCALE, context_pool=preset.context_pool
    )
    flow1 = make_flow1(preset, ds.n_layers, seed)
    teachers = make_layer_teachers(preset, ds.n_layers, cells, seed)
    students = make_layer_students(preset, teachers, seed)
    student = L2LSampler(flow1, students, prep, preset.window).eval()
    return student, L2LSampler(flow1, teachers, prep, preset.window).eval()


def _torch_runner(module: torch.nn.Module) -> Runner:
    def run(energies: Array, noise: Array) -> Array:
        with torch.inference_mode():
            showers: Array = module(torch.from_numpy(energies), torch.from_numpy(noise)).numpy()
        return showers

    return run


def l2l_runners(
    ds: Dataset, student: L2LSampler, teacher: L2LSampler, formats: list[str], threads: int
) -> tuple[dict[str, Runner], Callable[[int], tuple[Array, Array]]]:
    """The runners (``eager``, ``onnx``, ``teacher``, those of ``formats`` in that order) and the inputs."""
    from caloflow.export.runners import load_runner

    energy_range = (ds.energies.min_mev, ds.energies.max_mev)
    runners: dict[str, Runner] = {}
    for fmt in formats:
        if fmt == "eager":
            runners[fmt] = _torch_runner(reference_l2l_sampler(student, compact=False))
        elif fmt == "teacher":
            runners[fmt] = _torch_runner(reference_l2l_sampler(teacher, compact=False))
        elif fmt == "onnx":
            print("exporting the student chain (onnx, compact) ...", flush=True)
            with tempfile.TemporaryDirectory(prefix="l2l-bench-") as scratch:  # the runner holds the loaded graph
                (artifact,) = export_l2l(reference_l2l_sampler(student), Path(scratch), energy_range)
                runners[fmt] = load_runner(Path(scratch) / artifact.filename, "onnx", threads)
        else:
            raise ValueError(f"--formats {fmt}: an L2LFlows model runs eager, onnx and teacher")

    def inputs(batch: int) -> tuple[Array, Array]:
        return l2l_parity_inputs(student.noise_dim, batch, energy_range, seed=batch)

    return runners, inputs


def print_l2l_summary(records: Sequence[Timing]) -> None:
    """Teacher / student ratios (medians) per batch size and each chain's fastest figure beside the slides'."""
    median = {(r.format, r.batch_size): r.ms_per_shower for r in records}
    print(f"teacher chain / student chain, median ms per shower (issue target: >= {RATIO_TARGET:.0f}x at batch 1000):")
    for (fmt, batch), student in sorted(median.items(), key=lambda item: (item[0][1], item[0][0])):
        teacher = median.get(("teacher", batch))
        if fmt in STUDENT_FORMATS and teacher is not None:
            print(f"  batch {batch}: teacher {teacher:.3f} / student ({fmt}) {student:.3f} = {teacher / student:.1f}x")
    print(f"published L2LFlows on a CPU (slides; hardware not stated): {PUBLISHED_CPU_MS:,.0f} ms per shower")
    for fmt in (*STUDENT_FORMATS, "teacher"):
        timed = [(ms, batch) for (f, batch), ms in median.items() if f == fmt]
        if timed:
            ms, batch = min(timed)
            ratio = PUBLISHED_CPU_MS / ms
            print(f"  ours, {fmt}: {ms:.3f} ms per shower at batch {batch} (published / ours = {ratio:,.1f})")
