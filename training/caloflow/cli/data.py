"""``caloflow data ...``: stand-in data, checking files, where to get the official files of each dataset.

``--dataset D`` names a registry dataset (``caloflow.data.datasets``); ``--particle photon|pion`` is the short
form of ``ds1-photon`` / ``ds1-pion``.

* ``caloflow data standin --dataset D --out FILE [--seed N] [--scale F] [--no-progress]``
* ``caloflow data check FILE --dataset D``: validate every value and print a one-screen summary.
* ``caloflow data real [--dataset D] [--verify FILE]``: the official files, and verifying a Dataset 1 copy.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from caloflow.cli import CLIError
from caloflow.cli._dataset import add_dataset_option, dataset_from_args


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("data", help="CaloChallenge data files")
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    _register_standin(sub)
    _register_check(sub)
    _register_real(sub)


def _register_standin(sub: Any) -> None:
    p = sub.add_parser("standin", help="write a stand-in shower file (NOT Geant4) in a dataset's official format")
    add_dataset_option(p)
    p.add_argument("--out", type=Path, required=True, help="output HDF5 file")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the official file's showers")
    _add_no_progress(p)
    p.set_defaults(handler=_standin)


def _register_check(sub: Any) -> None:
    p = sub.add_parser("check", help="validate a dataset's HDF5 file and summarise it")
    p.add_argument("file", type=Path, metavar="FILE")
    add_dataset_option(p)
    p.add_argument(
        "--chunk-rows", type=int, help="showers read at a time (default: 64 MiB of float64 voxels, at most 10 000)"
    )
    _add_no_progress(p)
    p.set_defaults(handler=_check)


def _register_real(sub: Any) -> None:
    p = sub.add_parser("real", help="where to get the official files of each dataset, and verify a copy")
    p.add_argument("--verify", type=Path, metavar="FILE", help="verify a downloaded official file")
    add_dataset_option(p, required=False, what="the dataset (default: all; for --verify: from the file name)")
    _add_no_progress(p)
    p.set_defaults(handler=_real)


def _add_no_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


@contextmanager
def _progress(total: int, unit: str, enabled: bool, desc: str) -> Iterator[Callable[[int], None]]:
    """A callback advancing a tqdm bar on stderr (a no-op when disabled)."""
    from tqdm import tqdm

    with tqdm(total=total, unit=unit, unit_scale=True, desc=desc, disable=not enabled) as bar:
        yield bar.update


# ---------------------------------------------------------------------------------------------- handlers


def _standin(args: argparse.Namespace) -> int:
    from caloflow.data.standin import write_standin_file

    ds = dataset_from_args(args)
    write_standin_file(ds.name, args.out, seed=args.seed, scale=args.scale, progress=not args.no_progress)
    print(f"wrote {args.out} ({ds.name} stand-in showers, seed {args.seed}, NOT Geant4)")
    return 0


def _check(args: argparse.Namespace) -> int:
    from caloflow.data.dataset_files import check_dataset_file
    from caloflow.data.hdf5 import chunk_rows_for
    from caloflow.data.summary import summarize_shower_file

    ds = dataset_from_args(args)
    info = check_dataset_file(args.file, ds)
    with _progress(info.n_showers, "shower", not args.no_progress, "checking") as on_rows:
        rows = args.chunk_rows or chunk_rows_for(ds.n_voxels)
        summary = summarize_shower_file(args.file, ds, chunk_rows=rows, on_rows=on_rows)
    print(summary.render())
    print(f"OK: {args.file} is a valid {ds.name} file ({info.n_showers} showers)")
    return 0


def _real(args: argparse.Namespace) -> int:
    ds = dataset_from_args(args)
    if args.verify is None:
        print(_real_data_help(ds))
        return 0
    return _verify(args.verify, _particle_of(args.verify, ds), not args.no_progress)


def _particle_of(path: Path, ds: Any) -> Any:
    from caloflow.data.official import official_file

    official = official_file(path.name)
    if ds is not None and not ds.is_ds1:
        raise CLIError(
            f"--verify checks Dataset 1 files; for {ds.name} use: caloflow data check FILE --dataset {ds.name}"
        )
    particle = None if ds is None else ds.particle
    if official is None:
        if particle is None:
            raise CLIError(f"{path}: not an official file name; say which with --particle photon|pion")
        return particle
    if particle not in (None, official.particle):
        raise CLIError(f"{path}: the name says {official.particle}, but --particle is {particle}")
    return official.particle


def _verify(path: Path, particle: str, progress: bool) -> int:
    from caloflow.data.hdf5 import open_shower_file
    from caloflow.data.official import verify_official_file

    n_rows = open_shower_file(path).n_showers
    with (
        _progress(n_rows, "shower", progress, "checking values") as on_rows,
        _progress(path.stat().st_size, "B", progress, "hashing") as on_bytes,
    ):
        report = verify_official_file(path, particle, on_rows=on_rows, on_bytes=on_bytes)
    role = f" ({report.official.role} file)" if report.official else ""
    print(f"OK: {path} has the Dataset 1 {particle} shape, energy multiset and values{role}")
    print(f"  sha256 {report.sha256}")
    print(f"  md5    {report.md5}")
    if not report.checksum_known:
        print("  no recorded checksum for this file: compare the md5 with the Zenodo record's file listing")
    return 0


def _real_data_help(only: Any) -> str:
    from caloflow.data.datasets import DATASETS
    from caloflow.data.official import training_split

    lines = [
        "Official files. They cannot be downloaded from the machines this project is built and tested on:",
        "fetch them on a machine with internet access and copy them over.",
    ]
    for ds in DATASETS.values():
        if only is not None and ds is not only:
            continue
        shape = " x ".join(str(n) for n in ds.shower_shape)
        lines += ["", f"{ds.name}: {ds.title} - DOI {ds.doi} (https://doi.org/{ds.doi})"]
        lines.append(f"  {ds.layout} layout, showers of {shape} voxels, E_inc {ds.energies.describe()}")
        for f in ds.official_files:
            count = "?" if f.n_showers is None else str(f.n_showers)
            lines.append(f"  {f.name:<26} {f.role:<11} {count} showers")
        if ds.official_note:
            lines.append(f"  {ds.official_note}")
        if ds.is_ds1:
            n_train, n_val = training_split(ds.particle)
            lines.append(f"  _1: first {n_train} rows train, last {n_val} rows validation (file order)")
        lines.append(f"  evaluation reference: {ds.evaluation_reference}")
        lines.append(f"  check a copy: caloflow data check FILE --dataset {ds.name}")
    lines += [
        "",
        "Verify a Dataset 1 copy (shape, values, exact incident-energy multiset; prints sha256 and md5):",
        "  caloflow data real --verify dataset_1_photons_1.hdf5 --particle photon",
    ]
    return "\n".join(lines)
