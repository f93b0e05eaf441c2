"""Typed field checks for manifests: each raises ManifestError naming the field and what was expected."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from caloflow_repo._errors import ManifestError

_SHA256 = re.compile(r"[0-9a-f]{64}")


def fail(field: str, problem: str) -> NoReturn:
    raise ManifestError(f"manifest field {field!r} {problem}")


def _got(value: Any) -> str:
    text = repr(value)
    return f"got {text if len(text) <= 60 else text[:57] + '...'}"


def check_str(value: Any, field: str, *, nonempty: bool = False) -> str:
    if not isinstance(value, str) or (nonempty and not value):
        fail(field, f"must be a {'non-empty ' if nonempty else ''}string, {_got(value)}")
    return value


def check_int(value: Any, field: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        fail(field, f"must be an integer >= {minimum}, {_got(value)}")
    return value


def check_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        fail(field, f"must be true or false, {_got(value)}")
    return value


def check_number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        fail(field, f"must be a finite number, {_got(value)}")
    return float(value)


def check_sha256(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        fail(field, f"must be 64 lower-case hex digits (sha256), {_got(value)}")
    return value


def check_sequence(value: Any, field: str, *, min_length: int = 0) -> Sequence[Any]:
    if not isinstance(value, list | tuple) or len(value) < min_length:
        fail(field, f"must be a list of at least {min_length} items, {_got(value)}")
    return value


def check_mapping(value: Any, field: str) -> Mapping[str, Any]:
    """A JSON object: string keys, JSON-serialisable values without NaN or infinity."""
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        fail(field, f"must be an object with string keys, {_got(value)}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        fail(field, f"must hold only JSON values (no NaN/inf): {exc}")
    return value


def require_keys(data: Mapping[str, Any], keys: Sequence[str], field: str) -> None:
    for key in keys:
        if key not in data:
            fail(field, f"is missing key {key!r}")
