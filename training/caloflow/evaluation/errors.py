"""The evaluation's one error type: bad inputs or options, reported by ``caloflow evaluate`` as one line."""

from __future__ import annotations

from caloflow.errors import CaloflowError

__all__ = ["EvaluationError"]


class EvaluationError(CaloflowError, ValueError):
    """An evaluation input or option is unusable; the message names the file or the option."""
