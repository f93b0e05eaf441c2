"""AOTInductor backend: the version's exported program compiled for this CPU (see ``aoti_cache``), parity-checked.

``AotiBackend`` runs a compiled package. ``check_parity`` compares it, before the model turns ready, with a
reference runtime of the same version (its ONNX artifact under ONNX Runtime) on seeded random inputs over the
manifest's energy range: each shower must satisfy ``sum_v |got_v - ref_v| <= atol + rtol * sum_v |ref_v|``
(0.01 MeV and 2e-2, the export parity criterion), else ``RuntimeLoadError`` names the worst shower.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch._inductor
from torch import Tensor

from caloflow_server._device import normalize_device
from caloflow_server._warm_up import warm_up_calls
from caloflow_server.errors import DeviceOutOfMemoryError, InferenceError, RuntimeLoadError

__all__ = ["AotiBackend", "check_parity"]

logger = logging.getLogger(__name__)

PARITY_ATOL_MEV = 0.01
PARITY_RTOL = 2e-2
PARITY_ROWS = 64


class AotiBackend:
    """``run(incident (B, 1), noise (B, noise_dim)) -> showers (B, n_voxels)`` through a compiled package.

    ``intra_op_threads``: the threads of one call (the server's cores per concurrent model call). The package's
    loops and its oneDNN matmuls use the calling thread's OpenMP thread count, and a thread that never set one
    gets the machine's core count: two concurrent calls on a 2-core CPU would run four threads. So each calling
    thread sets it (``torch.set_num_threads``, which also sets torch's default for new threads) before its first
    call. None: leave it as it is.
    """

    backend = "aoti"

    def __init__(
        self,
        package: Path,
        device: str = "cpu",
        *,
        noise_dim: int,
        n_voxels: int,
        intra_op_threads: int | None = None,
    ) -> None:
        self.device = normalize_device(device)
        if self.device != "cpu":
            raise RuntimeLoadError(f"the aoti backend compiles for the CPU only, asked for {self.device}")
        self.noise_dim, self.n_voxels = noise_dim, n_voxels
        self.package = package
        self.intra_op_threads = intra_op_threads
        try:
            self._model = torch._inductor.aoti_load_package(str(package))
        except Exception as exc:  # torch raises RuntimeError or its C++ error types here
            raise RuntimeLoadError(f"cannot load the compiled package {package}: {exc}") from exc

    def run(self, incident_mev: np.ndarray, noise: np.ndarray | Tensor) -> np.ndarray:
        """Unchecked model output (float32); callers that send it anywhere use ``check_showers``."""
        if self.intra_op_threads is not None and torch.get_num_threads() != self.intra_op_threads:
            torch.set_num_threads(self.intra_op_threads)  # this thread's OpenMP count; cheap to read every call
        try:
            with torch.inference_mode():
                incident = torch.as_tensor(incident_mev, dtype=torch.float32).reshape(-1, 1).contiguous()
                latent = torch.as_tensor(noise, dtype=torch.float32).to("cpu").contiguous()
                result = self._model(incident, latent)
                showers = result[0] if isinstance(result, (tuple, list)) else result
                out: np.ndarray = showers.to(dtype=torch.float32).numpy()
                return out
        except MemoryError as exc:
            raise DeviceOutOfMemoryError(f"the compiled package ran out of host memory: {exc}") from exc
        except (RuntimeError, ValueError, TypeError) as exc:
            raise InferenceError(f"the compiled package failed: {exc}") from exc

    def warm_up(self, batch_sizes: Sequence[int], energy_mev: float = 1000.0) -> None:
        """Run each batch size once (the first call folds the constants and sizes the buffers)."""
        warm_up_calls(self.run, self.noise_dim, batch_sizes, energy_mev)


class _Sampler(Protocol):
    def run(self, incident_mev: np.ndarray, noise: np.ndarray | Tensor) -> np.ndarray: ...


def check_parity(
    candidate: _Sampler, reference: _Sampler, energy_range_mev: tuple[float, float], noise_dim: int
) -> None:
    """Raise ``RuntimeLoadError`` unless every shower of ``candidate`` is within the parity criterion of
    ``reference`` on ``PARITY_ROWS`` seeded inputs (energies log-uniform over the range, standard normal noise)."""
    rng = np.random.default_rng(20261207)
    low, high = (math.log(e) for e in energy_range_mev)
    incident = np.exp(rng.uniform(low, high, (PARITY_ROWS, 1))).astype(np.float32)
    noise = rng.standard_normal((PARITY_ROWS, noise_dim)).astype(np.float32)
    got, expected = candidate.run(incident, noise), reference.run(incident, noise)
    if got.shape != expected.shape:
        raise RuntimeLoadError(f"parity: the compiled package returned {got.shape}, the reference {expected.shape}")
    difference = np.abs(got.astype(np.float64) - expected).sum(axis=1)
    allowed = PARITY_ATOL_MEV + PARITY_RTOL * np.abs(expected.astype(np.float64)).sum(axis=1)
    excess = np.nan_to_num(difference / allowed, nan=np.inf)
    worst = int(np.argmax(excess))
    if excess[worst] > 1.0:
        raise RuntimeLoadError(
            f"parity: shower {worst} of {PARITY_ROWS} (E = {incident[worst, 0]:.4g} MeV) differs from the reference "
            f"by {difference[worst]:.4g} MeV summed over voxels, more than the {allowed[worst]:.4g} MeV allowed"
        )
    logger.info("parity: %d showers within %.3g of the allowed difference", PARITY_ROWS, float(excess.max()))
