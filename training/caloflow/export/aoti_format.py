"""AOTInductor (``model.aoti.pt2``, optional): the program compiled to a shared library for this CPU.

Load with ``torch._inductor.aoti_load_package(path)`` and call ``(INCIDENT_ENERGY, NOISE)``. Compiled with
runtime constant folding: the packed-weight rebuild of a compact program runs once, in the first call,
not in every call (tiny run, batch 1: 6.4 ms instead of 28 ms). Compiling runs gcc over the generated C++
(about 4 minutes for the ``small`` photon model on a busy 2-core machine); the package is tied to the
compiling machine's architecture and torch version, so it is never committed, only built where it runs.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch._inductor
from torch.export import ExportedProgram

__all__ = ["aoti_version", "compile_package"]


def aoti_version() -> str:
    return f"aoti torch {torch.__version__.split('+')[0]} cpu"


def compile_package(program: ExportedProgram, path: Path, *, freezing: bool = False) -> str:
    """Compile ``program`` into the package ``path``; returns the format version string.

    ``freezing`` treats the weights as constants of the compiled code (oneDNN pre-packs the linear
    layers' weights): for a program whose weights are already plain float32 tensors (the fast graph).
    Without it, runtime constant folding rebuilds a compact program's packed weights once, at the first call.
    """
    configs = {"freezing": True} if freezing else {"aot_inductor.use_runtime_constant_folding": True}
    torch._inductor.aoti_compile_and_package(program, package_path=str(path), inductor_configs=configs)
    return aoti_version()
