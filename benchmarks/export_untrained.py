"""Export an untrained ``PRESET-PARTICLE`` build (e.g. the paper-size photon pipeline) into a model repository.

Usage::

    python benchmarks/export_untrained.py --model paper-photon --repo /tmp/s5fast/repo \
        --name paper_photon --formats fast_torch_export,fast_onnx

For measuring the served path of an architecture (``caloflow bench serve --repo DIR --model NAME``) without
training it: speed does not depend on the weights. The version goes through the same export, parity check and
manifest as ``caloflow export`` (compact fp16 weights unless ``--dense``); its description says it is untrained.
Never publish such a version into ``model_repo/``: its showers are noise.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import time
from pathlib import Path

import torch

from caloflow.bench._generate_runners import UNTRAINED, untrained
from caloflow.export import check_parity, export_sampler, reference_sampler
from caloflow.publish import build_manifest
from caloflow.training.presets import get_preset
from caloflow.training.run_dir import TrainedRun
from caloflow_repo import ModelRepository

ENERGY_RANGE_MEV = (256.0, 4_194_304.0)
"""Dataset 1's incident energies (2^8 .. 2^22 MeV)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="paper-photon", help="untrained PRESET-PARTICLE (paper-photon)")
    parser.add_argument("--repo", type=Path, required=True, help="repository root (created; never model_repo/)")
    parser.add_argument("--name", default=None, help="model name in the repository (default: PRESET_PARTICLE)")
    parser.add_argument("--formats", default="fast_torch_export,fast_onnx", help="comma-separated export formats")
    parser.add_argument("--dense", action="store_true", help="float32 weights instead of compact fp16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--no-parity",
        action="store_true",
        help="skip the export parity check against eager float64 (saves minutes; "
        "the server still checks a compiled package against the ONNX graph before serving it)",
    )
    args = parser.parse_args()
    match = UNTRAINED.fullmatch(args.model)
    if match is None:
        parser.error(f"--model {args.model!r} is not PRESET-PARTICLE")
    torch.set_num_threads(args.threads)
    run = _untrained_run(match.group(1), match.group(2))
    name = args.name or args.model.replace("-", "_")
    formats = [f for f in args.formats.split(",") if f]
    started = time.perf_counter()
    args.repo.mkdir(parents=True, exist_ok=True)
    reference = reference_sampler(run, compact=not args.dense)
    staging = args.repo / f".staging-{name}"
    staging.mkdir(exist_ok=True)
    try:
        artifacts = export_sampler(reference, staging, formats, compact=not args.dense)
        parity = {"skipped": "--no-parity"} if args.no_parity else check_parity(staging, artifacts, reference)
        description = f"UNTRAINED {args.model} (initial weights, for speed measurements only: showers are noise)"
        manifest = build_manifest(run, name, artifacts, parity, not args.dense, description)
        version = ModelRepository(args.repo).add_version(name, staging, manifest, make_default=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"{args.repo}/{name}/{version}: {formats} in {time.perf_counter() - started:.0f} s")


def _untrained_run(preset: str, particle: str) -> TrainedRun:
    """The untrained build as a ``TrainedRun`` (what ``build_manifest`` reads), recorded as untrained."""
    sampler, prep = untrained(preset, particle)
    record = {
        "particle": particle,
        "seed": 0,
        "data": {
            "standin": True,
            "energy_range_mev": list(ENERGY_RANGE_MEV),
            "sha256": hashlib.sha256(b"untrained: no training data").hexdigest(),
            "n_train": 0,
        },
    }
    config = get_preset(preset, particle, prep.n_voxels)
    flow1, student = sampler.flow1, sampler.flow2
    return TrainedRun(Path("untrained"), record, config, prep, flow1, student, student)


if __name__ == "__main__":
    main()
