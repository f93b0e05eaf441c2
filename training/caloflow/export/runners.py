"""Load an exported artifact back as ``run(energies (B, 1), noise (B, D)) -> showers (B, V)`` on numpy
float32 arrays, the way a consumer would: nothing here needs caloflow to be importable by the artifact."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import onnxruntime as ort
import torch
import torch._inductor
from numpy.typing import NDArray
from torch.fx.experimental.const_fold import split_const_subgraphs

from caloflow.export._root import INPUT_NAMES
from caloflow.export.errors import ExportError

__all__ = ["Runner", "load_runner", "onnx_session"]

Array = NDArray[np.float32]
Runner = Callable[[Array, Array], Array]


def onnx_session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """An ONNX Runtime CPU session (``threads``: intra-op threads, None for ORT's default)."""
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _onnx(path: Path, threads: int | None) -> Runner:
    session = onnx_session(path, threads)

    def run(energies: Array, noise: Array) -> Array:
        out: Array = session.run(None, dict(zip(INPUT_NAMES, (energies, noise), strict=True)))[0]
        return out

    return run


def _torch(module: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Runner:
    def run(energies: Array, noise: Array) -> Array:
        with torch.inference_mode():
            out: Array = module(torch.from_numpy(energies), torch.from_numpy(noise)).numpy()
        return out

    return run


def _torchscript(path: Path) -> Runner:
    module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    module.materialize()
    return _torch(module)


def _torch_export(path: Path) -> Runner:
    """``torch.export.load(path).module()`` with its constant subgraphs (the packed-weight rebuild of a
    compact program) evaluated once, as a server should load it (see :mod:`caloflow.export.torch_export_format`)."""
    module = torch.export.load(str(path)).module()
    with warnings.catch_warnings():  # const_fold warns about get_attr targets nested in submodule paths; harmless
        warnings.simplefilter("ignore", UserWarning)
        folded = split_const_subgraphs(module)
        folded.run_folding()

    def call(energies: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = folded(energies, noise)
        return cast(torch.Tensor, out[0] if isinstance(out, tuple) else out)

    return _torch(call)


def load_runner(path: Path, fmt: str, threads: int | None = None) -> Runner:
    """A callable running the artifact ``path`` of format ``fmt`` on the CPU. ``threads`` sets ONNX
    Runtime's intra-op threads; torch formats use ``torch.get_num_threads()``."""
    path = Path(path)
    try:
        if fmt in ("onnx", "fast_onnx"):
            return _onnx(path, threads)
        if fmt == "torchscript":
            return _torchscript(path)
        if fmt in ("torch_export", "fast_torch_export"):
            return _torch_export(path)
        if fmt == "aoti":
            return _torch(torch._inductor.aoti_load_package(str(path)))
    except Exception as error:
        raise ExportError(f"cannot load {fmt} artifact {path}: {error}") from error
    raise ExportError(f"unknown artifact format {fmt!r}")
