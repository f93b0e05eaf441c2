"""The ``caloflow`` console command.

Each command group lives in its own module with a ``register(subparsers)`` function; modules are
imported only when the group is listed, and their heavy imports (torch, h5py) happen inside the
handlers, so ``caloflow --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from caloflow import __version__
from caloflow.errors import CaloflowError

# command group -> module under caloflow.cli
_GROUPS: tuple[str, ...] = (
    "data",
    "train",
    "sample",
    "export",
    "repo",
    "serve",
    "bench",
    "generate",
    "models",
    "evaluate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caloflow",
        description="CaloFlow calorimeter showers for CaloChallenge Dataset 1: data, training, export, serving.",
    )
    parser.add_argument("--version", action="version", version=f"caloflow {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _GROUPS:
        importlib.import_module(f"caloflow.cli.{group}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `caloflow data check ... | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except CaloflowError as exc:
        print(f"caloflow: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


class CLIError(CaloflowError):
    """A user-facing error of the command line itself: printed as one line, exit code 2."""


__all__ = ["CLIError", "build_parser", "main"]
