"""Validation of model names, version numbers and artifact filenames: nothing that could leave the repository."""

from __future__ import annotations

import re

from caloflow_repo._errors import InvalidNameError

_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_VERSION = re.compile(r"[1-9][0-9]{0,17}")
_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def validate_model_name(name: str) -> str:
    """Return ``name`` if it is a valid model name (``^[a-z0-9][a-z0-9_.-]{0,63}$``, no ``..``)."""
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name) or ".." in name:
        raise InvalidNameError(
            f"invalid model name {name!r}: expected 1-64 characters of a-z, 0-9, '_', '.', '-', "
            "starting with a letter or digit, without '..'"
        )
    return name


def parse_version(value: str | int) -> int:
    """A version number: a positive integer; as text, decimal digits without sign or leading zero."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidNameError(f"invalid version {value!r}: expected a positive integer")
    if isinstance(value, int):
        if value < 1:
            raise InvalidNameError(f"invalid version {value}: expected a positive integer")
        return value
    if not _VERSION.fullmatch(value):
        raise InvalidNameError(f"invalid version {value!r}: expected a positive integer without sign or leading zero")
    return int(value)


def is_version_name(name: str) -> bool:
    """Whether a directory name is a version (Triton ignores non-numeric names and leading zeros too)."""
    return _VERSION.fullmatch(name) is not None


def validate_filename(name: str) -> str:
    """Return ``name`` if it is a plain file name: no directory part, not hidden, not ``..``."""
    if not isinstance(name, str) or not _FILENAME.fullmatch(name) or ".." in name:
        raise InvalidNameError(
            f"invalid artifact filename {name!r}: expected a plain file name of A-Z, a-z, 0-9, '_', '.', '-'"
        )
    return name
