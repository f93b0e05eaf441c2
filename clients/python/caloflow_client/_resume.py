"""Resumption, transport-neutral: which failures to retry, how long to wait, and where the next attempt starts.

``StreamState`` follows one logical request across attempts. It pins the seed, model and version that the first
header reports (a resumed request must not draw a new seed or land on a new default version), checks that each
attempt continues exactly where the last one stopped and comes from the same artifact, and verifies each
attempt's trailer checksum. The sync and async clients drive it with the same few calls.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace

import numpy as np

from caloflow_client._events import DataEvent, Event, HeaderEvent, TrailerEvent
from caloflow_client.errors import CaloflowClientError, ProtocolError, ResumeMismatchError, TransportError
from caloflow_client.request import GenerateRequest
from caloflow_client.results import GenerationInfo, ShowerChunk

__all__ = ["RetryPolicy", "StreamState"]

logger = logging.getLogger("caloflow_client")

_PINNED = ("model", "version", "artifact_sha256", "seed", "n_voxels")


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``max_retries`` consecutive failed attempts (progress resets the count), exponential backoff."""

    max_retries: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def delay_s(self, failures: int) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** max(0, failures - 1)))


class StreamState:
    """One logical request across attempts: ``request()`` for the next attempt, ``accept`` each event."""

    def __init__(self, request: GenerateRequest, policy: RetryPolicy) -> None:
        self.original = request
        self.policy = policy
        self.info: GenerationInfo | None = None
        self.next_index = request.start_index
        self.resumed_at: list[int] = []
        self.failures = 0
        self._hash = hashlib.sha256()
        self._attempt_start = request.start_index
        self._trailer_ok = False

    @property
    def done(self) -> bool:
        return self._trailer_ok and self.next_index == self.original.stop_index

    def request(self) -> GenerateRequest:
        """The next attempt's request; starts a fresh per-attempt checksum."""
        self._hash = hashlib.sha256()
        self._attempt_start = self.next_index
        self._trailer_ok = False
        if self.info is None:
            return self.original
        info = self.info
        return self.original.resumed_at(self.next_index, model=info.model, version=info.version, seed=info.seed)

    def accept(self, event: Event) -> ShowerChunk | None:
        """Check an event against the stream so far; a data event becomes the chunk to hand to the caller."""
        if isinstance(event, HeaderEvent):
            self._header(event.info)
            return None
        if isinstance(event, TrailerEvent):
            self._trailer(event)
            return None
        return self._data(event)

    def finish_attempt(self) -> None:
        """The attempt's stream ended: it must have ended with an "ok" trailer after every shower."""
        if not self._trailer_ok:
            raise TransportError(f"the stream ended without a trailer after shower {self.next_index}")
        if self.next_index != self.original.stop_index:
            raise ProtocolError(f"the stream ended at shower {self.next_index}, expected {self.original.stop_index}")

    def retry_delay_s(self, error: CaloflowClientError) -> float:
        """Seconds to wait before the next attempt; re-raises ``error`` when it is final."""
        self.failures += 1
        if not error.retryable or self.failures > self.policy.max_retries:
            raise error
        delay = self.policy.delay_s(self.failures)
        if self.info is not None:
            self.resumed_at.append(self.next_index)
        logger.warning("stream interrupted at shower %d (%s); retrying in %.2f s", self.next_index, error, delay)
        return delay

    def _header(self, info: GenerationInfo) -> None:
        if info.start_index != self.next_index:
            raise ProtocolError(f"the stream starts at shower {info.start_index}, asked {self.next_index}")
        if self.info is None:
            self.info = replace(info, start_index=self.original.start_index, count=self.original.total)
            return
        for name in _PINNED:
            if getattr(info, name) != getattr(self.info, name):
                raise ResumeMismatchError(
                    f"resumed stream has {name} {getattr(info, name)!r}, the stream began with "
                    f"{getattr(self.info, name)!r}: it cannot continue it"
                )

    def _data(self, event: DataEvent) -> ShowerChunk:
        info = self.info
        if info is None:
            raise ProtocolError("shower data before the stream header")
        n, n_voxels = event.showers.shape
        if event.start_index != self.next_index or n_voxels != info.n_voxels:
            raise ProtocolError(
                f"chunk of showers {event.start_index}.. ({n} x {n_voxels}) where shower {self.next_index} "
                f"({info.n_voxels} voxels) was due"
            )
        if self.next_index + n > self.original.stop_index:
            raise ProtocolError(f"more showers than the {self.original.total} asked")
        energies = event.energies_mev
        if energies is None:
            energies = self.original.energies_at(event.start_index, n)
        self._hash.update(np.ascontiguousarray(event.showers, dtype="<f4").data)
        self.next_index += n
        self.failures = 0
        return ShowerChunk(event.start_index, event.showers, energies)

    def _trailer(self, event: TrailerEvent) -> None:
        if event.error is not None:
            raise event.error
        if event.next_index != self.next_index or event.showers_sent != self.next_index - self._attempt_start:
            raise ProtocolError(
                f"trailer says {event.showers_sent} showers up to {event.next_index}, received up to {self.next_index}"
            )
        if event.sha256 and event.sha256 != self._hash.hexdigest():
            raise ProtocolError("the trailer's sha256 does not match the showers received")
        self._trailer_ok = True
