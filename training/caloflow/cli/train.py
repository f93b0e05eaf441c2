"""``caloflow train {flow1,teacher,student,all}``: train CaloFlow on a CaloChallenge file.

``--dataset`` names the dataset (``--particle photon|pion`` is Dataset 1's short form). The CaloFlow family
trains Dataset 1, iCaloFlow (:mod:`caloflow.families.icaloflow`) Datasets 2 and 3, L2LFlows
(:mod:`caloflow.families.l2lflows`) the ILD grid.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from caloflow.cli._dataset import add_dataset_option, dataset_from_args

STAGE_CHOICES = {"flow1": ("flow1",), "teacher": ("teacher",), "student": ("student",)}


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "train", help="train flow-I, the MAF teacher and the distilled IAF student"
    )
    sub = parser.add_subparsers(dest="train_command", required=True, metavar="STAGE")
    for name, help_text in (
        ("flow1", "flow-I: layer energies given the incident energy"),
        ("teacher", "flow-II teacher (MAF): voxels given layer energies"),
        ("student", "flow-II student (IAF), distilled from the teacher (needs flow1 and teacher in --out)"),
        ("all", "flow-I, teacher and student in one go"),
    ):
        stage_parser = sub.add_parser(name, help=help_text, description=help_text)
        _add_options(stage_parser)
        stage_parser.set_defaults(handler=_handle, stages=STAGE_CHOICES.get(name, ("flow1", "teacher", "student")))


GRID_ONLY_PRESETS = ("full", "tiny-full")
"""L2LFlows' whole-grid presets; the other families refuse them by name."""


def _add_options(parser: argparse.ArgumentParser) -> None:
    add_dataset_option(parser)
    parser.add_argument("--data", help="training file, CaloChallenge HDF5 (e.g. dataset_1_photons_1.hdf5)")
    parser.add_argument(
        "--preset",
        default="small",
        choices=("paper", "small", "tiny", *GRID_ONLY_PRESETS),
        help="full, tiny-full: L2LFlows on the whole 30 x 30 grid (ild-photon only)",
    )
    parser.add_argument("--out", help="run directory (created; reused with --resume)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all)")
    parser.add_argument("--max-showers", type=int, default=None, help="use only the first N showers of the file")
    parser.add_argument("--epochs-flow1", type=int, default=None, help="override the preset's flow-I epochs")
    parser.add_argument("--epochs-teacher", type=int, default=None)
    parser.add_argument("--epochs-student", type=int, default=None)
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoints")
    parser.add_argument("--dry-run", action="store_true", help="print the models and parameter counts, train nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--full-degrees", action="store_true", help="iCaloFlow: MADE widths >= D - 1 (paper DS3 truncates degrees)"
    )
    parser.add_argument(
        "--renormalise",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="iCaloFlow: scale generated layers to flow-1's energies (default; --no-renormalise: the reference)",
    )


def _handle(args: argparse.Namespace) -> int:
    from caloflow.cli import CLIError
    from caloflow.training import runner

    ds = dataset_from_args(args)
    from caloflow.families.icaloflow import runner as icaloflow
    from caloflow.families.l2lflows import runner as l2lflows

    if args.preset in GRID_ONLY_PRESETS and ds.name not in l2lflows.DATASETS:
        raise CLIError(
            f"--preset {args.preset}: a whole-grid L2LFlows preset ({', '.join(l2lflows.DATASETS)} only); "
            f"--dataset {ds.name} takes paper, small or tiny"
        )
    if ds.name in icaloflow.DATASETS:
        return icaloflow.handle_train(args, ds)
    if ds.name in l2lflows.DATASETS:
        return l2lflows.handle_train(args, ds)
    if not ds.is_ds1:
        raise CLIError(
            f"--dataset {ds.name}: the CaloFlow family trains Dataset 1 (ds1-photon, ds1-pion) only; "
            f"no family trains {ds.name} yet"
        )
    particle = ds.particle
    preset = runner.resolve_preset(args.preset, particle, args.epochs_flow1, args.epochs_teacher, args.epochs_student)
    if args.dry_run:
        print(runner.describe_preset(preset))
        return 0
    if not args.data or not args.out:
        raise CLIError("--data and --out are required (unless --dry-run)")
    summary = runner.run_training(
        particle=particle,
        data_path=args.data,
        preset=preset,
        out=args.out,
        stages=args.stages,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        max_showers=args.max_showers,
        resume=args.resume,
        progress=not args.no_progress,
    )
    print(json.dumps(runner.headline(summary), indent=2))
    return 0


def require_data_and_out(args: argparse.Namespace) -> None:
    """Refuse a training command without ``--data`` or ``--out`` (any family; a dry run needs neither)."""
    from caloflow.cli import CLIError

    if not args.data or not args.out:
        raise CLIError("--data and --out are required (unless --dry-run)")


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of a family's training entry point that come straight from the command line."""
    return {
        "data_path": args.data,
        "out": args.out,
        "stages": args.stages,
        "seed": args.seed,
        "max_showers": args.max_showers,
        "resume": args.resume,
        "progress": not args.no_progress,
    }
