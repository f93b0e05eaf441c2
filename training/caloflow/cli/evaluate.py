"""``caloflow evaluate``: CaloChallenge metrics, plots and an HTML page for generated vs reference showers.

* ``caloflow evaluate --generated GEN.h5 --reference REF.h5 --dataset D (or --particle photon|pion) --out DIR
  [--runs N] [--seed S] [--metrics all|hist,energy,avg,corr,cls-low,cls-low-normed,cls-high,fpd,kpd,w1,prdc]
  [--device auto|cpu|cuda] [--max-showers N] [--cls-low-max-showers N] [--cls-hidden 2048 --cls-epochs 50 ...]
  [--crop X0:X1,Z0:Z1]`` (``--crop``: a grid dataset's lateral crop only; the figures describe that region)
* ``caloflow evaluate compare A.json B.json [--force]``: two quality reports (``quality.json``) side by side;
  refused (exit 2, naming the field) when their evaluator settings hashes or reference files differ.
* ``caloflow evaluate-demo``: stand-in reference files, showers from the demo models, both evaluated, and
  a summary table (``make eval-demo``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from caloflow.cli._dataset import add_dataset_option, dataset_from_args


def register(subparsers: Any) -> None:
    _register_evaluate(subparsers)
    _register_demo(subparsers)


def _register_evaluate(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "evaluate", help="CaloChallenge metrics of generated showers against a reference file"
    )
    # not required=True: ``evaluate compare`` has none of them; _evaluate checks them
    p.add_argument("--generated", type=Path, help="HDF5 file of generated showers (dataset's layout; required)")
    p.add_argument("--reference", type=Path, help="HDF5 reference file (e.g. the dataset's *_2; required)")
    add_dataset_option(p, what="the dataset of both files")
    p.add_argument("--out", type=Path, help="directory for metrics.json, index.html and PNGs (required)")
    p.add_argument(
        "--metrics",
        default="all",
        help="'all' or a comma list of hist,energy,avg,corr,cls-low,cls-low-normed,cls-high,fpd,kpd,w1,prdc",
    )
    p.add_argument("--runs", type=int, default=1, help="classifier runs per mode, mean and std reported (paper: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the classifier splits and initialisations")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--max-showers", type=int, help="use at most N showers of each file (the first N rows)")
    p.add_argument(
        "--min-energy", type=float, help="voxel cut in MeV (default: the dataset's threshold; Dataset 1: 1.0)"
    )
    p.add_argument(
        "--cls-low-max-showers",
        type=int,
        help="showers per class for cls-low / cls-low-normed (the first N used rows; default: as many as "
        "2.5 GiB of float32 inputs and tensors hold, about 4 100 for Dataset 3, every shower for Dataset 1)",
    )
    p.add_argument(
        "--crop",
        metavar="X0:X1,Z0:Z1",
        help="grid datasets (ILD): evaluate only cells X0<=x<X1, Z0<=z<Z1 of every layer - both files are set to "
        "zero outside it, so every figure describes the crop region only, not the whole grid (for a crop model, "
        "e.g. L2LFlows; its served-shower files name their crop in the attribute 'crop')",
    )
    _add_classifier_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=_evaluate)
    sub = p.add_subparsers(dest="evaluate_command", metavar="compare", required=False)
    compare = sub.add_parser("compare", help="compare two quality reports (quality.json) side by side")
    compare.add_argument("report_a", type=Path, metavar="A", help="quality.json")
    compare.add_argument("report_b", type=Path, metavar="B", help="quality.json")
    compare.add_argument("--force", action="store_true", help="compare even across evaluator settings or references")
    compare.set_defaults(handler=_compare)


def _add_classifier_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("classifier and distance settings (defaults: the published values)")
    g.add_argument("--cls-hidden", type=int, default=2048, help="hidden width (2048)")
    g.add_argument("--cls-epochs", type=int, default=50, help="epochs (50)")
    g.add_argument("--cls-lr", type=float, default=2e-4, help="Adam learning rate (2e-4)")
    g.add_argument("--cls-batch-size", type=int, default=1000, help="batch size (1000)")
    g.add_argument("--fpd-min-samples", type=int, default=10_000, help="smallest FPD bootstrap size (10000)")
    g.add_argument("--fpd-max-samples", type=int, default=50_000, help="largest FPD bootstrap size (50000)")
    g.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--kpd-batch-size", type=int, default=10_000, help="KPD bootstrap batch size (10000)")
    g.add_argument("--prdc-k", type=int, default=5, help="PRDC nearest neighbours (5)")
    g.add_argument(
        "--prdc-max-samples", type=int, default=10_000, help="PRDC rows per sample, a seeded subsample (10000)"
    )


def _register_demo(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "evaluate-demo", help="evaluate the demo models against independent stand-in files; summary table"
    )
    p.add_argument("--repo", type=Path, default=Path("model_repo"), help="model repository (model_repo)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="training runs, for the teacher (runs)")
    p.add_argument("--data", type=Path, default=Path("data"), help="where the stand-in reference files go (data)")
    p.add_argument("--out", type=Path, default=Path("eval-demo"), help="output directory (eval-demo)")
    p.add_argument("--count", type=int, default=10_000, help="showers per particle (10000)")
    p.add_argument("--teacher-count", type=int, default=10_000, help="teacher showers per particle (10000)")
    p.add_argument("--reference-seed", type=int, default=2, help="stand-in seed of the references (2; training used 1)")
    p.add_argument("--seed", type=int, default=0, help="generation and classifier seed")
    p.add_argument("--runs", type=int, default=1, help="classifier runs per mode")
    p.add_argument("--particles", default="photon,pion", help="comma list (photon,pion)")
    p.add_argument("--device", default="auto")
    _add_classifier_options(p)
    p.set_defaults(
        cls_hidden=256,
        cls_epochs=30,
        cls_batch_size=100,
        fpd_min_samples=5_000,
        fpd_max_samples=20_000,
        kpd_batch_size=5_000,
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_demo)


def _settings(args: argparse.Namespace) -> Any:
    from caloflow.evaluation import ClassifierSettings

    return ClassifierSettings(
        hidden=args.cls_hidden, epochs=args.cls_epochs, learning_rate=args.cls_lr, batch_size=args.cls_batch_size
    )


def _compare(args: argparse.Namespace) -> int:
    from caloflow.evaluation.compare import compare_reports, load_report, render_comparison

    a, b = load_report(args.report_a), load_report(args.report_b)
    print(render_comparison(a, b, compare_reports(a, b, force=args.force)))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from caloflow.cli import CLIError
    from caloflow.evaluation import EvaluationConfig, evaluate, parse_metrics
    from caloflow.evaluation.run import summary_row

    missing = [f"--{name}" for name in ("generated", "reference", "out") if getattr(args, name) is None]
    if missing:
        raise CLIError(f"caloflow evaluate needs {', '.join(missing)} (or: caloflow evaluate compare A B)")

    config = EvaluationConfig(
        generated=args.generated,
        reference=args.reference,
        dataset=dataset_from_args(args).name,
        out=args.out,
        metrics=parse_metrics(args.metrics),
        runs=args.runs,
        seed=args.seed,
        device=args.device,
        max_showers=args.max_showers,
        min_energy_mev=args.min_energy,
        cls_low_max_showers=args.cls_low_max_showers,
        classifier=_settings(args),
        fpd_min_samples=args.fpd_min_samples,
        fpd_max_samples=args.fpd_max_samples,
        threads=args.threads,
        kpd_batch_size=args.kpd_batch_size,
        prdc_k=args.prdc_k,
        prdc_max_samples=args.prdc_max_samples,
        progress=not args.no_progress,
        crop=args.crop,
    )
    result = evaluate(config)
    row = {k: v for k, v in summary_row(result).items() if v is not None}
    print(" ".join(f"{k}={v:.4g}" for k, v in row.items()))
    print(f"wrote {args.out / 'metrics.json'} and {args.out / 'index.html'} ({len(result.plots)} plots)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from caloflow.evaluation.demo import DemoConfig, run_demo

    config = DemoConfig(
        repo=args.repo,
        runs_dir=args.runs_dir,
        data=args.data,
        out=args.out,
        particles=tuple(p.strip() for p in args.particles.split(",") if p.strip()),
        count=args.count,
        teacher_count=args.teacher_count,
        reference_seed=args.reference_seed,
        seed=args.seed,
        runs=args.runs,
        device=args.device,
        classifier=_settings(args),
        threads=1 if args.threads is None else args.threads,
        fpd_min_samples=args.fpd_min_samples,
        fpd_max_samples=args.fpd_max_samples,
        kpd_batch_size=args.kpd_batch_size,
        progress=not args.no_progress,
    )
    summary = run_demo(config)
    print(summary.read_text())
    return 0
