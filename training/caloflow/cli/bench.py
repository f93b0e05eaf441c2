"""``caloflow bench ...``: benchmarks that print figures (never timed tests).

Each subcommand lives in its own module under ``caloflow.bench`` with a ``register(subparsers)`` function;
heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# subcommand -> module under caloflow.bench
_SUBCOMMANDS: tuple[str, ...] = ("serve", "generate")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("bench", help="benchmarks: generation speed, serving")
    sub = parser.add_subparsers(dest="bench_command", required=True, metavar="SUBCOMMAND")
    for name in _SUBCOMMANDS:
        importlib.import_module(f"caloflow.bench.{name}").register(sub)
