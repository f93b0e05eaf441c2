"""``ModelRepository``: a Triton-compatible directory of versioned, checksummed model exports.

Layout: ``<root>/<model>/config.pbtxt``, ``<root>/<model>/<version>/{manifest.json, artifacts}`` and
``<root>/<model>/default`` (the default version number). Versions are published by renaming a complete,
fsync'd temporary directory, so a reader never sees a partial version and concurrent writers never share
a number. Entries that are not valid model or version names (``README.md``, ``.tmp-*``) are ignored.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from caloflow_repo._atomic import create_exclusive, fsync_dir, make_temp_dir, replace_atomic, write_durable
from caloflow_repo._checksums import copy_with_sha256, sha256_file
from caloflow_repo._errors import (
    ArtifactNotFoundError,
    ChecksumError,
    InvalidNameError,
    ManifestError,
    ModelNotFoundError,
    RepositoryError,
    VersionNotFoundError,
)
from caloflow_repo._manifest import MANIFEST_FILENAME, ArtifactInfo, Manifest
from caloflow_repo._names import is_version_name, parse_version, validate_filename, validate_model_name
from caloflow_repo._precision import PRECISION_GATES_KEY
from caloflow_repo._quality import (
    QUALITY_CHECKSUM_FILENAME,
    QUALITY_FILENAME,
    has_quality,
    read_quality,
    write_quality,
)
from caloflow_repo._triton_config import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_QUEUE_DELAY_US, render_config_pbtxt

logger = logging.getLogger(__name__)

DEFAULT_POINTER = "default"
CONFIG_FILENAME = "config.pbtxt"
_SIGNATURE_FIELDS = ("particle", "dataset", "shower_shape", "noise_dim", "n_voxels", "inputs", "outputs")
_PUBLISH_ATTEMPTS = 100


class ModelRepository:
    """Read, verify and publish model versions under ``root``."""

    def __init__(
        self,
        root: str | Path,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US,
    ) -> None:
        self.root = Path(root)
        self.max_batch_size = max_batch_size
        self.max_queue_delay_us = max_queue_delay_us

    def __repr__(self) -> str:
        return f"ModelRepository({str(self.root)!r})"

    # ----------------------------------------------------------------------------------------- reading
    def models(self) -> list[str]:
        """Names of the models holding at least one version, sorted."""
        if not self.root.is_dir():
            raise RepositoryError(f"model repository {self.root} does not exist")
        return sorted(entry.name for entry in self.root.iterdir() if _is_model_dir(entry))

    def versions(self, model: str) -> list[int]:
        """The model's version numbers, ascending."""
        model_dir = self._model_dir(model)
        return sorted(int(entry.name) for entry in model_dir.iterdir() if _is_version_dir(entry))

    def default_version(self, model: str) -> int:
        """The version named by ``<model>/default``, or the highest version when there is no pointer."""
        versions = self.versions(model)
        pointer = self.root / model / DEFAULT_POINTER
        if not pointer.exists():
            if not versions:
                raise VersionNotFoundError(f"model {model!r} has no versions in {self.root}")
            return versions[-1]
        version = _read_pointer(pointer)
        if version not in versions:
            raise VersionNotFoundError(f"{pointer} names version {version}, which does not exist ({versions=})")
        return version

    def manifest(self, model: str, version: int | str | None = None) -> Manifest:
        """The validated manifest of ``model`` at ``version`` (default: the default version)."""
        number = self._resolve_version(model, version)
        path = self.root / model / str(number) / MANIFEST_FILENAME
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ManifestError(f"{path}: missing") from None
        try:
            manifest = Manifest.from_json(text)
        except ManifestError as exc:
            raise ManifestError(f"{path}: {exc}") from exc
        if (manifest.model, manifest.version) != (model, number):
            raise ManifestError(
                f"{path}: says model {manifest.model!r} version {manifest.version}, but lies in {model}/{number}"
            )
        return manifest

    def verify(self, model: str, version: int | str | None = None) -> Manifest:
        """Recompute size and sha256 of every listed artifact and of the quality report when there is one;
        ChecksumError naming the first bad file."""
        manifest = self.manifest(model, version)
        version_dir = self.root / model / str(manifest.version)
        for artifact in manifest.artifacts:
            _verify_artifact(version_dir / artifact.filename, artifact)
        if has_quality(version_dir):
            read_quality(version_dir)
        listed = {artifact.filename for artifact in manifest.artifacts} | {MANIFEST_FILENAME}
        listed |= {QUALITY_FILENAME, QUALITY_CHECKSUM_FILENAME}
        for entry in sorted(version_dir.iterdir()):
            if entry.name not in listed:
                logger.warning("%s is not listed in the manifest and is not verified", entry)
        return manifest

    def artifact_path(self, model: str, version: int | str, filename: str) -> Path:
        """The path of a listed, existing artifact; never outside the repository root."""
        manifest = self.manifest(model, version)
        manifest.artifact(validate_filename(filename))
        path = self.root / model / str(manifest.version) / filename
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise InvalidNameError(f"{path} resolves outside the model repository {self.root}")
        if not path.is_file():
            raise ArtifactNotFoundError(f"{path}: listed in the manifest but missing")
        return path

    def quality(self, model: str, version: int | str | None = None) -> tuple[bytes, str]:
        """The version's verified ``quality.json`` bytes and sha256; QualityNotFoundError when it has none."""
        number = self._resolve_version(model, version)
        return read_quality(self.root / model / str(number))

    # ----------------------------------------------------------------------------------------- writing
    def write_quality(self, model: str, version: int | str, text: str) -> Path:
        """Write (or replace) the version's quality report and its checksum; returns the report's path."""
        number = self._resolve_version(model, version)
        version_dir = self.root / model / str(number)
        write_quality(version_dir, text)
        logger.info("wrote the quality report of %s version %d", model, number)
        return version_dir / QUALITY_FILENAME

    def set_default(self, model: str, version: int | str) -> Manifest:
        """Point ``<model>/default`` at a verified version and rewrite ``config.pbtxt`` to serve it."""
        manifest = self.verify(model, parse_version(version))
        replace_atomic(self.root / model / DEFAULT_POINTER, f"{manifest.version}\n")
        self.write_config(model)
        logger.info("default version of %s is now %d", model, manifest.version)
        return manifest

    def write_config(self, model: str) -> Path:
        """(Re)write ``<model>/config.pbtxt`` from the default version's manifest."""
        manifest = self.manifest(model)
        path = self.root / model / CONFIG_FILENAME
        replace_atomic(path, render_config_pbtxt(manifest, self.max_batch_size, self.max_queue_delay_us))
        return path

    def add_version(
        self, model: str, staging_dir: str | Path, manifest: Manifest, *, make_default: bool = False
    ) -> int:
        """Publish the artifacts in ``staging_dir`` as the model's next version and return its number.

        ``manifest`` lists every file of ``staging_dir`` (a ``manifest.json`` there is ignored); its
        ``version`` is replaced, and each artifact's sha256 and size are computed from the copied bytes
        (an artifact whose sha256 is given must match). The default pointer is created when missing, or
        moved when ``make_default``.
        """
        staging = Path(staging_dir)
        _check_draft(validate_model_name(model), manifest, staging)
        self._check_signature(model, manifest)
        model_dir = self.root / model
        model_dir.mkdir(parents=True, exist_ok=True)
        temp = make_temp_dir(model_dir)
        try:
            artifacts = tuple(_copy_artifact(staging, temp, artifact) for artifact in manifest.artifacts)
            version = _publish(model_dir, temp, dataclasses.replace(manifest, artifacts=artifacts))
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        self._point_default(model, version, make_default)
        logger.info("published %s version %d in %s", model, version, self.root)
        return version

    def record_precision_gate(self, model: str, version: int | str, mode: str, record: dict[str, Any]) -> Manifest:
        """Write ``record`` as the gate record of ``mode`` into the version's manifest (``extra.precision_gates``),
        replacing an earlier one; the artifacts are verified first and stay untouched, so ``verify`` still passes.
        The manifest is rewritten atomically (readers see the old or the new file, never a mix)."""
        manifest = self.verify(model, version)
        gates = dict(manifest.extra.get(PRECISION_GATES_KEY, {}))
        gates[mode] = record
        updated = dataclasses.replace(manifest, extra={**manifest.extra, PRECISION_GATES_KEY: gates})
        updated.validate()
        replace_atomic(self.root / model / str(manifest.version) / MANIFEST_FILENAME, updated.to_json())
        logger.info("recorded the %s gate (%s) in %s version %d", mode, record.get("verdict"), model, manifest.version)
        return updated

    def remove_version(self, model: str, version: int | str) -> None:
        """Delete a version that is not the default. It leaves the version namespace in one rename (readers see
        it whole or not at all; a server that loaded it keeps its verified bytes), then its files are removed."""
        number = self._resolve_version(model, version)
        if number == self.default_version(model):
            raise RepositoryError(f"version {number} is the default of {model!r}; point the default elsewhere first")
        model_dir = self.root / model
        temp = make_temp_dir(model_dir)
        os.rename(model_dir / str(number), temp / str(number))
        fsync_dir(model_dir)
        shutil.rmtree(temp)
        logger.info("removed %s version %d from %s", model, number, self.root)

    # ----------------------------------------------------------------------------------------- helpers
    def _model_dir(self, model: str) -> Path:
        path = self.root / validate_model_name(model)
        if not path.is_dir():
            raise ModelNotFoundError(f"no model {model!r} in repository {self.root}")
        return path

    def _resolve_version(self, model: str, version: int | str | None) -> int:
        if version is None:
            return self.default_version(model)
        number = parse_version(version)
        if not (self._model_dir(model) / str(number)).is_dir():
            raise VersionNotFoundError(f"model {model!r} has no version {number} (versions: {self.versions(model)})")
        return number

    def _check_signature(self, model: str, manifest: Manifest) -> None:
        """Versions of one model share one I/O signature: ``config.pbtxt`` describes them all."""
        try:
            current = self.manifest(model)
        except RepositoryError as exc:
            logger.debug("no readable default version of %s to compare against: %s", model, exc)
            return
        for name in _SIGNATURE_FIELDS:
            new, old = getattr(manifest, name), getattr(current, name)
            if new != old:
                raise ManifestError(
                    f"model {model!r}: new version's {name} {new!r} differs from version {current.version}'s {old!r}; "
                    "the versions of one model share one signature - export under a new model name"
                )

    def _point_default(self, model: str, version: int, make_default: bool) -> None:
        pointer = self.root / model / DEFAULT_POINTER
        if make_default:
            replace_atomic(pointer, f"{version}\n")
        else:
            create_exclusive(pointer, f"{version}\n")
        self.write_config(model)


def _is_model_dir(entry: Path) -> bool:
    try:
        validate_model_name(entry.name)
    except InvalidNameError:
        return False
    return entry.is_dir() and any(_is_version_dir(child) for child in entry.iterdir())


def _is_version_dir(entry: Path) -> bool:
    return is_version_name(entry.name) and entry.is_dir()


def _read_pointer(pointer: Path) -> int:
    text = pointer.read_text(encoding="utf-8").strip()
    try:
        return parse_version(text)
    except InvalidNameError as exc:
        raise RepositoryError(f"{pointer}: {exc}") from None


def _verify_artifact(path: Path, artifact: ArtifactInfo) -> None:
    if not path.is_file():
        raise ChecksumError(f"{path}: missing (listed in the manifest)")
    size = path.stat().st_size
    if size != artifact.size_bytes:
        raise ChecksumError(f"{path}: {size} bytes, the manifest says {artifact.size_bytes} (truncated or altered)")
    digest = sha256_file(path)
    if digest != artifact.sha256:
        raise ChecksumError(f"{path}: sha256 {digest} differs from the manifest's {artifact.sha256} (altered)")


def _check_draft(model: str, manifest: Manifest, staging: Path) -> None:
    """Fail before copying anything: a consistent manifest listing exactly the files in ``staging``."""
    if manifest.model != model:
        raise ManifestError(f"manifest names model {manifest.model!r}, but is being added to {model!r}")
    placeholder = "0" * 64
    artifacts = tuple(dataclasses.replace(a, sha256=a.sha256 or placeholder) for a in manifest.artifacts)
    try:
        dataclasses.replace(manifest, version=1, artifacts=artifacts).validate()
    except ManifestError as exc:
        raise ManifestError(f"model {model!r}: {exc}") from exc
    if not staging.is_dir():
        raise RepositoryError(f"staging directory {staging} does not exist")
    listed = {artifact.filename for artifact in manifest.artifacts}
    present = {entry.name for entry in staging.iterdir() if entry.name != MANIFEST_FILENAME}
    unlisted = sorted(present - listed)
    if unlisted:
        raise ManifestError(f"{staging / unlisted[0]}: not listed in the manifest's artifacts")
    for name in sorted(listed):
        if not (staging / name).is_file():
            raise ArtifactNotFoundError(f"{staging / name}: listed in the manifest but not a file")


def _copy_artifact(staging: Path, temp: Path, artifact: ArtifactInfo) -> ArtifactInfo:
    source = staging / artifact.filename
    digest, size = copy_with_sha256(source, temp / artifact.filename)
    if artifact.sha256 and (digest, size) != (artifact.sha256, artifact.size_bytes):
        raise ChecksumError(
            f"{source}: copied {size} bytes with sha256 {digest}, the manifest says "
            f"{artifact.size_bytes} bytes with sha256 {artifact.sha256}"
        )
    return dataclasses.replace(artifact, sha256=digest, size_bytes=size)


def _publish(model_dir: Path, temp: Path, manifest: Manifest) -> int:
    """Rename ``temp`` to the next free version number; retry when a concurrent writer took it."""
    for _ in range(_PUBLISH_ATTEMPTS):
        existing = [int(entry.name) for entry in model_dir.iterdir() if _is_version_dir(entry)]
        version = max(existing, default=0) + 1
        final = dataclasses.replace(manifest, version=version)
        final.validate()
        write_durable(temp / MANIFEST_FILENAME, final.to_json())
        fsync_dir(temp)
        try:
            os.rename(temp, model_dir / str(version))
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                continue
            raise
        fsync_dir(model_dir)
        return version
    raise RepositoryError(f"{model_dir}: no free version number after {_PUBLISH_ATTEMPTS} attempts")
