"""TorchScript (``model.pt``): the sampler traced, with scripted packed layers when compact.

Loading needs only torch: ``model = torch.jit.load(path); model.materialize()``. ``materialize()``
rebuilds the dense float32 MADE weights from the packed float16 entries once (a no-op returning 0 for a
dense artifact); without it a compact model still gives the same showers but rebuilds every weight on
every call, which costs more than the generation itself at small batches. Call it once after loading,
before serving from several threads (it mutates the module). Inputs are ``forward(INCIDENT_ENERGY,
NOISE)``; the batch dimension is dynamic.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch.jit._trace import TracerWarning

from caloflow.export._root import ExportRoot, example_inputs
from caloflow.export.packing import prepare_for_export
from caloflow.sampler import CaloFlowSampler

__all__ = ["export_torchscript", "torchscript_version"]


def torchscript_version() -> str:
    return f"torchscript torch {torch.__version__.split('+')[0]}"


def export_torchscript(sampler: CaloFlowSampler, path: Path, *, compact: bool) -> str:
    """Trace ``sampler`` into ``path``; returns the format version string."""
    prepared = prepare_for_export(sampler, compact=compact, materializing=True)
    scripted = tuple(
        f"sampler.{name}" for name, module in prepared.named_modules() if isinstance(module, torch.jit.ScriptModule)
    )
    root = ExportRoot(prepared, materializable=scripted)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", TracerWarning)
        traced = torch.jit.trace_module(
            root, {"forward": example_inputs(sampler), "materialize": ()}, check_trace=False
        )  # type: ignore[no-untyped-call]
    for name in scripted:  # tracing ran materialize(): drop the dense weights so the file stays compact
        traced.get_submodule(name).release()
    traced.save(str(path))
    return torchscript_version()
