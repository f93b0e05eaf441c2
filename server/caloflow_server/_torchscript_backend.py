"""TorchScript backend: the exported sampler as a ``torch.jit`` module on the CPU or one CUDA device."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from caloflow_repo import DEFAULT_PRECISION
from caloflow_server._device import normalize_device
from caloflow_server._warm_up import warm_up_calls
from caloflow_server.errors import DeviceOutOfMemoryError, InferenceError, RuntimeLoadError

logger = logging.getLogger(__name__)


class TorchScriptBackend:
    """``run(incident (B, 1), noise (B, noise_dim)) -> showers (B, n_voxels)`` through ``torch.jit.load``.

    ``model``: a path or the serialized module (bytes, as verified against the manifest). A CUDA device that
    torch cannot use is refused with ``RuntimeLoadError``, never replaced by the CPU. Torch's thread count is
    process-wide and is left to ``main()``.

    Serves ``fp32-strict`` only: TF32 is switched off for matmuls and cuDNN (process-wide torch flags) and that
    is asserted at load; any other precision is refused with ``RuntimeLoadError``.
    """

    backend = "torchscript"

    def __init__(
        self,
        model: str | Path | bytes,
        device: str = "cpu",
        *,
        noise_dim: int,
        n_voxels: int,
        precision: str = DEFAULT_PRECISION,
    ) -> None:
        if precision != DEFAULT_PRECISION:
            raise RuntimeLoadError(f"the torchscript backend serves {DEFAULT_PRECISION} only, not {precision!r}")
        self.precision = precision
        strict_fp32_torch()
        self.device = normalize_device(device)
        self.noise_dim = noise_dim
        self.n_voxels = n_voxels
        self._torch_device = _torch_device(self.device)
        self._module = _load(model, self._torch_device)

    def run(self, incident_mev: np.ndarray, noise: np.ndarray | Tensor) -> np.ndarray:
        """Unchecked model output (float32); callers that send it anywhere use ``check_showers``."""
        try:
            with torch.inference_mode():
                incident = torch.as_tensor(incident_mev, dtype=torch.float32).to(self._torch_device)
                latent = torch.as_tensor(noise, dtype=torch.float32).to(self._torch_device)
                showers = self._module(incident, latent)
                result: np.ndarray = showers.to(device="cpu", dtype=torch.float32).numpy()
                return result
        except torch.cuda.OutOfMemoryError as exc:
            raise DeviceOutOfMemoryError(f"torch ran out of memory on {self.device}: {exc}") from exc
        except MemoryError as exc:
            raise DeviceOutOfMemoryError(f"torch ran out of host memory: {exc}") from exc
        except (RuntimeError, ValueError, TypeError) as exc:
            raise InferenceError(f"torchscript model failed: {exc}") from exc

    def warm_up(self, batch_sizes: Sequence[int], energy_mev: float = 1000.0) -> None:
        """Run each batch size once (allocator growth and kernel selection happen before traffic)."""
        warm_up_calls(self.run, self.noise_dim, batch_sizes, energy_mev)


def strict_fp32_torch() -> None:
    """Switch TF32 off for torch matmuls and cuDNN, and assert that it is off (``fp32-strict``)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32:
        raise RuntimeLoadError("fp32-strict: torch still reports TF32 enabled for matmul or cuDNN")


def _torch_device(device: str) -> torch.device:
    if device.startswith("cuda"):
        index = int(device.split(":")[1])
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise RuntimeLoadError(f"asked for {device} but torch sees {torch.cuda.device_count()} CUDA devices")
    return torch.device(device)


def _load(model: str | Path | bytes, device: torch.device) -> torch.jit.ScriptModule:
    source: str | io.BytesIO = io.BytesIO(model) if isinstance(model, bytes) else str(model)
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated upstream; it is one of our two export formats
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*deprecated", category=DeprecationWarning)
            module: torch.jit.ScriptModule = torch.jit.load(source, map_location=device)  # type: ignore[no-untyped-call]
    except Exception as exc:  # torch raises RuntimeError, ValueError or its own C++ error types here
        raise RuntimeLoadError(f"torch.jit.load failed on {device}: {exc}") from exc
    module.eval()
    return module
