"""Exported artifacts' size, load time and first-call latency (what a server pays once per model version).

Usage::

    python benchmarks/bench_export.py [--run RUN_DIR | --model PRESET-PARTICLE] [--threads 2] [--dense]
                                      [--formats onnx,torchscript,torch_export,aoti] [--keep DIR [--reuse]]

Per-shower generation time moved to ``caloflow bench generate`` (every format, the fast path and the nflows
reference, median and spread, ``--json``). Without ``--run`` this builds an untrained model (default
``small-photon``, the demo architecture: sizes and load times do not depend on the weights).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from caloflow.bench._generate_runners import untrained
from caloflow.export import FILENAMES, ExportedArtifact, export_sampler, load_runner
from caloflow.export.parity import parity_inputs
from caloflow.training.run_dir import load_run


def export_or_reuse(sampler: torch.nn.Module, out: Path, formats: list[str], compact: bool, reuse: bool) -> list:
    """Export (timed), or with ``reuse`` take the files already in ``out`` (e.g. a slow AOTInductor build)."""
    if reuse and all((out / FILENAMES[f]).exists() for f in formats):
        return [ExportedArtifact(FILENAMES[f], f, "reused") for f in formats]
    start = time.perf_counter()
    artifacts = export_sampler(sampler, out, formats, compact=compact)
    print(f"exported {formats} in {time.perf_counter() - start:.0f} s ({'compact' if compact else 'dense'})")
    return artifacts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="trained run directory")
    parser.add_argument("--model", default="small-photon", help="untrained PRESET-PARTICLE (default small-photon)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dense", action="store_true", help="export dense float32 instead of compact")
    parser.add_argument("--formats", default="torchscript,onnx,torch_export", help="add aoti to compile AOTInductor")
    parser.add_argument("--keep", type=Path, help="export into this directory instead of a temporary one")
    parser.add_argument("--reuse", action="store_true", help="use the artifacts already in --keep")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    sampler = load_run(args.run).sampler() if args.run else untrained(*args.model.split("-"))[0]
    energies, noise = parity_inputs(sampler.noise_dim, 1)
    with tempfile.TemporaryDirectory() as scratch:
        out = args.keep or Path(scratch)
        for artifact in export_or_reuse(sampler, out, args.formats.split(","), not args.dense, args.reuse):
            path = out / artifact.filename
            start = time.perf_counter()
            run = load_runner(path, artifact.format, args.threads)
            loaded = time.perf_counter() - start
            start = time.perf_counter()
            run(energies, noise)
            first = 1e3 * (time.perf_counter() - start)
            size = path.stat().st_size / 1e6
            print(f"  {artifact.format:12s} {size:8.2f} MB  load {loaded:6.2f} s  first batch-1 call {first:8.2f} ms")


if __name__ == "__main__":
    main()
