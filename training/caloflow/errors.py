"""Error types of the offline toolkit. Every user-facing failure is a ``CaloflowError``."""

from __future__ import annotations


class CaloflowError(Exception):
    """Base of every error the ``caloflow`` command reports as a one-line message (exit code 2)."""


class ShowerFileError(CaloflowError, ValueError):
    """A CaloChallenge HDF5 file is missing, malformed or inconsistent; the message names file and problem."""


class GeometryError(CaloflowError, ValueError):
    """A binning file or geometry description is malformed."""
