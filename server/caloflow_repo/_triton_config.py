"""``<model>/config.pbtxt``: the Triton model configuration (protobuf text format) derived from a manifest.

It describes the ONNX artifact (``platform: "onnxruntime_onnx"``) with a batch dimension, dynamic batching, and
a ``specific`` version policy naming the version it was rendered from, so that a Triton server loads exactly
the repository's default version and a ``set_default`` rollback reaches it. The artifact is the one the caloflow
server prefers: ``model.fast.onnx`` (the fast graph) when the version has it, else ``model.onnx``; both have the
same inputs and output.
"""

from __future__ import annotations

from caloflow_repo._manifest import Manifest, TensorSpec

PLATFORM = "onnxruntime_onnx"
ONNX_FILENAME = "model.onnx"
FAST_ONNX_FILENAME = "model.fast.onnx"
ONNX_FILENAMES = (FAST_ONNX_FILENAME, ONNX_FILENAME)
"""The ONNX artifacts Triton can serve, preferred first."""
DEFAULT_MAX_BATCH_SIZE = 4096
DEFAULT_MAX_QUEUE_DELAY_US = 500
TRITON_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "float64": "TYPE_FP64",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
}


def render_config_pbtxt(
    manifest: Manifest,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US,
) -> str:
    """The ``config.pbtxt`` text for ``manifest``'s model, serving ``manifest.version``."""
    if max_batch_size < 1 or max_queue_delay_us < 0:
        raise ValueError(
            f"need max_batch_size >= 1 and max_queue_delay_us >= 0, got {max_batch_size}, {max_queue_delay_us}"
        )
    lines = [
        f"# Written by caloflow_repo from {manifest.model}/{manifest.version}/manifest.json (the default version);",
        "# rewritten whenever the default version changes: edits here are lost.",
        *_missing_onnx_warning(manifest),
        f"name: {_quote(manifest.model)}",
        f"platform: {_quote(PLATFORM)}",
        f"default_model_filename: {_quote(onnx_filename(manifest))}",
        f"max_batch_size: {max_batch_size}",
        *_tensor_block("input", manifest.inputs),
        *_tensor_block("output", manifest.outputs),
        "dynamic_batching {",
        f"  max_queue_delay_microseconds: {max_queue_delay_us}",
        "}",
        f"version_policy: {{ specific: {{ versions: [ {manifest.version} ] }} }}",
    ]
    return "\n".join(lines) + "\n"


def onnx_filename(manifest: Manifest) -> str:
    """The ONNX file Triton serves: the first of ``ONNX_FILENAMES`` the version lists (``model.onnx`` if none)."""
    listed = {artifact.filename for artifact in manifest.artifacts}
    return next((name for name in ONNX_FILENAMES if name in listed), ONNX_FILENAME)


def _missing_onnx_warning(manifest: Manifest) -> list[str]:
    if any(artifact.filename in ONNX_FILENAMES for artifact in manifest.artifacts):
        return []
    missing = f"{ONNX_FILENAME} or {FAST_ONNX_FILENAME}"
    return [f"# WARNING: version {manifest.version} has no {missing}; Triton cannot load it."]


def _tensor_block(kind: str, specs: tuple[TensorSpec, ...]) -> list[str]:
    """A repeated ``input``/``output`` field; dims leave out the batch dimension (``max_batch_size`` > 0)."""
    entries = []
    for spec in specs:
        dims = ", ".join(str(dim) for dim in spec.shape[1:])
        fields = [f"name: {_quote(spec.name)}", f"data_type: {TRITON_DTYPES[spec.dtype]}", f"dims: [ {dims} ]"]
        entries.append("  {\n" + "".join(f"    {line}\n" for line in fields) + "  }")
    return [f"{kind} [", ",\n".join(entries), "]"]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
