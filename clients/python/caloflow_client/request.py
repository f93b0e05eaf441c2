"""A generation request as the client holds it: which model, which energies, which seed, from which index.

Only the structure is checked here (one of the two energy forms, counts and shapes), because resumption needs
it; values (energy ranges, limits, model names) are the server's to judge, and its errors name the field.
``resumed_at`` is the heart of resumption: the same seed, model and version, starting at ``next_index``, with
the energies of the showers not yet received.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypedDict, Unpack

import numpy as np
from numpy.typing import NDArray

from caloflow_client.errors import InvalidRequestError

__all__ = ["GenerateFields", "GenerateRequest"]

_UINT64_MAX = 2**64 - 1


class GenerateFields(TypedDict, total=False):
    """Keyword arguments of ``generate``, ``stream`` and ``generate_to_file`` (see ``GenerateRequest``)."""

    particle: str | None
    dataset: str | None
    model: str | None
    model_version: int | str | None
    energy_mev: float | None
    count: int | None
    energies_mev: Sequence[float] | NDArray[np.floating] | None
    seed: int | None
    start_index: int
    allow_extrapolation: bool
    chunk_showers: int | None


@dataclass(frozen=True)
class GenerateRequest:
    """Give ``model``, ``dataset`` (``ds2-electron``, ``ild-photon`` ...) or ``particle`` (a Dataset 1 short form),
    and ``energy_mev`` + ``count`` or ``energies_mev`` (MeV, float32 on the wire).

    Shower ``start_index + k`` has energy ``energies_mev[k]``; with a seed its noise depends only on (seed,
    index), so any split of the indices into requests gives the same showers (in the server's deterministic mode).
    """

    particle: str | None = None
    dataset: str | None = None
    model: str | None = None
    model_version: int | str | None = None
    energy_mev: float | None = None
    count: int | None = None
    energies_mev: NDArray[np.float32] | None = None
    seed: int | None = None
    start_index: int = 0
    allow_extrapolation: bool = False
    chunk_showers: int | None = None

    @classmethod
    def build(cls, **fields: Unpack[GenerateFields]) -> GenerateRequest:
        """A checked request from keyword arguments (``GenerateFields``)."""
        unknown = sorted(set(fields) - set(GenerateFields.__annotations__))
        if unknown:
            raise InvalidRequestError(unknown[0], "unknown argument")
        energies = fields.get("energies_mev")
        request = cls(
            particle=fields.get("particle"),
            dataset=fields.get("dataset"),
            model=fields.get("model"),
            model_version=fields.get("model_version"),
            energy_mev=fields.get("energy_mev"),
            count=fields.get("count"),
            energies_mev=None if energies is None else _energies(energies),
            seed=fields.get("seed"),
            start_index=fields.get("start_index", 0),
            allow_extrapolation=fields.get("allow_extrapolation", False),
            chunk_showers=fields.get("chunk_showers"),
        )
        request.check()
        return request

    def check(self) -> None:
        if self.model is None and self.particle is None and self.dataset is None:
            raise InvalidRequestError("model", "give a model name or a particle, or a dataset")
        if self.energies_mev is not None:
            if self.energy_mev is not None or self.count is not None:
                raise InvalidRequestError("energies_mev", "give energy_mev and count, or energies_mev, not both")
        elif self.energy_mev is None or self.count is None:
            raise InvalidRequestError("count" if self.count is None else "energy_mev", "give energy_mev and count")
        else:
            _check_int("count", self.count, 1)
            if not isinstance(self.energy_mev, int | float) or not math.isfinite(self.energy_mev):
                raise InvalidRequestError("energy_mev", f"must be a finite number of MeV, got {self.energy_mev!r}")
        _check_int("start_index", self.start_index, 0)
        if self.seed is not None:
            _check_int("seed", self.seed, 0, _UINT64_MAX)
        if self.chunk_showers is not None:
            _check_int("chunk_showers", self.chunk_showers, 1)

    @property
    def total(self) -> int:
        """How many showers the request asks for."""
        if self.energies_mev is not None:
            return int(self.energies_mev.size)
        assert self.count is not None
        return self.count

    @property
    def stop_index(self) -> int:
        return self.start_index + self.total

    def energies_at(self, index: int, n: int) -> NDArray[np.float32]:
        """The float32 incident energies of showers ``index .. index + n - 1`` (what the server conditions on)."""
        offset = index - self.start_index
        if self.energies_mev is not None:
            return self.energies_mev[offset : offset + n]
        assert self.energy_mev is not None
        return np.full(n, self.energy_mev, dtype=np.float32)

    def resumed_at(self, next_index: int, *, model: str, version: int, seed: int) -> GenerateRequest:
        """The rest of this request from ``next_index``, pinned to the model version and seed first served."""
        done = next_index - self.start_index
        if not 0 <= done <= self.total:
            raise ValueError(f"next_index {next_index} is outside showers {self.start_index}..{self.stop_index}")
        pinned = replace(
            self, model=model, particle=None, dataset=None, model_version=version, seed=seed, start_index=next_index
        )
        if self.energies_mev is not None:
            return replace(pinned, energies_mev=self.energies_mev[done:])
        return replace(pinned, count=self.total - done)


def _energies(values: object) -> NDArray[np.float32]:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidRequestError("energies_mev", "must be a flat sequence of numbers (MeV)") from None
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]  # the CaloChallenge (N, 1) layout
    if array.ndim != 1 or array.size == 0:
        raise InvalidRequestError("energies_mev", f"must be a non-empty flat sequence, got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _check_int(field: str, value: object, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidRequestError(field, f"must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"in {low}..{high}"
        raise InvalidRequestError(field, f"must be {bound}, got {value}")
