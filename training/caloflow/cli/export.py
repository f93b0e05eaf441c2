"""``caloflow export RUN_DIR --repo DIR --model NAME``: publish a trained run as the model's next version."""

from __future__ import annotations

import argparse
import os
from typing import Any

DEFAULT_FORMATS = "onnx,fast_onnx,torchscript,torch_export"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "export", help="export a trained run (whole sampler) into the versioned model repository"
    )
    parser.add_argument("run", help="run directory written by `caloflow train`")
    parser.add_argument("--repo", default=os.environ.get("CALOFLOW_REPO", "model_repo"), help="repository root")
    parser.add_argument("--model", required=True, help="model name, e.g. caloflow_photon")
    parser.add_argument("--formats", default=DEFAULT_FORMATS, help=f"comma-separated (default {DEFAULT_FORMATS})")
    parser.add_argument(
        "--dense", action="store_true", help="full-precision dense weights (default: compact fp16, masked-packed)"
    )
    parser.add_argument("--make-default", action="store_true", help="point the model's default at the new version")
    parser.add_argument("--description", default=None)
    parser.add_argument(
        "--renormalise",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="iCaloFlow: scale generated layers to flow-1's energies (default: the run's setting)",
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from caloflow.cli import CLIError
    from caloflow.publish import publish_run
    from caloflow.training.run_dir import run_family
    from caloflow_repo import RepositoryError

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    family = run_family(args.run)
    if args.renormalise is not None and family != "icaloflow":
        raise CLIError(f"--renormalise applies to iCaloFlow runs; {args.run} is a {family} run")
    if family == "icaloflow":
        return _handle_icaloflow(args, formats)
    if family == "l2lflows":
        return _handle_l2lflows(args, formats)
    try:
        published = publish_run(args.run, args.repo, args.model, formats=formats, **_options(args))
    except RepositoryError as exc:
        raise CLIError(str(exc)) from exc
    _print_published(published.model, published.version, published.manifest, published.manifest.particle)
    return 0


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"compact": not args.dense, "make_default": args.make_default, "description": args.description}


def _print_published(model: str, version: int, manifest: Any, what: str) -> None:
    print(f"{model} version {version}: {what}, {manifest.total_size_bytes:,d} bytes")
    for artifact in manifest.artifacts:
        print(f"  {artifact.filename:<15} {artifact.format:<12} {artifact.size_bytes:>12,d}  sha256 {artifact.sha256}")


def _handle_icaloflow(args: argparse.Namespace, formats: list[str]) -> int:
    from caloflow.families.icaloflow.export import FORMATS, publish_run

    chosen = [f for f in formats if f in FORMATS] if args.formats == DEFAULT_FORMATS else formats
    options = {**_options(args), "renormalise": args.renormalise}
    version, manifest, _ = publish_run(args.run, args.repo, args.model, formats=chosen, **options)
    _print_published(args.model, version, manifest, manifest.dataset)
    return 0


def _handle_l2lflows(args: argparse.Namespace, formats: list[str]) -> int:
    from caloflow.cli import CLIError
    from caloflow.families.l2lflows.export import L2L_FORMATS
    from caloflow.families.l2lflows.publish import publish_l2l_run

    chosen = list(L2L_FORMATS) if args.formats == DEFAULT_FORMATS else formats
    if unknown := [f for f in chosen if f not in L2L_FORMATS]:
        raise CLIError(f"--formats: L2LFlows exports {list(L2L_FORMATS)}, not {unknown}")
    published = publish_l2l_run(args.run, args.repo, args.model, **_options(args))
    _print_published(published.model, published.version, published.manifest, published.manifest.dataset)
    return 0
