"""Durable file-system steps: fsync'd files and directories, atomic replace, exclusive create."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def make_temp_dir(parent: Path) -> Path:
    """A new, world-readable temporary directory in ``parent`` (``mkdtemp`` would leave it 0700)."""
    path = Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))
    path.chmod(DIR_MODE)
    return path


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (new, renamed or removed names) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, text: str) -> None:
    """Write ``text`` to a new or existing file at ``path`` and fsync it (not atomic; for private temp dirs)."""
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())


FILE_MODE = 0o644
DIR_MODE = 0o755


def _write_temp(directory: Path, text: str) -> Path:
    """A new fsync'd, world-readable temporary file in ``directory`` (``mkstemp`` would leave it 0600)."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".txt")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def replace_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` in one step: readers see the old or the new content, never a mix."""
    temp = _write_temp(path.parent, text)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` unless it exists (then leave it and return False); atomic either way."""
    temp = _write_temp(path.parent, text)
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    fsync_dir(path.parent)
    return True
