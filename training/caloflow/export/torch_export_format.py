"""torch.export (``model.pt2``): ``torch.export.load(path).module()(INCIDENT_ENERGY, NOISE)``.

A compact program rebuilds the dense student weights from the packed float16 entries inside the graph,
on every call: 640 ms instead of 55 ms per batch-1 call for the ``small`` photon model. Load it with the
constant subgraphs folded once (torch only, no caloflow)::

    from torch.fx.experimental.const_fold import split_const_subgraphs
    module = split_const_subgraphs(torch.export.load(path).module())
    module.run_folding()                          # ~0.1 s; the rebuilt weights become attributes
    (showers,) = module(incident_energy, noise)   # the folded module returns a 1-tuple

(31 ms per batch-1 call), or export dense. Loading takes long (16-24 s for the ``small`` photon on a busy
2-core machine: the graph has ~4800 nodes, flow-I's MAF inverse being unrolled). Node metadata (stack
traces, provenance, module paths) is stripped: it would be a third of a compact file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch.export import Dim, ExportedProgram

from caloflow.export._root import INPUT_NAMES, ExportRoot, example_inputs
from caloflow.export.packing import prepare_for_export
from caloflow.sampler import CaloFlowSampler

__all__ = ["export_program", "export_root", "save_program", "torch_export_version"]

_DROPPED_METADATA = ("stack_trace", "from_node", "torch_fn", "source_fn_stack", "nn_module_stack")


def torch_export_version() -> str:
    return f"torch.export torch {torch.__version__.split('+')[0]}"


def export_program(sampler: CaloFlowSampler, *, compact: bool) -> ExportedProgram:
    """``sampler`` as an ExportedProgram with a dynamic batch dimension (shared by ONNX and ``.pt2``)."""
    return export_root(ExportRoot(prepare_for_export(sampler, compact=compact)), example_inputs(sampler))


def export_root(root: ExportRoot, example: tuple[Tensor, Tensor]) -> ExportedProgram:
    """torch.export of ``root`` on ``example`` (a batch of neither 0 nor 1, which would be specialised on),
    the batch dimension dynamic, node metadata stripped."""
    batch = Dim("batch", min=1)
    dynamic = {name: {0: batch} for name in INPUT_NAMES}
    with torch.no_grad():
        program = torch.export.export(root, example, dynamic_shapes=dynamic)
    for node in program.graph.nodes:
        for key in _DROPPED_METADATA:
            node.meta.pop(key, None)
    return program


def save_program(program: ExportedProgram, path: Path) -> str:
    """Write ``program`` to ``path``; returns the format version string."""
    torch.export.save(program, str(path))
    return torch_export_version()
