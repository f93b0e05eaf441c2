"""The ``--dataset D`` option every command shares, with ``--particle photon|pion`` as Dataset 1's short form."""

from __future__ import annotations

import argparse
from typing import Any

from caloflow.cli import CLIError


def add_dataset_option(parser: argparse.ArgumentParser, *, required: bool = True, what: str = "the dataset") -> None:
    """``--dataset`` (a registry name) and ``--particle`` (photon|pion: ds1-photon / ds1-pion)."""
    from caloflow.data.datasets import DATASET_NAMES, ds1_particles

    parser.add_argument(
        "--dataset",
        choices=DATASET_NAMES,
        help=f"{what}: {', '.join(DATASET_NAMES)}" + (" (this or --particle is required)" if required else ""),
    )
    parser.add_argument(
        "--particle",
        choices=ds1_particles(),
        help="Dataset 1 short form: photon = ds1-photon, pion = ds1-pion",
    )
    parser.set_defaults(_dataset_required=required)


def dataset_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~caloflow.data.datasets.Dataset` that ``--dataset`` / ``--particle`` name (None if neither)."""
    from caloflow.data.datasets import dataset

    by_name = None if args.dataset is None else dataset(args.dataset)
    by_particle = None if args.particle is None else dataset(args.particle)
    if by_name is not None and by_particle is not None and by_name != by_particle:
        raise CLIError(f"--particle {args.particle} means {by_particle.name}, but --dataset is {by_name.name}")
    chosen = by_name or by_particle
    if chosen is None and getattr(args, "_dataset_required", True):
        raise CLIError("say which dataset: --dataset NAME (or --particle photon|pion for Dataset 1)")
    return chosen
