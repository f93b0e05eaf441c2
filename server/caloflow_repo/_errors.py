"""Errors of the model repository. Every message names the model, version or file and the problem."""

from __future__ import annotations


class RepositoryError(Exception):
    """Base of every model-repository failure."""


class InvalidNameError(RepositoryError, ValueError):
    """A model name, version or artifact filename is malformed (or tries to escape the repository)."""


class ModelNotFoundError(RepositoryError, LookupError):
    """The repository holds no model of that name."""


class VersionNotFoundError(RepositoryError, LookupError):
    """The model holds no such version, or its default pointer names a missing version."""


class ArtifactNotFoundError(RepositoryError, LookupError):
    """The version's manifest lists no artifact of that filename."""


class ManifestError(RepositoryError, ValueError):
    """A manifest is missing, not JSON, or has a missing, unknown or ill-typed field."""


class ChecksumError(RepositoryError):
    """An artifact is missing, truncated or altered: its size or sha256 differs from the manifest."""
