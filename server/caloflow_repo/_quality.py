"""A version's quality report: ``quality.json`` and its checksum sidecar ``quality.sha256``.

The report is written after the version is published (it needs the served artifact to generate showers),
so it is not one of the manifest's artifacts, whose list is fixed at publication. Its digest lives in
``quality.sha256`` (``sha256sum`` format: ``<hex>  quality.json``), written after the report; reading the
report through :func:`read_quality` (the server, ``caloflow repo show``) and ``ModelRepository.verify``
recompute the digest, so a report edited by hand, truncated or left without its sidecar is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from caloflow_repo._atomic import replace_atomic
from caloflow_repo._errors import ChecksumError, RepositoryError

__all__ = [
    "QUALITY_CHECKSUM_FILENAME",
    "QUALITY_FILENAME",
    "QualityNotFoundError",
    "has_quality",
    "read_quality",
    "write_quality",
]

QUALITY_FILENAME = "quality.json"
QUALITY_CHECKSUM_FILENAME = "quality.sha256"


class QualityNotFoundError(RepositoryError, LookupError):
    """The version has no quality report (neither ``quality.json`` nor its sidecar)."""


def has_quality(version_dir: Path) -> bool:
    """True when either file of the report is there (a half-present report is then refused by ``read_quality``)."""
    return (version_dir / QUALITY_FILENAME).exists() or (version_dir / QUALITY_CHECKSUM_FILENAME).exists()


def write_quality(version_dir: Path, text: str) -> str:
    """Write the report (a JSON object) and then its sidecar, each atomically; returns the report's sha256."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise RepositoryError(f"{version_dir / QUALITY_FILENAME}: not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise RepositoryError(f"{version_dir / QUALITY_FILENAME}: must be a JSON object")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    replace_atomic(version_dir / QUALITY_FILENAME, text)
    replace_atomic(version_dir / QUALITY_CHECKSUM_FILENAME, f"{digest}  {QUALITY_FILENAME}\n")
    return digest


def read_quality(version_dir: Path) -> tuple[bytes, str]:
    """The report's bytes and sha256, verified against the sidecar; QualityNotFoundError when there is none."""
    report, sidecar = version_dir / QUALITY_FILENAME, version_dir / QUALITY_CHECKSUM_FILENAME
    if not has_quality(version_dir):
        raise QualityNotFoundError(f"{version_dir}: no quality report ({QUALITY_FILENAME})")
    if not report.is_file():
        raise ChecksumError(f"{report}: missing (its checksum {sidecar.name} is there)")
    if not sidecar.is_file():
        raise ChecksumError(f"{sidecar}: missing, so {report.name} cannot be verified")
    expected = _expected_digest(sidecar)
    data = report.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise ChecksumError(f"{report}: sha256 {digest} differs from {sidecar.name}'s {expected} (altered)")
    return data, digest


def _expected_digest(sidecar: Path) -> str:
    parts = sidecar.read_text(encoding="utf-8").split()
    if len(parts) != 2 or parts[1] != QUALITY_FILENAME or len(parts[0]) != 64:
        raise ChecksumError(f"{sidecar}: expected '<sha256>  {QUALITY_FILENAME}', got {parts!r}")
    return parts[0].lower()
