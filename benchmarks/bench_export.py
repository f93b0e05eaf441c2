"""Exported-sampler speed on this CPU: ms per shower for eager, TorchScript, ONNX Runtime and torch.export.

Usage::

    python benchmarks/bench_export.py [--run RUN_DIR | --particle photon|pion] [--batches 1,100,1000]
                                      [--threads 2] [--dense] [--formats onnx,...,aoti]
                                      [--keep DIR [--reuse]] [--statistic median|min]

Without ``--run`` it builds an untrained model of the ``small`` preset (the demo-model architecture: speed
does not depend on the weights). The sampler is exported (compact unless ``--dense``) to a temporary
directory; each artifact is loaded the way a server would (TorchScript: ``materialize()`` once) and timed
at every batch size: warm-up, then the median (or minimum) over interleaved rounds, one call of every
format per round, for ``--seconds`` per format. Also
prints the artifact sizes, load times and the first-call latency (ONNX Runtime folds the packed weights
while the session is created). Compare figures from one run only: the machine is shared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from caloflow import preprocessing as pp
from caloflow.data.geometry import geometry_for
from caloflow.export import FILENAMES, ExportedArtifact, export_sampler, load_runner, reference_sampler
from caloflow.export.parity import parity_inputs
from caloflow.export.runners import Array, Runner
from caloflow.sampler import CaloFlowSampler
from caloflow.training.models import make_flow1, make_student, make_teacher
from caloflow.training.presets import get_preset
from caloflow.training.run_dir import load_run

REFERENCE_U0_SCALE = {"photon": 2.42, "pion": 6.93}


def untrained_small(particle: str, seed: int = 0) -> CaloFlowSampler:
    """The ``small`` preset's generator with initial weights (the demo architecture)."""
    geometry = geometry_for(particle)
    prep = pp.Preprocessing(layer_sizes=geometry.layer_sizes, u0_scale=REFERENCE_U0_SCALE[particle])
    preset = get_preset("small", particle, geometry.n_voxels)
    teacher = make_teacher(preset, prep, seed)
    return CaloFlowSampler(make_flow1(preset, prep, seed), make_student(preset, teacher, seed), prep).eval()


def eager_runner(sampler: CaloFlowSampler) -> Runner:
    def run(energies: Array, noise: Array) -> Array:
        with torch.inference_mode():
            out: Array = sampler(torch.from_numpy(energies), torch.from_numpy(noise)).numpy()
        return out

    return run


def time_per_shower_ms(
    runners: dict[str, Runner], noise_dim: int, batch: int, seconds: float, statistic: str
) -> dict[str, float]:
    """ms per shower of every runner at ``batch``: one warm-up call each, then rounds in which every runner
    runs once (interleaved, so a busy machine slows all of them alike) for ``seconds`` per runner."""
    energies, noise = parity_inputs(noise_dim, batch)
    for run in runners.values():
        run(energies, noise)
    times: dict[str, list[float]] = {name: [] for name in runners}
    deadline = time.perf_counter() + seconds * len(runners)
    rounds = 0
    while rounds < 3 or (time.perf_counter() < deadline and rounds < 200):
        rounds += 1
        for name, run in runners.items():
            start = time.perf_counter()
            run(energies, noise)
            times[name].append(time.perf_counter() - start)
    pick = min if statistic == "min" else statistics.median
    return {name: 1e3 * pick(values) / batch for name, values in times.items()}


def load_timed(load: Callable[[], Runner], noise_dim: int) -> tuple[Runner, float, float]:
    """The runner, its load time (s) and its first batch-1 call (ms)."""
    start = time.perf_counter()
    run = load()
    loaded = time.perf_counter() - start
    energies, noise = parity_inputs(noise_dim, 1)
    start = time.perf_counter()
    run(energies, noise)
    return run, loaded, 1e3 * (time.perf_counter() - start)


def export_or_reuse(
    sampler: CaloFlowSampler, out: Path, formats: list[str], compact: bool, reuse: bool
) -> list[ExportedArtifact]:
    """Export (timed), or with ``reuse`` take the files already in ``out`` (e.g. a slow AOTInductor build)."""
    if reuse and all((out / FILENAMES[f]).exists() for f in formats):
        print(f"reusing {formats} from {out}")
        return [ExportedArtifact(FILENAMES[f], f, "reused") for f in formats]
    start = time.perf_counter()
    artifacts = export_sampler(sampler, out, formats, compact=compact)
    print(f"exported {formats} in {time.perf_counter() - start:.0f} s ({'compact' if compact else 'dense'})")
    return artifacts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="trained run directory (default: untrained small preset)")
    parser.add_argument("--particle", choices=("photon", "pion"), default="photon")
    parser.add_argument("--batches", default="1,100,1000", help="comma-separated batch sizes (10000 is optional)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per format and batch size")
    parser.add_argument(
        "--statistic", choices=("median", "min"), default="median", help="min is steadier on a busy machine"
    )
    parser.add_argument("--dense", action="store_true", help="export dense float32 instead of compact")
    parser.add_argument("--formats", default="torchscript,onnx,torch_export", help="add aoti to compile AOTInductor")
    parser.add_argument("--keep", type=Path, help="export into this directory instead of a temporary one")
    parser.add_argument("--reuse", action="store_true", help="time the artifacts already in --keep")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    sampler = load_run(args.run).sampler() if args.run else untrained_small(args.particle)
    batches = [int(b) for b in args.batches.split(",")]
    compact = not args.dense
    print(f"{args.run or 'untrained small ' + args.particle}, {args.threads} threads")
    with tempfile.TemporaryDirectory() as scratch:
        out = args.keep or Path(scratch)
        artifacts = export_or_reuse(sampler, out, args.formats.split(","), compact, args.reuse)
        loaders: dict[str, Callable[[], Runner]] = {"eager": lambda: eager_runner(reference_sampler(sampler, compact))}
        for artifact in artifacts:
            path = out / artifact.filename
            print(f"  {artifact.filename:16s} {path.stat().st_size / 1e6:7.2f} MB  {artifact.format_version}")
            loaders[artifact.format] = lambda p=path, f=artifact.format: load_runner(p, f, args.threads)
        runners = {}
        for name, load in loaders.items():
            runners[name], loaded_s, first_ms = load_timed(load, sampler.noise_dim)
            print(f"  {name:12s} load {loaded_s:6.2f} s, first batch-1 call {first_ms:8.2f} ms")
        by_batch = [time_per_shower_ms(runners, sampler.noise_dim, b, args.seconds, args.statistic) for b in batches]
        rows = {name: [timings[name] for timings in by_batch] for name in runners}
    print(f"ms/shower ({args.statistic})".ljust(20) + "".join(f"batch {b}".rjust(13) for b in batches))
    for name, values in rows.items():
        print(name.ljust(20) + "".join(f"{v:13.3f}" for v in values))
    for i, batch in enumerate(batches):
        best = min(rows, key=lambda name: rows[name][i])
        print(f"fastest at batch {batch}: {best} ({rows[best][i]:.3f} ms/shower)")


if __name__ == "__main__":
    main()
