"""Per-shower generation time of an untrained iCaloFlow chain at a preset's size (speed does not depend on the
weights): ``python -m caloflow.families.icaloflow.bench --dataset ds2-electron --preset paper``.

Prints, per chain (``student``: flow-1 + the distilled students, what is served; ``teacher``: the MAF chain)
and form and batch size, the median ms per shower over ``--repeats`` calls after one warm-up call, float32,
``--threads`` threads. Forms: ``eager`` (:class:`~caloflow.families.icaloflow.sampler.ICaloFlowSampler`),
``fast`` (:mod:`caloflow.families.icaloflow.fast`), and the exported artifacts ``fast_onnx`` (what the server
prefers), ``onnx``, ``torchscript``: written as ``caloflow export`` writes them (compact) into a temporary
directory, the export's wall and CPU seconds printed, run by :func:`caloflow.export.runners.load_runner`.
Figures, not assertions. Not yet here: the nflows reference architecture of the DS1 benchmark
(:mod:`caloflow.bench.nflows_reference`) for DS2/DS3, and ``caloflow bench generate``'s timing loop.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from caloflow.data.datasets import Dataset, dataset
from caloflow.export.runners import load_runner
from caloflow.families.icaloflow.context import Conditioning
from caloflow.families.icaloflow.export import FORMATS, export_sampler, reference
from caloflow.families.icaloflow.fast import fast_icaloflow_sampler
from caloflow.families.icaloflow.models import build_models
from caloflow.families.icaloflow.presets import get_preset
from caloflow.families.icaloflow.sampler import ICaloFlowSampler

Generate = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ms_per_shower(sampler: Generate, noise_dim: int, batch: int, repeats: int, seed: int = 0) -> float:
    """Median over ``repeats`` timed calls (after one warm-up) of the wall time per shower, in ms."""
    generator = torch.Generator().manual_seed(seed)
    energies = torch.exp(torch.empty(batch, 1).uniform_(6.9, 13.8, generator=generator))
    noise = torch.randn(batch, noise_dim, generator=generator)
    times = []
    with torch.inference_mode():
        sampler(energies, noise)
        for _ in range(repeats):
            started = time.perf_counter()
            sampler(energies, noise)
            times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times) / batch


def _exported(sampler: ICaloFlowSampler, ds: Dataset, fmt: str, scratch: Path, threads: int) -> Generate:
    wall, cpu = time.perf_counter(), time.process_time()
    (artifact,) = export_sampler(reference(sampler), ds, scratch, (fmt,))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"  exported {fmt} in {wall:.1f} s wall, {cpu:.1f} s CPU ({(scratch / artifact.filename).stat().st_size} B)")
    run = load_runner(scratch / artifact.filename, fmt, threads)

    def generate(energies: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        showers: np.ndarray = run(energies.numpy(), noise.numpy())
        return torch.from_numpy(showers)

    return generate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ds2-electron", choices=("ds2-electron", "ds3-electron"))
    parser.add_argument("--preset", default="paper", choices=("paper", "small", "tiny"))
    parser.add_argument("--chains", default="student,teacher")
    parser.add_argument("--forms", default="fast,eager", help=f"from eager,fast,{','.join(FORMATS)}")
    parser.add_argument("--batches", default="1,100")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = dataset(args.dataset)
    cond = Conditioning(ds.n_layers, ds.n_voxels // ds.n_layers)
    models = build_models(get_preset(args.preset, ds), cond, seed=0)
    print(f"{ds.name} preset {args.preset}, {args.threads} threads, float32, untrained weights")
    for chain in args.chains.split(","):
        flow2, flow3 = (models.student2, models.student3) if chain == "student" else (models.flow2, models.flow3)
        eager = ICaloFlowSampler(models.flow1, flow2, flow3, cond, ds.threshold_mev, False).eval()
        for form in args.forms.split(","):
            with tempfile.TemporaryDirectory() as scratch:
                if form in FORMATS:
                    sampler = _exported(eager, ds, form, Path(scratch), args.threads)
                else:
                    sampler = {"eager": eager, "fast": fast_icaloflow_sampler(eager)}[form]
                for batch in (int(b) for b in args.batches.split(",")):
                    ms = ms_per_shower(sampler, eager.noise_dim, batch, args.repeats)
                    print(f"  {chain:<8} {form:<11} batch {batch:>6}: {ms:10.2f} ms/shower  {1e3 / ms:10.1f} showers/s")


if __name__ == "__main__":
    main()
