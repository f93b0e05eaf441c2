"""The sampler graph in each precision mode: ONNX rewrites of the verified artifact, made when a session is built.

* ``folded``: ONNX Runtime's basic optimisations (constant folding) applied once, so that the float16-compact
  weights (rebuilt in the graph, see ``caloflow.export.onnx_float16``) become dense float32 initializers that the
  rewrites below can see.
* ``int8`` (CPU): ``onnxruntime.quantization.quantize_dynamic`` of the folded graph: the weights of the large
  MatMul/Gemm layers (at least ``INT8_MIN_ELEMENTS`` entries: the student's MADE) in int8 (per tensor), their
  activations quantised per call; the small conditioning and flow-I layers and everything else stay float32
  (quantising those too made the demo photon model's E_tot wrong by a factor of up to 2 400).
* ``fp16`` / ``bf16`` (GPU): every MatMul/Gemm with a constant weight runs in that type (inputs cast in, the
  product cast back to float32); splines, recursion, renormalisation and the MeV outputs stay float32.
* ``float64``: the whole graph in float64 (the gate's reference, not a serving mode).

Each function returns serialized ``bytes`` ready for ``InferenceSession``; none changes the verified input.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import AttributeProto, TensorProto, helper, numpy_helper

__all__ = ["float64_graph", "folded_graph", "half_gemm_graph", "int8_graph"]

_MATRIX_OPS = ("MatMul", "Gemm")
INT8_MIN_ELEMENTS = 4096
_HALF_TYPES = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}


def folded_graph(model: bytes) -> onnx.ModelProto:
    """``model`` after ONNX Runtime's basic (provider-independent) optimisations, as written by ORT itself."""
    with tempfile.TemporaryDirectory(prefix="caloflow-fold-") as temp:
        path = Path(temp) / "folded.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(path)
        options.intra_op_num_threads = 1
        ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return onnx.load(str(path))


def int8_graph(model: bytes) -> bytes:
    """Dynamic int8 quantisation of the folded graph's MatMul/Gemm weights (ONNX Runtime's own quantiser)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # heavy import, needed for int8 only

    with tempfile.TemporaryDirectory(prefix="caloflow-int8-") as temp:
        source, target = Path(temp) / "folded.onnx", Path(temp) / "int8.onnx"
        folded = folded_graph(model)
        onnx.save(folded, str(source))
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(_MATRIX_OPS),
            nodes_to_exclude=_small_matrix_nodes(folded),
        )
        result: bytes = target.read_bytes()
        return result


def _small_matrix_nodes(model: onnx.ModelProto) -> list[str]:
    sizes = {tensor.name: int(np.prod(tensor.dims)) for tensor in model.graph.initializer}
    return [
        node.name
        for node in model.graph.node
        if node.op_type in _MATRIX_OPS and len(node.input) > 1 and sizes.get(node.input[1], 0) < INT8_MIN_ELEMENTS
    ]


def half_gemm_graph(model: bytes, mode: str) -> bytes:
    """The folded graph with every constant-weight MatMul/Gemm in ``mode`` (``"fp16"`` or ``"bf16"``)."""
    half = _HALF_TYPES[mode]
    graph = folded_graph(model)
    constants = {tensor.name: tensor for tensor in graph.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for node in graph.graph.node:
        if node.op_type in _MATRIX_OPS and len(node.input) > 1 and node.input[1] in constants:
            nodes.extend(_half_matrix_node(node, constants, half, graph.graph))
        else:
            nodes.append(node)
    del graph.graph.node[:]
    graph.graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    kept = [tensor for tensor in graph.graph.initializer if tensor.name in used]
    del graph.graph.initializer[:]
    graph.graph.initializer.extend(kept)
    serialized: bytes = graph.SerializeToString()
    return serialized


def _half_matrix_node(
    node: onnx.NodeProto, constants: dict[str, TensorProto], half: int, graph: onnx.GraphProto
) -> list[onnx.NodeProto]:
    """Cast the activation in, store the weight (and Gemm bias) in ``half``, cast the product back to float32."""
    name = node.output[0]
    inputs = [f"{name}.half_in"]
    for position, weight in enumerate(node.input[1:], start=1):
        cast_name = f"{weight}.half"
        if cast_name not in constants:
            array = numpy_helper.to_array(constants[weight]).astype(np.float32)
            tensor = helper.make_tensor(cast_name, half, array.shape, _half_bytes(array, half), raw=True)
            graph.initializer.append(tensor)
            constants[cast_name] = tensor
        inputs.append(cast_name if position < 3 else weight)
    cast_in = helper.make_node("Cast", [node.input[0]], [inputs[0]], to=half)
    matrix = helper.make_node(node.op_type, inputs, [f"{name}.half_out"], name=node.name, domain=node.domain)
    matrix.attribute.extend(node.attribute)
    cast_out = helper.make_node("Cast", [f"{name}.half_out"], [name], to=TensorProto.FLOAT)
    return [cast_in, matrix, cast_out]


def _half_bytes(array: np.ndarray, half: int) -> bytes:
    """Little-endian 16-bit values: IEEE float16, or bfloat16 rounded to nearest even."""
    if half == TensorProto.FLOAT16:
        return array.astype("<f2").tobytes()
    bits = array.astype(np.float32).view(np.uint32).flatten().astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def float64_graph(model: bytes) -> bytes:
    """The folded graph with every float32 tensor, constant and cast in float64 (inputs and output included)."""
    graph = folded_graph(model)
    body = graph.graph
    for index, tensor in enumerate(body.initializer):
        if tensor.data_type == TensorProto.FLOAT:
            body.initializer[index].CopyFrom(_as_float64(tensor))
    for value in (*body.input, *body.output, *body.value_info):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    for node in body.node:
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == TensorProto.FLOAT:
                attribute.i = TensorProto.DOUBLE
            elif attribute.type == AttributeProto.TENSOR and attribute.t.data_type == TensorProto.FLOAT:
                attribute.t.CopyFrom(_as_float64(attribute.t))
    serialized: bytes = graph.SerializeToString()
    return serialized


def _as_float64(tensor: TensorProto) -> TensorProto:
    return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float64), tensor.name)
