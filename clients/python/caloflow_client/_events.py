"""What one attempt of a stream yields, whatever the transport: a header, data chunks, a trailer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from caloflow_client.errors import ServerError
from caloflow_client.results import GenerationInfo

__all__ = ["DataEvent", "Event", "HeaderEvent", "TrailerEvent"]


@dataclass(frozen=True)
class HeaderEvent:
    info: GenerationInfo


@dataclass(frozen=True)
class DataEvent:
    """Showers from ``start_index``; ``energies_mev`` is None when the wire does not carry them (HTTP)."""

    start_index: int
    showers: NDArray[np.float32]
    energies_mev: NDArray[np.float32] | None = None


@dataclass(frozen=True)
class TrailerEvent:
    """The stream's last word. ``error`` is set for status "error" / "cancelled"."""

    status: str
    showers_sent: int
    next_index: int
    sha256: str
    error: ServerError | None = None


Event = HeaderEvent | DataEvent | TrailerEvent
