"""``caloflow bench generate``: per-shower generation time like the CaloChallenge table, for every format.

For each batch size every format (and, with ``--compare-reference``, the published architecture built
from nflows) is warmed up, then called in interleaved rounds - one call of each per round, so a busy
machine slows all of them alike - until ``--seconds`` per format or ``--repeats`` rounds. Reported:
ms per shower (median and spread: interquartile range, min-max), showers/s, the ratio of the reference's
median to each format's, and each format's largest per-shower relative L1 difference from ``eager`` on
the same energies and noise, and the memory of each batch size (:mod:`caloflow.bench.memory`: the process's
peak host RSS so far, and on CUDA the peak torch allocation and mean GPU utilisation over the timed
rounds; shared by the formats timed together). ``--json FILE`` writes one record per model, format, device
and batch size.

Models: a training run directory, a model in ``--repo`` (its exported artifacts only: no weights, so
no eager, fast or reference), an L2LFlows model (``paper-ild``: see :mod:`caloflow.families.l2lflows.bench`), an
iCaloFlow model (``paper-ds2``, ``paper-ds3``, ``small-ds2``...: see :mod:`caloflow.families.icaloflow.bench`), or an
untrained build ``PRESET-PARTICLE`` (``paper-photon``,
``small-pion``, ``tiny-photon``...): speed does not depend on the weights, so the published
architecture's speed is measured without training it. Formats: ``eager`` (the plain sampler, masks
folded), ``fast`` (:mod:`caloflow.export.fast`), ``fast_torchscript``, ``fast_onnx`` (the fast graph
traced / exported, chunked by the caller), ``onnx``, ``torchscript``, ``torch_export``, ``aoti``
(exported as ``caloflow export`` writes them, compact, into a temporary directory).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["FORMATS", "Timing", "register"]

FORMATS = ("eager", "fast", "fast_torchscript", "fast_onnx", "fast_aoti", "onnx", "torchscript", "torch_export", "aoti")
REFERENCE = "nflows_reference"
DEFAULT_FORMATS = "eager,fast,onnx"


@dataclass(frozen=True)
class Timing:
    """One record of ``--json``: per-call times divided by the batch size."""

    model: str
    format: str
    device: str
    batch_size: int
    threads: int
    calls: int
    ms_per_shower: float
    """Median over the calls."""
    ms_per_shower_p25: float
    ms_per_shower_p75: float
    ms_per_shower_min: float
    ms_per_shower_max: float
    showers_per_s: float
    reference_ratio: float | None
    """The nflows reference's median divided by this one (how many times faster), when compared."""
    max_shower_l1_vs_eager: float | None
    """Largest per-shower relative L1 difference from ``eager`` on the same inputs, when eager ran."""
    peak_host_rss_bytes: int | None = None
    """The process's peak RSS after this batch size (all formats loaded; it never decreases)."""
    peak_device_memory_bytes: int | None = None
    """CUDA: torch's peak allocation during this batch size, all formats (ONNX Runtime's arena not counted)."""
    device_utilisation_percent: float | None = None
    """CUDA with NVML: mean GPU utilisation sampled after each timed round."""
    cpu_ms_per_shower: float | None = None
    """Median over the calls of the process's CPU time (all its threads) per call, divided by the batch size:
    on a shared machine a fairer figure than wall time (another job's time slices are not counted)."""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "generate", help="ms per shower of every format (CaloChallenge-style table)", description=__doc__
    )
    parser.add_argument(
        "--model", required=True, help="run dir, model name in --repo, PRESET-PARTICLE, PRESET-ild or PRESET-ds2|ds3"
    )
    parser.add_argument("--repo", type=Path, default=Path("model_repo"), help="model repository (default model_repo)")
    parser.add_argument("--batch-sizes", default="1,100,10000", help="comma-separated (default 1,100,10000)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--formats", default=DEFAULT_FORMATS, help=f"comma-separated from {','.join(FORMATS)}")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every format (default 2)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per format and batch size")
    parser.add_argument(
        "--repeats", type=int, default=10, help="at most this many timed calls (at least 3 unless fewer are asked)"
    )
    parser.add_argument(
        "--warm-up-rows",
        type=int,
        help="warm up (and compute the L1 vs eager) on the first N rows instead of the whole batch: for runners "
        "whose one call takes many minutes (the L2LFlows teacher chain at batch 1 000)",
    )
    parser.add_argument("--groups", type=int, default=4, help="fast formats: MADE output degree blocks")
    parser.add_argument("--chunk", type=int, default=256, help="fast formats: showers per chunk")
    parser.add_argument("--json", type=Path, help="write the records here")
    parser.add_argument("--compare-reference", action="store_true", help="also time the nflows reference")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from caloflow.bench import _generate_runners as runners
    from caloflow.cli import CLIError

    batches = _batch_sizes(args.batch_sizes)
    if args.threads < 1 or args.repeats < 1 or args.seconds <= 0:
        raise CLIError("--threads and --repeats must be positive, --seconds above 0")
    if args.warm_up_rows is not None and args.warm_up_rows < 1:
        raise CLIError(f"--warm-up-rows: expected a positive integer, got {args.warm_up_rows}")
    formats = [f for f in args.formats.split(",") if f]
    if (l2l := _l2l_loaded(args)) is not None:
        from caloflow.families.l2lflows.bench import print_l2l_summary

        print_l2l_summary(_time_all(*l2l, batches, args))
        return 0
    if (icaloflow := _icaloflow_loaded(args)) is not None:
        from caloflow.families.icaloflow.bench import print_icaloflow_summary

        name, ds, loaded = icaloflow
        print_icaloflow_summary(_time_all(name, loaded, batches, args), ds)
        return 0
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise CLIError(f"--formats: unknown {unknown or formats}; choose from {','.join(FORMATS)}")
    runners.set_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        model = runners.resolve_model(args.model, args.repo, args.device)
        options = runners.Options(args.device, args.threads, args.groups, args.chunk, Path(scratch))
        loaded = runners.load_all(model, formats, args.compare_reference, options)
        _time_all(model.name, loaded, batches, args)
        return 0


def _time_all(name: str, loaded: Any, batches: list[int], args: argparse.Namespace) -> list[Timing]:
    print(f"{name} on {args.device}, {args.threads} threads: ms per shower, median [IQR] (min-max)")
    records: list[Timing] = []
    for batch in batches:  # printed as they come: a batch of 10 000 takes minutes
        records += _time_batch(name, loaded, batch, args)
        _print_batch(records[-len(loaded.runners) :], batch)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in records], indent=2) + "\n")
        print(f"wrote {len(records)} records to {args.json}")
    return records


def _l2l_loaded(args: argparse.Namespace) -> tuple[str, Any] | None:
    """The L2LFlows family's runners when ``--model`` names one of its models (``PRESET-ild``, a run directory):
    the student chain (``eager``, ``onnx``) and the teacher chain (``teacher``) on the dataset's energies."""
    from caloflow.bench import _generate_runners as runners
    from caloflow.cli import CLIError
    from caloflow.families.l2lflows.bench import L2L_FORMATS, l2l_bench_model, l2l_runners

    model = l2l_bench_model(args.model)
    if model is None:
        return None
    if args.device != "cpu" or args.compare_reference:
        raise CLIError(f"--model {args.model}: the L2LFlows benchmark runs on the CPU, without --compare-reference")
    formats = L2L_FORMATS if args.formats == DEFAULT_FORMATS else [f for f in args.formats.split(",") if f]
    runners.set_threads(args.threads)
    name, ds, student, teacher = model
    try:
        loaded_runners, inputs = l2l_runners(ds, student, teacher, formats, args.threads)
    except ValueError as error:
        raise CLIError(str(error)) from error
    return name, runners.Loaded(student.noise_dim, loaded_runners, runners.no_sync, inputs)


def _icaloflow_loaded(args: argparse.Namespace) -> tuple[str, Any, Any] | None:
    """The iCaloFlow family's runners, its dataset and name when ``--model`` names one of its models
    (``PRESET-ds2``, ``PRESET-ds3``, a run directory): see :mod:`caloflow.families.icaloflow.bench`."""
    from caloflow.bench import _generate_runners as runners
    from caloflow.cli import CLIError
    from caloflow.families.icaloflow.bench import ICALOFLOW_FORMATS, icaloflow_bench_model, icaloflow_runners

    model = icaloflow_bench_model(args.model)
    if model is None:
        return None
    runners.check_device(args.device)
    formats = ICALOFLOW_FORMATS if args.formats == DEFAULT_FORMATS else [f for f in args.formats.split(",") if f]
    runners.set_threads(args.threads)
    try:
        found, inputs = icaloflow_runners(
            model, formats, args.compare_reference, args.device, args.threads, args.groups
        )
    except ValueError as error:
        raise CLIError(str(error)) from error
    loaded = runners.Loaded(model.student.noise_dim, found, runners.synchronizer(args.device), inputs)
    return model.name, model.ds, loaded


def _batch_sizes(text: str) -> list[int]:
    from caloflow.cli import CLIError

    try:
        sizes = [int(b) for b in text.split(",") if b.strip()]
    except ValueError as error:
        raise CLIError(f"--batch-sizes: expected comma-separated integers, got {text!r}") from error
    if not sizes or min(sizes) < 1:
        raise CLIError(f"--batch-sizes: expected positive integers, got {text!r}")
    return sizes


def _time_batch(model: str, loaded: Any, batch: int, args: argparse.Namespace) -> list[Timing]:
    """Warm up every runner on the same inputs, then time interleaved rounds."""
    from caloflow.bench import _generate_runners as runners
    from caloflow.bench.memory import MemoryProbe

    probe = MemoryProbe(args.device)
    make = loaded.make_inputs
    inputs = make(batch) if make is not None else runners.inputs(loaded.noise_dim, batch, args.device)
    warm = _warm_up_inputs(inputs, args.warm_up_rows)
    outputs = {name: run(*warm) for name, run in loaded.runners.items()}  # warm-up (and parity outputs)
    times: dict[str, list[float]] = {name: [] for name in loaded.runners}
    cpu_times: dict[str, list[float]] = {name: [] for name in loaded.runners}
    deadline = time.perf_counter() + args.seconds * len(loaded.runners)
    rounds = 0
    while rounds < min(3, args.repeats) or (rounds < args.repeats and time.perf_counter() < deadline):
        rounds += 1
        for name, run in loaded.runners.items():
            wall, cpu = _timed(run, inputs, loaded.synchronize)
            times[name].append(wall)
            cpu_times[name].append(cpu)
        probe.sample()
    reference = statistics.median(times[REFERENCE]) if REFERENCE in times else None
    eager = outputs.get("eager")
    return [
        dataclasses.replace(
            _record(model, name, batch, values, reference, runners.max_shower_l1(outputs[name], eager), args),
            peak_host_rss_bytes=probe.peak_host_rss_bytes,
            peak_device_memory_bytes=probe.peak_device_memory_bytes,
            device_utilisation_percent=probe.device_utilisation_percent,
            cpu_ms_per_shower=1e3 * statistics.median(cpu_times[name]) / batch,
        )
        for name, values in times.items()
    ]


def _warm_up_inputs(inputs: tuple[Any, ...], rows: int | None) -> tuple[Any, ...]:
    """The whole batch, or its first ``rows`` rows (``--warm-up-rows``)."""
    return inputs if rows is None else tuple(x[:rows] for x in inputs)


def _timed(
    run: Callable[..., object], inputs: tuple[object, ...], synchronize: Callable[[], None]
) -> tuple[float, float]:
    """Wall and process CPU seconds of one call."""
    synchronize()
    start, cpu_start = time.perf_counter(), time.process_time()
    run(*inputs)
    synchronize()
    return time.perf_counter() - start, time.process_time() - cpu_start


def _record(
    model: str,
    name: str,
    batch: int,
    seconds: Sequence[float],
    reference: float | None,
    l1: float | None,
    args: argparse.Namespace,
) -> Timing:
    ms = sorted(1e3 * s / batch for s in seconds)
    quartiles = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else [ms[0]] * 3
    median = statistics.median(ms)
    return Timing(
        model=model,
        format=name,
        device=args.device,
        batch_size=batch,
        threads=args.threads,
        calls=len(ms),
        ms_per_shower=median,
        ms_per_shower_p25=quartiles[0],
        ms_per_shower_p75=quartiles[2],
        ms_per_shower_min=ms[0],
        ms_per_shower_max=ms[-1],
        showers_per_s=1e3 / median if median > 0 else math.inf,
        reference_ratio=None if reference is None else 1e3 * reference / batch / median,
        max_shower_l1_vs_eager=l1,
    )


def _print_batch(records: Sequence[Timing], batch: int) -> None:
    first = records[0]
    memory = f"peak host RSS {(first.peak_host_rss_bytes or 0) / 2**20:.0f} MiB"
    if first.peak_device_memory_bytes is not None:
        memory += f", peak CUDA allocation {first.peak_device_memory_bytes / 2**20:.0f} MiB (torch)"
    if first.device_utilisation_percent is not None:
        memory += f", GPU utilisation {first.device_utilisation_percent:.0f} %"
    print(f"batch {batch}: ({memory})")
    for r in records:
        ratio = "" if r.reference_ratio is None else f"  {r.reference_ratio:5.2f}x vs reference"
        l1 = "" if r.max_shower_l1_vs_eager is None else f"  L1 vs eager {r.max_shower_l1_vs_eager:.1e}"
        cpu = "" if r.cpu_ms_per_shower is None else f"  CPU {r.cpu_ms_per_shower:.3f} ms/shower"
        print(
            f"  {r.format:17s} {r.ms_per_shower:9.3f} [{r.ms_per_shower_p25:.3f}-{r.ms_per_shower_p75:.3f}]"
            f" ({r.ms_per_shower_min:.3f}-{r.ms_per_shower_max:.3f})  {r.showers_per_s:10.0f} showers/s"
            f"{ratio}{cpu}{l1}",
            flush=True,
        )
