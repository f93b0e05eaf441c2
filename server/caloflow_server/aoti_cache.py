"""Compiled packages of exported programs, built for the machine that serves them and cached on disk.

An AOTInductor package is native code for one CPU and one torch build, so it is never shipped in the model
repository: the server compiles the version's ``torch_export`` artifact (``model.pt2``, a ``torch.export``
program) with torch alone, once, and keeps the package under ``<cache>/<artifact sha256>/``:

* ``model.aoti.pt2``: the package;
* ``key.json``: what it was built from and for - the artifact's sha256, the torch version, the machine's
  architecture (machine, torch's CPU vector capability, CPU model name), the compile options - and the
  package's own sha256.

Packages are compiled with ``cpp.dynamic_threads``: their parallel loops take the calling thread's OpenMP thread
count (which ``AotiBackend`` sets to the server's threads per model call) instead of a count frozen in at compile
time from whatever the compiling process had.

A cached package is used only when every recorded field equals this process's; a stale one (another torch,
another artifact) or a foreign one (another CPU, or package bytes that are not the recorded ones) is refused,
logged with the field that differs, and rebuilt when compiling is allowed (``RuntimeLoadError`` otherwise).
A build goes to a temporary directory first and replaces the entry in one rename.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch._inductor

from caloflow_server.errors import RuntimeLoadError

__all__ = ["PackageKey", "compiled_package", "machine_key"]

logger = logging.getLogger(__name__)

PACKAGE_NAME = "model.aoti.pt2"
KEY_NAME = "key.json"
COMPILE_OPTIONS: tuple[tuple[str, bool], ...] = (("cpp.dynamic_threads", True), ("freezing", True))
"""AOTInductor options: frozen weights (the linear layers' weights pre-packed for this CPU), thread count taken
from the caller at run time. A tuple: ``aoti_compile_and_package`` adds entries to the dict it is given."""


@dataclass(frozen=True)
class PackageKey:
    """What a compiled package is valid for."""

    artifact_sha256: str
    torch_version: str
    arch: str
    compile_options: str


def machine_key(artifact_sha256: str) -> PackageKey:
    """The key a package compiled here, now, from the artifact ``artifact_sha256`` must carry."""
    return PackageKey(artifact_sha256, torch.__version__, _cpu_arch(), _options_text())


def _options_text() -> str:
    return ",".join(f"{name}={value}" for name, value in COMPILE_OPTIONS)


def _cpu_arch() -> str:
    return f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()} {_cpu_model()}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def compiled_package(cache_dir: Path, artifact_sha256: str, program: bytes, *, compile_missing: bool = True) -> Path:
    """The path of a package compiled from ``program`` (the verified ``torch_export`` bytes) for this machine.

    Reuses the cached package when its key matches, else compiles (minutes for a real model) unless
    ``compile_missing`` is false, in which case a missing, stale or foreign package raises ``RuntimeLoadError``.
    """
    entry = cache_dir / artifact_sha256
    wanted = machine_key(artifact_sha256)
    problem = _cached_problem(entry, wanted)
    if problem is None:
        logger.info("compiled package %s matches this machine (%s, torch %s)", entry, wanted.arch, wanted.torch_version)
        return entry / PACKAGE_NAME
    if not compile_missing:
        raise RuntimeLoadError(f"{entry}: {problem}, and compiling is turned off")
    logger.warning("%s: %s; compiling the program for this machine (%s)", entry, problem, wanted.arch)
    _build(entry, wanted, program)
    return entry / PACKAGE_NAME


def _cached_problem(entry: Path, wanted: PackageKey) -> str | None:
    """Why the cached package in ``entry`` cannot be used (None: it can)."""
    key_path, package = entry / KEY_NAME, entry / PACKAGE_NAME
    if not key_path.is_file() or not package.is_file():
        return "no compiled package"
    try:
        recorded = json.loads(key_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable {KEY_NAME} ({exc})"
    if not isinstance(recorded, dict):
        return f"{KEY_NAME} is not an object"
    for field, value in asdict(wanted).items():
        if recorded.get(field) != value:
            return f"refused a stale or foreign package: {KEY_NAME} {field} is {recorded.get(field)!r}, here {value!r}"
    digest = _sha256(package)
    if recorded.get("package_sha256") != digest:
        recorded_digest = recorded.get("package_sha256")
        return f"refused a foreign package: {PACKAGE_NAME} has sha256 {digest}, {KEY_NAME} records {recorded_digest!r}"
    return None


def _build(entry: Path, key: PackageKey, program: bytes) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=".build-", dir=entry.parent))
    try:
        started = time.perf_counter()
        _compile(program, temp / PACKAGE_NAME)
        record = {**asdict(key), "package_sha256": _sha256(temp / PACKAGE_NAME)}
        (temp / KEY_NAME).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        _replace_dir(temp, entry)
        logger.info("compiled %s in %.1f s", entry / PACKAGE_NAME, time.perf_counter() - started)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _compile(program: bytes, path: Path) -> None:
    """AOTInductor with ``COMPILE_OPTIONS``."""
    try:
        exported = torch.export.load(io.BytesIO(program))
        configs = dict(COMPILE_OPTIONS)
        torch._inductor.aoti_compile_and_package(exported, package_path=str(path), inductor_configs=configs)
    except Exception as exc:  # the exporter and the C++ compiler fail in many types
        raise RuntimeLoadError(f"AOTInductor could not compile the program: {exc}") from exc


def _replace_dir(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` (an old ``target`` is moved aside first, then removed)."""
    old = target.with_name(f".old-{target.name}-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(source, target)
    shutil.rmtree(old, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
