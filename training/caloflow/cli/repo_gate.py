"""``caloflow repo gate MODEL --precision MODE``: run the fidelity gate of a precision mode and record it.

The record (device class, versions, N, seeds, every figure, the verdict) is written into the version's
manifest under ``extra.precision_gates.<MODE>`` (``--no-record``: printed only); the server enables the mode only
on the device class of a passing record. See ``caloflow.precision.gate``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from caloflow.cli import CLIError
from caloflow.precision.gate import GateSettings, gate_model_version
from caloflow_repo import DEFAULT_PRECISION, PRECISIONS, ModelRepository
from caloflow_server.errors import CaloflowServerError

logger = logging.getLogger(__name__)

Add = Callable[[Any, str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]
Repository = Callable[[argparse.Namespace], ModelRepository]


def add_gate_command(sub: Any, add: Add, repository: Repository) -> None:
    gate = add(sub, "gate", "run a precision mode's fidelity gate and record it in the manifest", _handler(repository))
    gate.add_argument("model", metavar="MODEL")
    gate.add_argument("version", nargs="?", metavar="VERSION", help="default: the default version")
    modes = [mode for mode in PRECISIONS if mode != DEFAULT_PRECISION]
    gate.add_argument("--precision", required=True, choices=modes, help="the mode to gate against fp32-strict")
    gate.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (the record's device class)")
    gate.add_argument("--n", type=int, default=GateSettings.n, help="showers per sample (default %(default)s)")
    gate.add_argument("--seed", type=int, default=GateSettings.seed, help="energies/noise seed (%(default)s)")
    gate.add_argument("--batch", type=int, default=GateSettings.batch, help="batch size (%(default)s)")
    gate.add_argument("--epochs", type=int, default=GateSettings.classifier_epochs, help="classifier epochs")
    gate.add_argument("--threads", type=int, default=None, help="intra-op threads (ONNX Runtime and torch)")
    gate.add_argument("--no-record", action="store_true", help="print the record, leave the manifest alone")
    gate.add_argument("--out", type=Path, help="also write the record to this JSON file")


def _handler(repository: Repository) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        settings = GateSettings(n=args.n, seed=args.seed, batch=args.batch, classifier_epochs=args.epochs)
        repo = repository(args)
        try:
            record = gate_model_version(
                repo,
                args.model,
                args.version,
                args.precision,
                device=args.device,
                settings=settings,
                threads=args.threads,
            )
        except (ValueError, CaloflowServerError) as exc:
            raise CLIError(f"{args.model}: cannot gate {args.precision}: {exc}") from exc
        text = json.dumps(record, indent=2, allow_nan=False)
        if args.out is not None:
            args.out.write_text(text + "\n", encoding="utf-8")
        if not args.no_record:
            version = args.version if args.version is not None else repo.default_version(args.model)
            repo.record_precision_gate(args.model, version, args.precision, record)
        print(text)
        failed = ", ".join(record["failed"]) or "none"
        print(f"{args.model}: {args.precision} on {record['device_class']}: {record['verdict']} (failed: {failed})")
        return 0

    return run
