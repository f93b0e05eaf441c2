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

from caloflow.export._root import ExportRoot, example_inputs
from caloflow.export.fast import DEFAULT_GROUPS, fast_sampler
from caloflow.export.onnx_float16 import store_float16
from caloflow.export.onnx_format import convert_program, save_onnx
from caloflow.export.packing import folded_copy
from caloflow.export.torch_export_format import export_root
from caloflow.sampler import CaloFlowSampler

__all__ = ["FAST_FORM", "export_fast_onnx"]

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
    module = fast_sampler(folded_copy(sampler, float16=compact), groups=groups, chunk=None)
    model = convert_program(export_root(ExportRoot(module), example_inputs(sampler)))
    if compact:
        store_float16(model)
    return save_onnx(model, path, {**metadata, "caloflow.form": FAST_FORM, "caloflow.fast_groups": groups})
