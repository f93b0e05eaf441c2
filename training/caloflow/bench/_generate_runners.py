"""What ``caloflow bench generate`` times: the model it resolves and one runner per format.

A runner maps numpy float32 ``(energies (B, 1) MeV, noise (B, L + V))`` to numpy showers (B, V), end to
end: inputs are copied to the device and showers back, as a server would. Heavy imports live here, so
``caloflow --help`` stays fast.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch._inductor
from numpy.typing import NDArray
from torch import Tensor

from caloflow import preprocessing as pp
from caloflow.cli import CLIError
from caloflow.data.datasets import geometry_for
from caloflow.export import FILENAMES, export_sampler, load_runner
from caloflow.export._root import INPUT_NAMES, ExportRoot, example_inputs
from caloflow.export.aoti_format import compile_package
from caloflow.export.fast import fast_sampler
from caloflow.export.onnx_format import export_onnx
from caloflow.export.packing import folded_copy
from caloflow.export.parity import compare, parity_inputs
from caloflow.export.torch_export_format import export_root
from caloflow.sampler import CaloFlowSampler
from caloflow.training.models import make_flow1, make_student, make_teacher
from caloflow.training.presets import PRESET_NAMES, get_preset
from caloflow.training.run_dir import load_run

Array = NDArray[np.float32]
Runner = Callable[[Array, Array], Array]

UNTRAINED = re.compile(rf"({'|'.join(PRESET_NAMES)})-(photon|pion)")
REFERENCE_U0_SCALE = {"photon": 2.42, "pion": 6.93}
"""u_0 rescale constants of the published code, for untrained builds (trained runs carry their own)."""


@dataclass(frozen=True)
class Model:
    """A resolved ``--model``: a sampler with weights, or only a repository model's artifacts."""

    name: str
    noise_dim: int
    sampler: CaloFlowSampler | None = None
    prep: pp.Preprocessing | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class Options:
    device: str
    threads: int
    groups: int
    chunk: int
    scratch: Path


@dataclass(frozen=True)
class Loaded:
    noise_dim: int
    runners: dict[str, Runner]
    synchronize: Callable[[], None]
    make_inputs: Callable[[int], tuple[Array, Array]] | None = None
    """A batch's energies and noise (another family's); ``None``: :func:`inputs` (the Dataset 1 energies)."""


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def untrained(
    preset: str, particle: str, seed: int = 0, device: str = "cpu"
) -> tuple[CaloFlowSampler, pp.Preprocessing]:
    """flow-I + student of ``preset`` with initial weights (speed does not depend on the weights);
    ``device="meta"`` builds the architecture without allocating it (to count parameters)."""
    geometry = geometry_for(particle)
    prep = pp.Preprocessing(layer_sizes=geometry.layer_sizes, u0_scale=REFERENCE_U0_SCALE[particle])
    config = get_preset(preset, particle, geometry.n_voxels)
    teacher = make_teacher(config, prep, seed, device)
    flow1, student = make_flow1(config, prep, seed, device), make_student(config, teacher, seed, device)
    sampler = CaloFlowSampler(flow1, student, prep)
    return sampler.eval(), prep


def resolve_model(text: str, repo: Path, device: str) -> Model:
    """``PRESET-PARTICLE`` (untrained), a training run directory, or a model name / directory of ``repo``."""
    check_device(device)
    if match := UNTRAINED.fullmatch(text):
        sampler, prep = untrained(match.group(1), match.group(2))
        return Model(f"{text} (untrained)", sampler.noise_dim, sampler, prep)
    path = Path(text)
    if (path / "run.json").is_file():
        run = load_run(path)
        return Model(str(path), run.sampler().noise_dim, run.sampler(), run.prep)
    return _repository_model(path if path.is_dir() else repo / text, text)


def _repository_model(model_dir: Path, text: str) -> Model:
    from caloflow_repo import ModelRepository

    if not model_dir.is_dir():
        raise CLIError(f"--model: {text!r} is no PRESET-PARTICLE, run directory or repository model")
    repo = ModelRepository(model_dir.parent)
    manifest = repo.verify(model_dir.name)
    artifacts = {a.format: repo.artifact_path(model_dir.name, manifest.version, a.filename) for a in manifest.artifacts}
    return Model(f"{model_dir.name} v{manifest.version}", manifest.noise_dim, artifacts=artifacts)


def inputs(noise_dim: int, batch: int, device: str) -> tuple[Array, Array]:
    """Dataset 1 energies and seeded noise (the parity inputs); device copies happen inside the runners."""
    return parity_inputs(noise_dim, batch, seed=batch)


def max_shower_l1(showers: Array, eager: Array | None) -> float | None:
    if eager is None:
        return None
    return float(compare(showers, eager, pp.DEFAULT_THRESHOLD_MEV)["max_shower_l1"])


def _torch_runner(module: Callable[[Tensor, Tensor], Tensor], device: str, chunk: int | None = None) -> Runner:
    def run(energies: Array, noise: Array) -> Array:
        e, z = torch.from_numpy(energies).to(device), torch.from_numpy(noise).to(device)
        with torch.inference_mode():
            if chunk is None or len(e) <= chunk:
                return module(e, z).cpu().numpy()
            return (
                torch.cat([module(e[i : i + chunk], z[i : i + chunk]) for i in range(0, len(e), chunk)]).cpu().numpy()
            )

    return run


def _onnx_runner(path: Path, options: Options, chunk: int | None = None) -> Runner:
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = options.threads
    session_options.inter_op_num_threads = 1
    # Idle ONNX Runtime workers spin by default; the formats are timed in interleaved rounds, and on two
    # cores spinning workers stall the next format's OpenMP threads (fast_aoti at batch 1: 62 ms right after
    # fast_onnx, 12.6 ms alone). Sleeping workers cost ORT a wake-up per parallel op instead.
    session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CUDAExecutionProvider"] if options.device == "cuda" else ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), session_options, providers=providers)

    def call(energies: Array, noise: Array) -> Array:
        out: Array = session.run(None, dict(zip(INPUT_NAMES, (energies, noise), strict=True)))[0]
        return out

    def run(energies: Array, noise: Array) -> Array:
        if chunk is None or len(energies) <= chunk:
            return call(energies, noise)
        parts = [call(energies[i : i + chunk], noise[i : i + chunk]) for i in range(0, len(energies), chunk)]
        return np.concatenate(parts)

    return run


def _fast_program(sampler: CaloFlowSampler, options: Options) -> torch.export.ExportedProgram:
    """The fast graph with float32 weights, exported as ``caloflow export`` exports its graphs."""
    module = fast_sampler(folded_copy(sampler, float16=False), groups=options.groups, chunk=None)
    return export_root(ExportRoot(module), example_inputs(sampler))


def _fast_loaders(sampler: CaloFlowSampler, options: Options) -> dict[str, Callable[[], Runner]]:
    device = options.device

    def fast() -> Runner:
        module = fast_sampler(folded_copy(sampler, float16=False), groups=options.groups, chunk=options.chunk)
        return _torch_runner(module.to(device), device)

    def fast_torchscript() -> Runner:
        module = fast_sampler(folded_copy(sampler, float16=False), groups=options.groups, chunk=None)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, example_inputs(sampler), check_trace=False)  # type: ignore[no-untyped-call]
        return _torch_runner(traced.to(device), device, options.chunk)

    def fast_onnx() -> Runner:
        path = options.scratch / "fast.onnx"
        export_onnx(_fast_program(sampler, options), path, {"caloflow.fast_groups": options.groups})
        return _onnx_runner(path, options, options.chunk)

    def fast_aoti() -> Runner:
        if device != "cpu":
            raise CLIError("--formats fast_aoti: compiled for the CPU only")
        path = options.scratch / "fast.aoti.pt2"
        compile_package(_fast_program(sampler, options), path, freezing=True)
        return _torch_runner(torch._inductor.aoti_load_package(str(path)), device, options.chunk)

    return {"fast": fast, "fast_torchscript": fast_torchscript, "fast_onnx": fast_onnx, "fast_aoti": fast_aoti}


def _artifact_runner(path: Path, fmt: str, options: Options) -> Runner:
    if fmt in ("onnx", "fast_onnx"):
        return _onnx_runner(path, options)
    if options.device == "cuda" and fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cuda")  # type: ignore[no-untyped-call]
        module.materialize()
        return _torch_runner(module, "cuda")
    if options.device == "cuda":
        raise CLIError(f"--formats {fmt}: timed on the CPU only; use onnx, torchscript or the eager/fast formats")
    return load_runner(path, fmt, options.threads)


def load_all(model: Model, formats: list[str], compare_reference: bool, options: Options) -> Loaded:
    """One runner per format (in the order given), then the nflows reference when asked for."""
    runners: dict[str, Runner] = {}
    artifacts = dict(model.artifacts)
    fast = _fast_loaders(model.sampler, options) if model.sampler is not None else {}
    exported = [f for f in formats if f in FILENAMES and f not in artifacts and f not in fast]  # fast: from weights
    needs_weights = [f for f in formats if f not in FILENAMES] + exported + (["reference"] if compare_reference else [])
    if needs_weights and model.sampler is None:
        raise CLIError(f"{model.name} has only exported artifacts ({sorted(artifacts)}); cannot run {needs_weights}")
    if exported and model.sampler is not None:
        print(f"exporting {exported} (compact) ...", flush=True)
        for artifact in export_sampler(model.sampler, options.scratch, exported, compact=True):
            artifacts[artifact.format] = options.scratch / artifact.filename
    for fmt in formats:
        if fmt == "eager":
            assert model.sampler is not None
            runners[fmt] = _torch_runner(folded_copy(model.sampler, float16=False).to(options.device), options.device)
        elif fmt in fast:
            runners[fmt] = fast[fmt]()
        elif fmt in artifacts:
            runners[fmt] = _artifact_runner(artifacts[fmt], fmt, options)
        else:
            raise CLIError(f"--formats {fmt}: {model.name} has no {fmt} artifact")
    if compare_reference:
        assert model.sampler is not None and model.prep is not None
        from caloflow.bench.generate import REFERENCE
        from caloflow.bench.nflows_reference import reference_from_sampler

        reference = reference_from_sampler(model.sampler, model.prep).to(options.device)
        runners[REFERENCE] = _torch_runner(reference, options.device)
    return Loaded(model.noise_dim, runners, synchronizer(options.device))


def check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda: no CUDA device is available to torch")


def synchronizer(device: str) -> Callable[[], None]:
    """What a timed call waits for before its clock stops: the CUDA stream, or nothing."""
    return torch.cuda.synchronize if device == "cuda" else no_sync


def no_sync() -> None:
    return None
