"""``export_sampler``: one trained sampler -> one graph per format in a directory, plus its I/O contract."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from torch.export import ExportedProgram

from caloflow.errors import CaloflowError
from caloflow.export._root import INPUT_NAMES, OUTPUT_NAMES
from caloflow.export.aoti_format import compile_package
from caloflow.export.errors import ExportError
from caloflow.export.fast_onnx_format import export_fast_onnx, export_fast_program
from caloflow.export.onnx_format import export_onnx
from caloflow.export.torch_export_format import export_program, save_program
from caloflow.export.torchscript_format import export_torchscript
from caloflow.sampler import CaloFlowSampler

__all__ = ["DEFAULT_FORMATS", "FILENAMES", "ExportedArtifact", "export_sampler", "io_spec"]

FILENAMES = {
    "onnx": "model.onnx",
    "fast_onnx": "model.fast.onnx",
    "torchscript": "model.pt",
    "torch_export": "model.pt2",
    "fast_torch_export": "model.fast.pt2",
    "aoti": "model.aoti.pt2",
}
"""Artifact file name per format (``fast_onnx``: the fast inference form in ONNX, what the server prefers;
``fast_torch_export``: the fast graph as a torch.export program, which the server compiles for its own CPU,
optional; ``aoti``: an AOTInductor package for this machine's CPU, optional)."""

DEFAULT_FORMATS = ("onnx", "fast_onnx", "torchscript", "torch_export")


@dataclass(frozen=True)
class ExportedArtifact:
    """One written file: its name inside the export directory, its format and the format's version."""

    filename: str
    format: str
    format_version: str


class _Shaped(Protocol):
    @property
    def noise_dim(self) -> int: ...

    n_voxels: int


def io_spec(sampler: CaloFlowSampler | _Shaped) -> dict[str, Any]:
    """Names, dtypes and shapes (-1: the dynamic batch dimension) of the exported graph's inputs and outputs."""
    energy, noise = INPUT_NAMES
    return {
        "inputs": [
            {"name": energy, "dtype": "float32", "shape": [-1, 1], "unit": "MeV"},
            {"name": noise, "dtype": "float32", "shape": [-1, sampler.noise_dim], "unit": "standard normal"},
        ],
        "outputs": [{"name": OUTPUT_NAMES[0], "dtype": "float32", "shape": [-1, sampler.n_voxels], "unit": "MeV"}],
    }


def _check_formats(formats: Sequence[str]) -> None:
    unknown = [f for f in formats if f not in FILENAMES]
    if unknown or not formats:
        raise ExportError(f"unknown export format(s) {unknown or list(formats)}; choose from {list(FILENAMES)}")


def export_sampler(
    sampler: CaloFlowSampler,
    out_dir: Path,
    formats: Sequence[str] = DEFAULT_FORMATS,
    *,
    compact: bool = True,
) -> list[ExportedArtifact]:
    """Write ``sampler`` as ``(INCIDENT_ENERGY, NOISE) -> SHOWERS`` in each of ``formats`` into ``out_dir``.

    ``compact`` stores the flow-II (student) MADE weights as their unmasked entries in float16, rounded once
    here (compare against :func:`caloflow.export.reference_sampler`): about 28 % of the dense float32 size.
    Dense artifacts hold the masked float32 weights; flow-I is dense float32 in both (see
    :mod:`caloflow.export.packing`). Masks are folded either way; ``sampler`` is not modified. Formats:
    ``onnx``, ``fast_onnx`` (the same weights in the fast graph, :mod:`caloflow.export.fast_onnx_format`),
    ``torchscript``, ``torch_export`` and, optionally, ``aoti`` (minutes to compile).
    """
    _check_formats(formats)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    program = _program(sampler, compact) if {"onnx", "torch_export", "aoti"} & set(formats) else None
    artifacts = []
    for fmt in formats:
        path = out_dir / FILENAMES[fmt]
        try:
            version = _write(fmt, sampler, program, path, compact)
        except CaloflowError:
            raise
        except Exception as error:  # exporter failures arrive as many types; report them as ours
            raise ExportError(f"{fmt} export to {path} failed: {error}") from error
        artifacts.append(ExportedArtifact(FILENAMES[fmt], fmt, version))
    return artifacts


def _program(sampler: CaloFlowSampler, compact: bool) -> ExportedProgram:
    try:
        return export_program(sampler, compact=compact)
    except Exception as error:
        raise ExportError(f"torch.export of the sampler failed: {error}") from error


def _write(fmt: str, sampler: CaloFlowSampler, program: ExportedProgram | None, path: Path, compact: bool) -> str:
    if fmt == "torchscript":
        return export_torchscript(sampler, path, compact=compact)
    metadata = {"caloflow.io": io_spec(sampler), "caloflow.compact": compact}
    if fmt == "fast_onnx":
        return export_fast_onnx(sampler, path, metadata, compact=compact)
    if fmt == "fast_torch_export":
        return export_fast_program(sampler, path, compact=compact)
    assert program is not None
    if fmt == "onnx":
        return export_onnx(program, path, metadata)
    if fmt == "torch_export":
        return save_program(program, path)
    return compile_package(program, path)
