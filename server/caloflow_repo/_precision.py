"""Precision modes of a model version and the fidelity-gate records that enable them (manifest ``extra``).

A version's manifest may carry ``extra["precision_gates"]``: ``{mode: record}``, one gate record per reduced
precision mode, written by ``caloflow repo gate``. A record holds at least ``device_class`` (where it was measured:
``"cpu"`` or ``"gpu:<device name>"``), ``verdict`` (``"pass"`` / ``"fail"``) and ``timestamp_utc``; the figures
(paired differences against float64, threshold-flip rate, classifier AUC, CaloChallenge metrics, speed-up) sit
beside them. ``fp32-strict`` needs no record. A mode is servable on a device class only when its record exists,
passed, and was measured on that device class (``enabled_precisions``). ``extra["default_precision"]`` (optional)
names the mode a request without ``precision`` gets; it must itself be enabled, else ``fp32-strict`` is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from caloflow_repo._fields import check_mapping, check_str, fail

__all__ = [
    "CPU_CLASS",
    "CPU_ONLY_PRECISIONS",
    "DEFAULT_PRECISION",
    "GATE_VERDICTS",
    "GPU_ONLY_PRECISIONS",
    "PRECISIONS",
    "PRECISION_GATES_KEY",
    "check_precision_gates",
    "default_precision",
    "enabled_precisions",
    "gpu_class",
]

DEFAULT_PRECISION = "fp32-strict"
PRECISIONS = ("fp32-strict", "tf32", "bf16", "fp16", "int8")
GPU_ONLY_PRECISIONS = ("tf32", "bf16", "fp16")
CPU_ONLY_PRECISIONS = ("int8",)
PRECISION_GATES_KEY = "precision_gates"
DEFAULT_PRECISION_KEY = "default_precision"
GATE_VERDICTS = ("pass", "fail")
CPU_CLASS = "cpu"
_RECORD_KEYS = ("device_class", "verdict", "timestamp_utc")


def gpu_class(device_name: str) -> str:
    """The device class of a GPU: ``"gpu:"`` and its name as the driver reports it (``"gpu:NVIDIA H100 80GB HBM3"``)."""
    return f"gpu:{device_name.strip()}"


def check_precision_gates(extra: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The validated ``extra["precision_gates"]`` (``{}`` when absent); ManifestError naming the bad field."""
    if PRECISION_GATES_KEY not in extra:
        return {}
    field = f"extra.{PRECISION_GATES_KEY}"
    gates = check_mapping(extra[PRECISION_GATES_KEY], field)
    for mode, record in gates.items():
        if mode not in PRECISIONS or mode == DEFAULT_PRECISION:
            fail(f"{field}.{mode}", f"is not a gated precision mode (one of {list(PRECISIONS[1:])})")
        entry = check_mapping(record, f"{field}.{mode}")
        for key in _RECORD_KEYS:
            if key not in entry:
                fail(f"{field}.{mode}.{key}", "is missing")
            check_str(entry[key], f"{field}.{mode}.{key}", nonempty=True)
        if entry["verdict"] not in GATE_VERDICTS:
            fail(f"{field}.{mode}.verdict", f"must be one of {list(GATE_VERDICTS)}, got {entry['verdict']!r}")
    if DEFAULT_PRECISION_KEY in extra and extra[DEFAULT_PRECISION_KEY] not in PRECISIONS:
        fail(
            f"extra.{DEFAULT_PRECISION_KEY}", f"must be one of {list(PRECISIONS)}, got {extra[DEFAULT_PRECISION_KEY]!r}"
        )
    return {mode: dict(record) for mode, record in gates.items()}


def enabled_precisions(
    extra: Mapping[str, Any], device_class: str, artifact_sha256: str | None = None
) -> tuple[str, ...]:
    """``fp32-strict`` and every mode whose gate record passed on ``device_class`` (and, given
    ``artifact_sha256``, was measured on that artifact), in ``PRECISIONS`` order."""
    gates = check_precision_gates(extra)
    passed = {
        mode
        for mode, record in gates.items()
        if record["verdict"] == "pass"
        and record["device_class"] == device_class
        and (artifact_sha256 is None or record.get("artifact_sha256") == artifact_sha256)
    }
    return tuple(mode for mode in PRECISIONS if mode == DEFAULT_PRECISION or mode in passed)


def default_precision(extra: Mapping[str, Any], enabled: tuple[str, ...]) -> str:
    """The manifest's ``default_precision`` when it is among ``enabled``, else ``fp32-strict``."""
    wanted = extra.get(DEFAULT_PRECISION_KEY, DEFAULT_PRECISION)
    return wanted if wanted in enabled else DEFAULT_PRECISION
