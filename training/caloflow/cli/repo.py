"""``caloflow repo ...``: inspect, verify and roll back the versioned model repository.

* ``caloflow repo list``: models, versions (``*`` marks the default), particle, stand-in flag, sizes.
* ``caloflow repo show MODEL [VERSION]``: one version's manifest, summarised.
* ``caloflow repo verify [MODEL [VERSION]]``: recompute every artifact's size and sha256 (all when omitted), and
  the quality report's against ``quality.sha256``.
* ``caloflow repo quality MODEL [VERSION] --reference REF.h5 [--n N] [--seed S] [--batch B] [--threads T]``:
  generate N showers with the version as served, evaluate them against REF.h5 and write ``quality.json`` (and
  its checksum) beside the artifacts (:mod:`caloflow.evaluation.quality`; ``make quality`` for the demo models);
  ``--keep DIR`` keeps the generated file and the evaluation's page and plots; a crop model (L2LFlows) is
  evaluated on its crop region only.
* ``caloflow repo set-default MODEL VERSION``: move the default pointer (one-step rollback).
* ``caloflow repo prune MODEL``: remove every version but the default (e.g. the committed demo models).
* ``caloflow repo gate MODEL [VERSION] --precision MODE``: a precision mode's fidelity gate, recorded in the
  manifest (``caloflow.cli.repo_gate``).

Every subcommand takes ``--repo DIR`` (default: ``$CALOFLOW_REPO``, else ``model_repo``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from caloflow.cli import CLIError
from caloflow.cli.repo_gate import add_gate_command
from caloflow_repo import (
    ArtifactInfo,
    Manifest,
    ModelRepository,
    QualityNotFoundError,
    RepositoryError,
    parse_version,
)

DEFAULT_REPO = "model_repo"
REPO_ENV = "CALOFLOW_REPO"

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("repo", help="the versioned model repository")
    sub = parser.add_subparsers(dest="repo_command", required=True, metavar="SUBCOMMAND")
    _add(sub, "list", "models and versions (* marks the default)", _list)
    show = _add(sub, "show", "summarise one version's manifest", _show)
    show.add_argument("model", metavar="MODEL")
    show.add_argument("version", nargs="?", metavar="VERSION", help="default: the default version")
    verify = _add(sub, "verify", "recompute artifact sizes and sha256 digests", _verify)
    verify.add_argument("model", nargs="?", metavar="MODEL", help="default: every model")
    verify.add_argument("version", nargs="?", metavar="VERSION", help="default: every version")
    set_default = _add(sub, "set-default", "point the model's default at VERSION (rollback)", _set_default)
    set_default.add_argument("model", metavar="MODEL")
    set_default.add_argument("version", metavar="VERSION")
    prune = _add(sub, "prune", "remove every version of MODEL but the default", _prune)
    prune.add_argument("model", metavar="MODEL")
    add_gate_command(sub, _add, _repository)
    _register_quality(sub)


def _register_quality(sub: Any) -> None:
    from caloflow.evaluation.quality import QualityConfig

    q = _add(sub, "quality", "evaluate a version as served and write its quality.json", _quality)
    d = QualityConfig(repo=Path(), model="", reference=Path())
    q.add_argument("model", metavar="MODEL")
    q.add_argument("version", nargs="?", metavar="VERSION", help="default: the default version")
    q.add_argument("--reference", type=Path, required=True, help="reference HDF5 file of the model's dataset")
    q.add_argument("--n", type=int, default=d.n, help=f"showers generated and compared ({d.n})")
    q.add_argument("--seed", type=int, default=d.seed, help=f"noise and classifier seed ({d.seed})")
    q.add_argument("--batch", type=int, default=d.batch, help=f"showers per model call, timed ({d.batch})")
    q.add_argument("--threads", type=int, default=d.threads, help=f"intra-op and torch threads ({d.threads})")
    q.add_argument("--device", default=d.device, help=f"cpu or cuda ({d.device})")
    q.add_argument("--metrics", default="all", help="'all' or a comma list, as caloflow evaluate --metrics (all)")
    q.add_argument("--runs", type=int, default=d.runs, help=f"classifier runs per mode ({d.runs})")
    q.add_argument("--cls-hidden", type=int, default=d.classifier.hidden)
    q.add_argument("--cls-epochs", type=int, default=d.classifier.epochs)
    q.add_argument("--cls-batch-size", type=int, default=d.classifier.batch_size)
    q.add_argument("--fpd-min-samples", type=int, default=d.fpd_min_samples)
    q.add_argument("--fpd-max-samples", type=int, default=d.fpd_max_samples)
    q.add_argument("--kpd-batch-size", type=int, default=d.kpd_batch_size)
    q.add_argument("--prdc-max-samples", type=int, default=d.prdc_max_samples)
    q.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the generated showers (DIR/generated.h5) and the evaluation's metrics.json, index.html and plots "
        "(DIR/evaluation); default: a scratch directory, removed",
    )
    q.add_argument("--no-progress", action="store_true")


def _add(sub: Any, name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    parser.add_argument(
        "--repo", type=Path, metavar="DIR", help=f"repository root (default: ${REPO_ENV}, else {DEFAULT_REPO})"
    )
    parser.set_defaults(handler=_translating_errors(handler))
    return parser


def _translating_errors(handler: Handler) -> Handler:
    """Repository errors become one-line CLI errors (exit code 2); caloflow_repo cannot know the CLI."""

    @functools.wraps(handler)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except RepositoryError as exc:
            raise CLIError(str(exc)) from exc

    return wrapper


def _repository(args: argparse.Namespace) -> ModelRepository:
    root = args.repo or Path(os.environ.get(REPO_ENV) or DEFAULT_REPO)
    return ModelRepository(root)


# ---------------------------------------------------------------------------------------------- handlers


def _list(args: argparse.Namespace) -> int:
    repo = _repository(args)
    models = repo.models()
    if not models:
        print(f"no models in {repo.root}")
        return 0
    rows: list[tuple[str, ...]] = [("MODEL", "VERSION", "PARTICLE", "DATA", "SIZE", "ARTIFACTS", "CREATED")]
    for model in models:
        rows.extend(_version_rows(repo, model))
    print(f"model repository {repo.root} (* = default version)")
    for line in _table(rows):
        print(line)
    return 0


def _version_rows(repo: ModelRepository, model: str) -> Iterator[tuple[str, ...]]:
    default = _default_or_none(repo, model)
    for version in repo.versions(model):
        mark = "*" if version == default else " "
        try:
            m = repo.manifest(model, version)
        except RepositoryError as exc:
            yield (model, f"{mark}{version}", "INVALID", "", "", str(exc), "")
            continue
        data = "stand-in" if m.standin else "real"
        files = ", ".join(a.filename for a in m.artifacts)
        yield (model, f"{mark}{version}", m.particle, data, _format_bytes(m.total_size_bytes), files, m.created_utc)


def _show(args: argparse.Namespace) -> int:
    repo = _repository(args)
    manifest = repo.manifest(args.model, args.version)
    is_default = manifest.version == _default_or_none(repo, args.model)
    print(f"{manifest.model} version {manifest.version}{' (default)' if is_default else ''}")
    for line in _table(_summary_rows(manifest)):
        print(f"  {line}")
    print("  artifacts:")
    for line in _table([_artifact_row(a) for a in manifest.artifacts]):
        print(f"    {line}")
    print("  quality:")
    for line in _quality_lines(repo, manifest):
        print(f"    {line}")
    return 0


def _quality_lines(repo: ModelRepository, manifest: Manifest) -> list[str]:
    from caloflow.evaluation.quality import summary_lines

    try:
        data, digest = repo.quality(manifest.model, manifest.version)
    except QualityNotFoundError:
        return ["none (caloflow repo quality MODEL VERSION --reference REF.h5 writes one)"]
    return [f"quality.json sha256 {digest[:16]} (verified)", *summary_lines(json.loads(data))]


def _quality(args: argparse.Namespace) -> int:
    from caloflow.evaluation import ClassifierSettings, parse_metrics
    from caloflow.evaluation.quality import QualityConfig, make_quality_report, summary_lines

    root = args.repo or Path(os.environ.get(REPO_ENV) or DEFAULT_REPO)
    config = QualityConfig(
        repo=root,
        model=args.model,
        version=None if args.version is None else parse_version(args.version),
        reference=args.reference,
        n=args.n,
        seed=args.seed,
        batch=args.batch,
        threads=args.threads,
        device=args.device,
        metrics=parse_metrics(args.metrics),
        runs=args.runs,
        classifier=ClassifierSettings(hidden=args.cls_hidden, epochs=args.cls_epochs, batch_size=args.cls_batch_size),
        fpd_min_samples=args.fpd_min_samples,
        fpd_max_samples=args.fpd_max_samples,
        kpd_batch_size=args.kpd_batch_size,
        prdc_max_samples=args.prdc_max_samples,
        progress=not args.no_progress,
        keep=args.keep,
    )
    path, report = make_quality_report(config)
    print(f"wrote {path} (its sha256 in {path.with_suffix('.sha256').name})")
    for line in summary_lines(report):
        print(f"  {line}")
    return 0


def _summary_rows(m: Manifest) -> list[tuple[str, str]]:
    low, high = m.energy_range_mev
    shape = " x ".join(str(n) for n in m.shower_shape)
    layers = m.geometry.get("layers")
    voxels = f"{m.n_voxels} voxels" + (f" in {len(layers)} layers" if isinstance(layers, list) else "")
    crop = m.geometry.get("crop")
    where = f", cells x {crop['x_cells']} z {crop['z_cells']} of {crop['full_shape']}" if isinstance(crop, dict) else ""
    return [
        ("dataset", m.dataset),
        ("particle", m.particle),
        ("data", "STAND-IN showers, not Geant4" if m.standin else f"{m.dataset} (Geant4)"),
        ("description", m.description or "-"),
        ("geometry", f"{m.geometry.get('name', '-')} (pid {m.geometry.get('pid', '-')}): {voxels}{where}"),
        ("shower shape", shape),
        ("energy range", f"{low:,.10g} - {high:,.10g} MeV"),
        ("noise_dim", str(m.noise_dim)),
        ("inputs", "; ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in m.inputs)),
        ("outputs", "; ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in m.outputs)),
        ("training", _compact(m.training)),
        ("preprocessing", _compact(m.preprocessing)),
        ("created", f"{m.created_utc} by {m.producer}"),
        ("size", _format_bytes(m.total_size_bytes)),
        *([("extra", _compact(m.extra))] if m.extra else []),
    ]


def _artifact_row(artifact: ArtifactInfo) -> tuple[str, ...]:
    return (
        artifact.filename,
        f"{artifact.format} {artifact.format_version}",
        _format_bytes(artifact.size_bytes),
        f"sha256 {artifact.sha256[:16]}",
    )


def _verify(args: argparse.Namespace) -> int:
    repo = _repository(args)
    if args.model is None:
        targets = [(model, version) for model in repo.models() for version in repo.versions(model)]
    elif args.version is None:
        targets = [(args.model, version) for version in repo.versions(args.model)]
    else:
        targets = [(args.model, args.version)]
    if not targets:
        raise CLIError(f"nothing to verify in {repo.root}")
    for model, version in targets:
        m = repo.verify(model, version)
        print(f"OK {model}/{m.version}: {len(m.artifacts)} artifacts, {_format_bytes(m.total_size_bytes)}")
    return 0


def _set_default(args: argparse.Namespace) -> int:
    repo = _repository(args)
    previous = _default_or_none(repo, args.model)
    manifest = repo.set_default(args.model, args.version)
    before = "none" if previous is None else str(previous)
    print(f"{manifest.model}: default version {before} -> {manifest.version} (verified; config.pbtxt rewritten)")
    return 0


def _prune(args: argparse.Namespace) -> int:
    repo = _repository(args)
    default = repo.default_version(args.model)
    removed = [version for version in repo.versions(args.model) if version != default]
    for version in removed:
        repo.remove_version(args.model, version)
    print(f"{args.model}: removed versions {removed or 'none'}, kept the default version {default}")
    return 0


# ---------------------------------------------------------------------------------------------- formatting


def _default_or_none(repo: ModelRepository, model: str) -> int | None:
    try:
        return repo.default_version(model)
    except RepositoryError:
        return None


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def _compact(value: dict[str, Any]) -> str:
    text = json.dumps(value, separators=(", ", ": "))
    return text if len(text) <= 200 else text[:197] + "..."


def _format_bytes(size_bytes: int) -> str:
    if size_bytes < 1024:
        return f"{size_bytes} B"
    size = size_bytes / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
