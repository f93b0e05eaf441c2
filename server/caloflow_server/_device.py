"""Device strings: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, normalised to ``"cpu"`` / ``"cuda:N"``."""

from __future__ import annotations

import re

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
