"""ONNX (``model.onnx``, opset 18): one self-contained file that ONNX Runtime runs with no caloflow code.

Inputs ``INCIDENT_ENERGY`` (batch, 1) and ``NOISE`` (batch, noise_dim), output ``SHOWERS`` (batch,
n_voxels), float32 MeV; ``batch`` is the only dynamic dimension. Converted from the same ExportedProgram
as ``model.pt2`` by the torch.export-based exporter (the TorchScript-based one is deprecated), with
ONNX's missing ``CumProd`` written out for the few layer columns of the energy recursion.

Compact models rebuild each student MADE weight from constants (float16 entries, degree vectors); ONNX
Runtime's constant folding (at every graph optimisation level but ``ORT_DISABLE_ALL``; the default is
``ORT_ENABLE_ALL``) replaces that subgraph by a dense float32 initializer at session creation, so the
run-time graph is the dense model's (the ``small`` photon: same 1.3 s session creation and latency as the
dense file; with ``ORT_DISABLE_ALL`` every call would rebuild the weights, 290 ms instead of 17 ms at
batch 1). Per-node metadata (stack traces) is stripped and the batch dimension named ``batch``; the
intermediate shape annotations stay (without them session creation took 10 s instead of 1.3 s).

Two numerical traps are avoided: onnxscript's default graph rewrites are not run (see :func:`export_onnx`)
and ``Sigmoid`` is written out (see :func:`_sigmoid`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx
import onnxscript.optimizer
import torch
from onnxscript import opset18
from torch.export import ExportedProgram

from caloflow.export._root import INPUT_NAMES, OUTPUT_NAMES

__all__ = ["ONNX_OPSET", "convert_program", "export_onnx", "onnx_version", "save_onnx"]

ONNX_OPSET = 18
BATCH_DIM = "batch"
op: Any = opset18  # the translations below are traced with symbolic tensors; onnxscript's op typing does not fit
_FOLD_OUTPUT_LIMIT = 4096
"""Export-time folding stops at this many elements: larger constants (the dense weights and masks of a
compact model) are left for ONNX Runtime to fold at session creation, so the file stays compact."""


def onnx_version(model: onnx.ModelProto) -> str:
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return f"onnx opset {opset} / ir {model.ir_version}"


def _cumprod(self: Any, dim: int, dtype: Any = None) -> Any:
    """``aten.cumprod`` along a static dimension: split, running product, concat (ONNX has no CumProd)."""
    axis = dim % len(self.shape)
    parts = op.Split(self, axis=axis, num_outputs=int(self.shape[axis]))
    running = [parts[0]]
    for part in parts[1:]:
        running.append(op.Mul(running[-1], part))
    return op.Concat(*running, axis=axis)


def _sigmoid(self: Any) -> Any:
    """``aten.sigmoid`` as ``1 / (1 + exp(-x))``. ONNX Runtime's CPU ``Sigmoid`` is a fast approximation
    with absolute errors up to 1.5e-7, i.e. relative errors of 10-100 % below sigmoid ~ 1e-6 - exactly
    where the logit inversion ``(sigmoid(x) - alpha) / (1 - 2 alpha)`` (alpha = 1e-6) puts small voxel
    fractions. Its ``Exp`` is accurate to 1e-7 relative, and so is this form."""
    one = op.CastLike(1.0, self)
    return op.Div(one, op.Add(one, op.Exp(op.Neg(self))))


def _name_batch_dimension(graph: onnx.GraphProto) -> None:
    symbol = graph.input[0].type.tensor_type.shape.dim[0].dim_param
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if symbol and dim.dim_param == symbol:
                dim.dim_param = BATCH_DIM


def _strip_node_metadata(graph: onnx.GraphProto) -> None:
    """Also inside subgraphs (a ``Scan`` body): there the stack traces were most of a scanned model's bytes."""
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
        for attribute in node.attribute:
            for subgraph in [attribute.g, *attribute.graphs] if attribute.HasField("g") else attribute.graphs:
                _strip_node_metadata(subgraph)


def export_onnx(program: ExportedProgram, path: Path, metadata: Mapping[str, object]) -> str:
    """Convert ``program`` into ``path``; ``metadata`` goes into the model's metadata_props as JSON values.
    Returns the format version string."""
    return save_onnx(convert_program(program), path, metadata)


def convert_program(program: ExportedProgram) -> onnx.ModelProto:
    """``program`` as an ONNX model: converted, small constants folded, node metadata stripped, batch named."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(
            program,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            opset_version=ONNX_OPSET,
            custom_translation_table={
                torch.ops.aten.cumprod.default: _cumprod,
                torch.ops.aten.sigmoid.default: _sigmoid,
            },
            verbose=False,
            optimize=False,
        )
    if onnx_program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    model = onnx_program.model_proto
    # Constant folding and dead-node removal only. onnxscript's default rewrite rules (what optimize=True runs,
    # onnxscript 0.7.2) treat ``x * c`` with |c - 1| <= 1e-5 and ``x + c`` with |c| <= 1e-8 as no-ops
    # (math.isclose), which drops the spline's (1 - K * min_bin_width) factor and the 1e-8 offset of the
    # flow-II layer labels: on the trained small photon model that changed showers by 0.3 % (median) up to 100 %.
    onnxscript.optimizer.fold_constants(model, output_size_limit=_FOLD_OUTPUT_LIMIT)
    onnxscript.optimizer.remove_unused_nodes(model)
    _strip_node_metadata(model.graph)
    _name_batch_dimension(model.graph)
    return model


def save_onnx(model: onnx.ModelProto, path: Path, metadata: Mapping[str, object]) -> str:
    """Add ``metadata`` (JSON values) to ``model``, check it and write it to ``path``; returns the format version."""
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return onnx_version(model)
