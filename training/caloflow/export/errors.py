"""Errors of the export step."""

from __future__ import annotations

from caloflow.errors import CaloflowError

__all__ = ["ExportError", "ParityError"]


class ExportError(CaloflowError):
    """A sampler could not be exported, or an artifact could not be loaded back."""


class ParityError(ExportError):
    """An exported artifact's showers differ from the eager sampler's beyond the stated tolerance."""
