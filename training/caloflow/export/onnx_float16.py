"""Float16 storage for an ONNX model's large weights that float16 represents exactly, rebuilt in the graph.

A compact export's student weights are float16 values held in float32 (:func:`~caloflow.export.packing.folded_copy`
rounds them once), but a graph converted from a module that uses them as plain float32 matrices stores 4 bytes
each, masked zeros included. :func:`store_float16` rewrites every 2-D float32 initializer of at least
``min_elements`` entries whose values float16 holds exactly: per row it keeps only the band from the first to
the last non-zero entry, in float16, with the band's first and past-the-end columns and its offset into the
values as int32 vectors. Seven small ops rebuild the float32 matrix under its old name (band test -> index into
``[0, values...]`` -> ``Gather`` -> ``Cast``); the rebuilt matrix equals the original entry for entry.

Everything feeding the rebuild is a constant, so ONNX Runtime folds it into a dense float32 initializer when
the session is created (as it does for the compact ``model.onnx``, see :mod:`caloflow.export.onnx_format`):
the run-time graph is the float32 one. MADE weights with the units in degree order are bands (each row keeps
a prefix of the columns; transposed, a suffix), so the masked zeros are dropped as well: the ``small`` photon
student's fast-form weights take 38 % of their float32 bytes. Matrices that are not float16-exact (flow-I,
biases, context layers) are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

__all__ = ["DEFAULT_MIN_ELEMENTS", "is_float16_exact", "store_float16"]

DEFAULT_MIN_ELEMENTS = 4096
"""Smaller matrices are not worth their rebuild ops."""


@dataclass(frozen=True)
class _Band:
    """A (rows, ``columns``) matrix as per-row bands: ``values`` (float16, a 0 first), each row's ``start`` and
    ``stop`` columns and the ``offset`` that maps its column c to ``values[offset + c]``, as int32 (rows, 1)."""

    columns: int
    values: NDArray[np.float16]
    start: NDArray[np.int32]
    stop: NDArray[np.int32]
    offset: NDArray[np.int32]


def is_float16_exact(array: NDArray[np.generic]) -> bool:
    """True for a float32 array whose every entry float16 represents exactly (no rounding, no overflow)."""
    if array.dtype != np.float32:
        return False
    with np.errstate(over="ignore"):
        return bool(np.array_equal(array.astype(np.float16).astype(np.float32), array))


def store_float16(model: onnx.ModelProto, min_elements: int = DEFAULT_MIN_ELEMENTS) -> list[str]:
    """Rewrite ``model`` in place as described in the module docstring; returns the names rewritten."""
    graph = model.graph
    described = {value.name for value in graph.value_info}
    rewritten, kept, nodes = [], [], []
    for initializer in graph.initializer:
        array = numpy_helper.to_array(initializer)
        if array.ndim != 2 or array.size < min_elements or not is_float16_exact(array):
            kept.append(initializer)
            continue
        constants, rebuild = _rebuild(initializer.name, _bands(array))
        kept.extend(constants)
        nodes.extend(rebuild)
        if initializer.name not in described:  # its type and shape, now that no initializer states them
            graph.value_info.append(helper.make_tensor_value_info(initializer.name, TensorProto.FLOAT, array.shape))
        rewritten.append(initializer.name)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    remaining = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *remaining])  # the rebuilds read only constants: first is a topological order
    return rewritten


def _bands(matrix: NDArray[np.float32]) -> _Band:
    nonzero = matrix != 0
    any_nonzero = nonzero.any(axis=1)
    columns = matrix.shape[1]
    start = np.where(any_nonzero, nonzero.argmax(axis=1), 0)
    stop = np.where(any_nonzero, columns - nonzero[:, ::-1].argmax(axis=1), 0)
    lengths = stop - start
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]]) + 1  # position of each band's first value
    values = [np.zeros(1, np.float16)] + [matrix[r, start[r] : stop[r]].astype(np.float16) for r in range(len(matrix))]
    return _Band(
        columns=columns,
        values=np.concatenate(values),
        start=start.astype(np.int32)[:, None],
        stop=stop.astype(np.int32)[:, None],
        offset=(first - start).astype(np.int32)[:, None],
    )


def _rebuild(name: str, band: _Band) -> tuple[list[TensorProto], list[onnx.NodeProto]]:
    """Initializers and nodes computing the float32 matrix ``name`` from ``band``."""
    p = f"{name}.float16"
    constants: dict[str, NDArray[np.generic]] = {
        f"{p}.values": band.values,
        f"{p}.start": band.start,
        f"{p}.stop": band.stop,
        f"{p}.offset": band.offset,
        f"{p}.columns": np.arange(band.columns, dtype=np.int32)[None, :],
        f"{p}.zero": np.zeros((), np.int32),
    }
    nodes = [
        helper.make_node("GreaterOrEqual", [f"{p}.columns", f"{p}.start"], [f"{p}.after_start"]),
        helper.make_node("Less", [f"{p}.columns", f"{p}.stop"], [f"{p}.before_stop"]),
        helper.make_node("And", [f"{p}.after_start", f"{p}.before_stop"], [f"{p}.inside"]),
        helper.make_node("Add", [f"{p}.offset", f"{p}.columns"], [f"{p}.position"]),
        helper.make_node("Where", [f"{p}.inside", f"{p}.position", f"{p}.zero"], [f"{p}.index"]),
        helper.make_node("Gather", [f"{p}.values", f"{p}.index"], [f"{p}.half"], axis=0),
        helper.make_node("Cast", [f"{p}.half"], [name], to=TensorProto.FLOAT),
    ]
    return [numpy_helper.from_array(array, key) for key, array in constants.items()], nodes
