"""ONNX Runtime backend: the exported sampler graph in an ``InferenceSession`` on the CPU or one CUDA device."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from torch import Tensor

from caloflow_repo import DEFAULT_PRECISION, GPU_ONLY_PRECISIONS, INPUT_ENERGY, INPUT_NOISE, OUTPUT_SHOWERS, PRECISIONS
from caloflow_server._device import cuda_index, normalize_device
from caloflow_server._onnx_precision import half_gemm_graph, int8_graph
from caloflow_server._warm_up import warm_up_calls
from caloflow_server.errors import DeviceOutOfMemoryError, InferenceError, RuntimeLoadError

logger = logging.getLogger(__name__)

_CUDA_PROVIDER = "CUDAExecutionProvider"
_CPU_PROVIDER = "CPUExecutionProvider"
_OOM_MARKERS = ("out of memory", "failed to allocate", "bfcarena", "cudaerrormemoryallocation")


class OnnxRuntimeBackend:
    """``run(incident (B, 1), noise (B, noise_dim)) -> showers (B, n_voxels)`` through ONNX Runtime.

    ``model``: a path or the serialized graph (bytes, as verified against the manifest). A CUDA device
    creates the session with the CUDA execution provider and refuses (``RuntimeLoadError``) when the
    session's first active provider is not CUDA: never a silent CPU fallback.

    ``precision``: ``fp32-strict`` (the graph as exported; on CUDA with ``use_tf32=0``, asserted on the created
    session), ``tf32`` (CUDA, ``use_tf32=1``), ``fp16`` / ``bf16`` (CUDA: constant-weight MatMul/Gemm in that
    type) or ``int8`` (CPU: dynamically quantised weights). Whether a mode may be *served* is the gate's business
    (``caloflow_repo.enabled_precisions``); this class only builds it.
    """

    backend = "onnx"

    def __init__(
        self,
        model: str | Path | bytes,
        device: str = "cpu",
        *,
        intra_op_threads: int | None = None,
        noise_dim: int | None = None,
        n_voxels: int | None = None,
        precision: str = DEFAULT_PRECISION,
    ) -> None:
        self.device = normalize_device(device)
        self.precision = _check_precision(precision, self.device)
        self._session = _create_session(_graph_for(model, precision), self.device, intra_op_threads, precision)
        graph_noise_dim, graph_voxels = _signature(self._session)
        self.noise_dim = _agree("noise_dim", noise_dim, graph_noise_dim)
        self.n_voxels = _agree("n_voxels", n_voxels, graph_voxels)
        self.providers: tuple[str, ...] = tuple(self._session.get_providers())
        logger.debug("onnx session on %s with providers %s", self.device, self.providers)

    def run(self, incident_mev: np.ndarray, noise: np.ndarray | Tensor) -> np.ndarray:
        """Unchecked model output (float32); callers that send it anywhere use ``check_showers``."""
        feeds = {INPUT_ENERGY: _as_float32(incident_mev), INPUT_NOISE: _as_float32(noise)}
        try:
            (showers,) = self._session.run([OUTPUT_SHOWERS], feeds)
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise _translate_run_error(exc) from exc
        return np.asarray(showers, dtype=np.float32)

    def warm_up(self, batch_sizes: Sequence[int], energy_mev: float = 1000.0) -> None:
        """Run each batch size once, so that first-call allocations and kernel choices happen before traffic."""
        warm_up_calls(self.run, self.noise_dim, batch_sizes, energy_mev)


def _check_precision(precision: str, device: str) -> str:
    if precision not in PRECISIONS:
        raise RuntimeLoadError(f"unknown precision {precision!r} (one of {list(PRECISIONS)})")
    on_gpu = cuda_index(device) is not None
    if precision in GPU_ONLY_PRECISIONS and not on_gpu:
        raise RuntimeLoadError(f"precision {precision!r} needs a CUDA device, not {device}")
    if precision == "int8" and on_gpu:
        raise RuntimeLoadError(f"precision 'int8' is a CPU mode (ONNX Runtime dynamic quantisation), not for {device}")
    return precision


def _graph_for(model: str | Path | bytes, precision: str) -> str | Path | bytes:
    if precision in (DEFAULT_PRECISION, "tf32"):
        return model
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    try:
        return int8_graph(data) if precision == "int8" else half_gemm_graph(data, precision)
    except Exception as exc:  # onnx / onnxruntime raise their own types
        raise RuntimeLoadError(f"cannot build the {precision} graph: {exc}") from exc


def cuda_tf32_option(session: ort.InferenceSession) -> str | None:
    """The ``use_tf32`` option of the session's CUDA provider as ONNX Runtime reports it (None without CUDA)."""
    options = session.get_provider_options().get(_CUDA_PROVIDER)
    return None if options is None else str(options.get("use_tf32"))


def _create_session(
    model: str | Path | bytes, device: str, intra_op_threads: int | None, precision: str = DEFAULT_PRECISION
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    index = cuda_index(device)
    providers: list[Any] = [_CPU_PROVIDER]
    if index is not None:
        if _CUDA_PROVIDER not in ort.get_available_providers():
            raise RuntimeLoadError(
                f"asked for {device} but this onnxruntime build has no CUDA provider "
                f"({ort.get_available_providers()}); install onnxruntime-gpu - refusing a silent CPU fallback"
            )
        tf32 = "1" if precision == "tf32" else "0"  # set explicitly: ORT >= 1.18 turns TF32 on by default
        providers = [(_CUDA_PROVIDER, {"device_id": index, "use_tf32": tf32}), _CPU_PROVIDER]
    source = model if isinstance(model, bytes) else str(model)
    try:
        session = ort.InferenceSession(source, options, providers=providers)
    except Exception as exc:
        raise RuntimeLoadError(f"onnxruntime could not load the model on {device}: {exc}") from exc
    active = session.get_providers()
    if index is not None and (not active or active[0] != _CUDA_PROVIDER):
        raise RuntimeLoadError(
            f"asked for {device} but onnxruntime's active providers are {active} (available: "
            f"{ort.get_available_providers()}); refusing a silent CPU fallback - check the onnxruntime-gpu, "
            "CUDA and cuDNN versions"
        )
    if index is not None and cuda_tf32_option(session) != tf32:
        raise RuntimeLoadError(
            f"precision {precision!r} needs ONNX Runtime's CUDA use_tf32={tf32}, the session reports "
            f"{cuda_tf32_option(session)!r}"
        )
    return session


def _signature(session: ort.InferenceSession) -> tuple[int | None, int | None]:
    """(noise_dim, n_voxels) from the graph; None where a dimension is symbolic. RuntimeLoadError on wrong names."""
    inputs = {tensor.name: tensor for tensor in session.get_inputs()}
    outputs = {tensor.name: tensor for tensor in session.get_outputs()}
    if set(inputs) != {INPUT_ENERGY, INPUT_NOISE} or OUTPUT_SHOWERS not in outputs:
        raise RuntimeLoadError(
            f"graph inputs {sorted(inputs)} and outputs {sorted(outputs)} are not the sampler signature "
            f"({INPUT_ENERGY}, {INPUT_NOISE}) -> {OUTPUT_SHOWERS}"
        )
    return _static_dim(inputs[INPUT_NOISE].shape), _static_dim(outputs[OUTPUT_SHOWERS].shape)


def _static_dim(shape: Sequence[Any]) -> int | None:
    if len(shape) != 2:
        raise RuntimeLoadError(f"expected a (batch, n) tensor, the graph says shape {list(shape)}")
    return shape[1] if isinstance(shape[1], int) else None


def _agree(name: str, expected: int | None, found: int | None) -> int:
    if expected is not None and found is not None and expected != found:
        raise RuntimeLoadError(f"the graph's {name} is {found}, the manifest says {expected}")
    value = expected if expected is not None else found
    if value is None:
        raise RuntimeLoadError(f"the graph's {name} is symbolic; pass {name}= explicitly")
    return value


def _as_float32(array: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(array, Tensor):
        array = array.detach().to("cpu").numpy()
    return np.ascontiguousarray(array, dtype=np.float32)


def _translate_run_error(exc: Exception) -> InferenceError:
    message = str(exc)
    if isinstance(exc, MemoryError) or any(marker in message.lower() for marker in _OOM_MARKERS):
        return DeviceOutOfMemoryError(f"onnxruntime ran out of memory: {message}")
    return InferenceError(f"onnxruntime failed: {message}")
