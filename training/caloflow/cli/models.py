"""``caloflow models --server URL_OR_HOST:PORT [--grpc] [--json]``: the models and versions a server has loaded.

Through the torch-free client (imported in the handler); the server options are ``caloflow generate``'s.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from caloflow.cli import CLIError
from caloflow.cli.generate import add_server_arguments

if TYPE_CHECKING:
    from caloflow_client import ModelInfo


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser("models", help="list a caloflow-serve server's models")
    add_server_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_models)


def _models(args: argparse.Namespace) -> int:
    from caloflow_client import CaloflowClientError, connect

    try:
        with connect(args.server, grpc=args.grpc, timeout_s=args.timeout) as client:
            models = client.models()
    except CaloflowClientError as exc:
        raise CLIError(f"{args.server}: {exc}") from None
    print(json.dumps([asdict(model) for model in models], indent=2) if args.json else render(models))
    return 0


def render(models: list[ModelInfo]) -> str:
    """One line per loaded version; ``*`` marks the version a request without one gets."""
    lines = [f"{'model':<20}{'particle':<10}{'version':>9}{'voxels':>8}  {'energy range (MeV)':<22}{'sha256':<14}data"]
    for model in models:
        for version in model.versions:
            mark = "*" if version.version == model.default_version else " "
            energy = f"{version.energy_min_mev:g}-{version.energy_max_mev:g}"
            data = "stand-in (not Geant4)" if version.standin else "-"
            lines.append(
                f"{model.name:<20}{model.particle:<10}{version.version:>8}{mark}{version.n_voxels:>8}  "
                f"{energy:<22}{version.artifact_sha256[:12]:<14}{data}"
            )
    if not models:
        lines.append("(no models loaded)")
    return "\n".join(lines)
