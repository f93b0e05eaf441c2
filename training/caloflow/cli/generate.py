"""``caloflow generate``: showers from a running caloflow-serve, written to the dataset's official ``.h5`` or ``.npy``.

* ``caloflow generate --server URL_OR_HOST:PORT [--grpc] (--dataset D | --particle P | --model M) (--energy-mev E
  --count N | --energies-file F) [--seed S] --out FILE.h5|.npy``

The ``.h5`` is written in the layout the stream's header names (``file_layout``): CaloChallenge
(``incident_energies`` MeV, ``showers``) or ILD (group ``30x30``: ``energy`` GeV, ``layers`` MeV).

The work is the torch-free client's (``caloflow_client``, imported in the handler): streamed to the file chunk by
chunk, resumed after a dropped connection with the same seed, so the file equals an uninterrupted download. The
server-address options are shared with ``caloflow models``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caloflow.cli import CLIError
from caloflow.cli._dataset import add_dataset_option, dataset_from_args

if TYPE_CHECKING:
    from caloflow_client import GenerateRequest

_ENERGIES_HELP = (
    "one incident energy (MeV) per shower: a text file (numbers separated by white space, '#' comments), "
    "a .npy array, or a .h5/.hdf5 file's incident_energies dataset (e.g. a CaloChallenge file)"
)


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "generate", help="generate showers on a caloflow-serve server into a .h5 (official layout) or .npy file"
    )
    add_server_arguments(p)
    add_dataset_option(p, required=False, what="the dataset whose default model generates")
    p.add_argument("--model", help="a model name (instead of, or to pin, --dataset / --particle)")
    p.add_argument("--model-version", help="default: the model's default version")
    p.add_argument("--energy-mev", type=float, help="incident energy of every shower (with --count)")
    p.add_argument("--count", type=int, help="number of showers (with --energy-mev)")
    p.add_argument("--energies-file", type=Path, metavar="FILE", help=_ENERGIES_HELP)
    p.add_argument("--seed", type=int, help="default: drawn by the server and recorded in the file")
    p.add_argument("--start-index", type=int, default=0, help="index of the first shower (default 0)")
    p.add_argument("--allow-extrapolation", action="store_true", help="allow energies outside the trained range")
    p.add_argument(
        "--out", type=Path, required=True, help=".h5/.hdf5 (the dataset's official layout) or .npy (showers)"
    )
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="HDF5 dataset type")
    p.add_argument("--retries", type=int, default=5, help="consecutive failed attempts retried (default 5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_generate)


def add_server_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server",
        required=True,
        metavar="URL_OR_HOST:PORT",
        help="http://host:port or host:port (HTTP, default port 8000); with --grpc, host:port (default port 8001)",
    )
    p.add_argument("--grpc", action="store_true", help="use the native gRPC API instead of HTTP")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server's next data (60)")


def request_of(args: argparse.Namespace) -> GenerateRequest:
    """The request the options describe; a ``CLIError`` naming the option when they do not."""
    from caloflow_client import GenerateRequest as Request
    from caloflow_client import InvalidRequestError, read_energies_file

    if args.particle is None and args.model is None and args.dataset is None:
        raise CLIError("give --dataset, --particle or --model")
    dataset_from_args(args)  # --dataset and --particle, when both given, must name one dataset
    homogeneous = args.energy_mev is not None or args.count is not None
    if homogeneous == (args.energies_file is not None):
        raise CLIError("give --energy-mev and --count, or --energies-file")
    if homogeneous and (args.energy_mev is None or args.count is None):
        raise CLIError(f"--{'count' if args.count is None else 'energy-mev'} is missing: give both or --energies-file")
    try:
        return Request.build(
            particle=args.particle,
            dataset=args.dataset,
            model=args.model,
            model_version=args.model_version,
            energy_mev=args.energy_mev,
            count=args.count,
            energies_mev=None if args.energies_file is None else read_energies_file(args.energies_file),
            seed=args.seed,
            start_index=args.start_index,
            allow_extrapolation=args.allow_extrapolation,
        )
    except InvalidRequestError as exc:
        raise CLIError(f"--{exc.field.replace('_', '-')}: {exc.reason}") from None


def _generate(args: argparse.Namespace) -> int:
    from caloflow_client import CaloflowClientError, connect

    request = request_of(args)
    try:
        with connect(args.server, grpc=args.grpc, timeout_s=args.timeout, max_retries=args.retries) as client:
            info = client.generate_to_file(args.out, request, progress=not args.no_progress, dtype=args.dtype)
    except CaloflowClientError as exc:
        raise CLIError(f"{args.server}: {exc}") from None
    standin = ", stand-in model: not Geant4" if info.standin else ""
    print(
        f"wrote {args.out}: {info.count} {info.particle} showers from {info.model} v{info.version} "
        f"(seed {info.seed}{standin}); {info.dataset}, shape {info.shape} per shower, {info.file_layout} layout"
    )
    return 0
