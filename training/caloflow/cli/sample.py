"""``caloflow sample RUN_DIR --out FILE``: generate showers locally from a trained run (no server).

Any family's run: a CaloFlow or iCaloFlow run writes a CaloChallenge file; an L2LFlows run writes an ILD file
with its crop embedded in the full grid and the ``crop`` attribute (``--flow teacher``: the MAF teacher chain,
the published L2LFlows generation; ``student``: the distilled chain). ``--renormalise/--no-renormalise``
overrides an iCaloFlow run's layer renormalisation.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sample",
        help="generate showers from a trained run directory into its dataset's file (CaloChallenge or ILD layout)",
    )
    parser.add_argument("run", help="run directory written by `caloflow train`")
    parser.add_argument("--out", required=True, help="output HDF5 file, in the run's dataset's layout")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--scale", type=float, default=0.1, help="the dataset's file energies scaled by F (default 0.1)"
    )
    source.add_argument(
        "--energies-from", help="use the incident energies of this file (CaloChallenge or ILD layout), in order"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--flow",
        choices=("student", "teacher"),
        default="student",
        help="teacher is slow (D passes; for L2LFlows the MAF layer chain)",
    )
    parser.add_argument(
        "--renormalise",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="iCaloFlow: scale each generated layer to flow-1's energy before the cut (default: the run's setting)",
    )
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from caloflow.training.sampling import sample_to_file

    path = sample_to_file(
        args.run,
        args.out,
        scale=args.scale,
        energies_from=args.energies_from,
        seed=args.seed,
        flow=args.flow,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
        renormalise=args.renormalise,
    )
    print(f"wrote {path}")
    return 0
