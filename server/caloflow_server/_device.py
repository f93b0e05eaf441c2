"""Device strings: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, normalised to ``"cpu"`` / ``"cuda:N"``."""

from __future__ import annotations

import re

from caloflow_repo import CPU_CLASS, gpu_class
from caloflow_server.errors import RuntimeLoadError

_DEVICE = re.compile(r"(cpu|cuda)(?::(\d+))?")


def normalize_device(device: str) -> str:
    match = _DEVICE.fullmatch(device.strip().lower())
    if match is None or (match.group(1) == "cpu" and match.group(2) is not None):
        raise RuntimeLoadError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if match.group(1) == "cpu":
        return "cpu"
    return f"cuda:{int(match.group(2) or 0)}"


def cuda_index(device: str) -> int | None:
    """The CUDA device number of a normalised device string, None for the CPU."""
    return int(device.split(":")[1]) if device.startswith("cuda:") else None


def device_class(device: str) -> str:
    """What a precision gate record is valid for: ``"cpu"``, or ``"gpu:<name>"`` of the CUDA device."""
    index = cuda_index(normalize_device(device))
    if index is None:
        return CPU_CLASS
    import torch  # only for a CUDA device, whose backends need torch anyway

    return gpu_class(torch.cuda.get_device_name(index))
