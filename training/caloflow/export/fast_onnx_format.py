"""Fast ONNX (``model.fast.onnx``): the sampler's fast inference form in ONNX, the artifact the server prefers.

The graph is :class:`~caloflow.export.fast.FastSampler` (degree-blocked student output layers, parameter-major
splines, flow-I one feature per pass, no log-determinants) with ``chunk=None``, so it has no data-dependent
control flow, exported like ``model.onnx`` (torch.export with a dynamic batch, then
:func:`~caloflow.export.onnx_format.convert_program`): same inputs, output, opset and ``caloflow.io`` metadata,
so whatever runs ``model.onnx`` (the server's ONNX Runtime backend, Triton) runs this file unchanged. Metadata
``caloflow.form`` (``"fast"``) and ``caloflow.fast_groups`` say which form it is.

Compact (the default): the student's weights are the float16-rounded ones that ``model.onnx`` holds
(:func:`~caloflow.export.packing.folded_copy`), stored in float16 without the masked zeros and rebuilt when
ONNX Runtime creates the session (:mod:`caloflow.export.onnx_float16`; lossless: the same showers bit for bit
as with float32 storage). Trained ``small`` demo models: photon 6.6 MB (``model.onnx`` 6.4 MB, float32 storage
15.6 MB), pion 12.9 MB (12.6 MB); 2.3x faster than ``model.onnx`` at batch 64 on one CPU thread. Dense:
float32 weights, masks folded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch.export import ExportedProgram

from caloflow.export._root import ExportRoot, example_inputs
from caloflow.export.fast import DEFAULT_GROUPS, fast_sampler
from caloflow.export.onnx_float16 import store_float16
from caloflow.export.onnx_format import convert_program, save_onnx
from caloflow.export.packing import folded_copy
from caloflow.export.torch_export_format import export_root, save_program
from caloflow.sampler import CaloFlowSampler

__all__ = ["FAST_FORM", "export_fast_onnx", "export_fast_program", "fast_program"]

FAST_FORM = "fast"
"""``caloflow.form`` metadata value of a fast graph."""


def export_fast_onnx(
    sampler: CaloFlowSampler,
    path: Path,
    metadata: Mapping[str, object],
    *,
    compact: bool,
    groups: int = DEFAULT_GROUPS,
) -> str:
    """Write the fast form of ``sampler`` (student output layers in ``groups`` degree blocks) to ``path``, with
    ``metadata`` plus ``caloflow.form`` and ``caloflow.fast_groups``; returns the format version string."""
    model = convert_program(fast_program(sampler, compact=compact, groups=groups))
    if compact:
        store_float16(model)
    return save_onnx(model, path, {**metadata, "caloflow.form": FAST_FORM, "caloflow.fast_groups": groups})


def fast_program(sampler: CaloFlowSampler, *, compact: bool, groups: int = DEFAULT_GROUPS) -> ExportedProgram:
    """The fast form of ``sampler`` (``chunk=None``) as a torch.export program with a dynamic batch; ``compact``
    uses the float16-rounded student weights that the compact ONNX graphs hold (stored here as float32)."""
    module = fast_sampler(folded_copy(sampler, float16=compact), groups=groups, chunk=None)
    return export_root(ExportRoot(module), example_inputs(sampler))


def export_fast_program(sampler: CaloFlowSampler, path: Path, *, compact: bool, groups: int = DEFAULT_GROUPS) -> str:
    """``model.fast.pt2``: the fast program, what the server's ``aoti`` backend compiles for its own CPU (the same
    function as ``model.fast.onnx``, which the server checks it against); returns the format version string."""
    return save_program(fast_program(sampler, compact=compact, groups=groups), path)
