"""Cylindrical calorimeter geometry in the CaloChallenge binning format (Datasets 1, 2 and 3).

A geometry is an ordered list of the *relevant* layers of a CaloChallenge binning file (those with more
than one radial edge). Voxel order inside a layer is alpha bin outer, radial bin inner; layers follow in
id order, so the flat index of (layer l, alpha a, radius r) is ``offset(l) + a * n_r(l) + r``.

Positions follow the CaloChallenge ``HighLevelFeatures`` convention: alpha bin centres are the midpoints
of ``linspace(-pi, pi, n_alpha + 1)`` (0 for an un-binned layer), radial centres are bin midpoints in mm,
and "eta"/"phi" are the Cartesian positions ``r cos(alpha)`` / ``r sin(alpha)`` in mm.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


class _Layered(Protocol):
    @property
    def layer_sizes(self) -> tuple[int, ...]: ...


class LayerIndex:
    """Flat-vector bookkeeping shared by every geometry: subclasses give ``layer_sizes`` (voxels per layer)."""

    @property
    def n_voxels(self: _Layered) -> int:
        return sum(self.layer_sizes)

    @cached_property
    def layer_offsets(self: _Layered) -> tuple[int, ...]:
        """Start index of each layer in the flat voxel vector, plus the total at the end."""
        return tuple(int(v) for v in np.concatenate([[0], np.cumsum(self.layer_sizes)]))

    @property
    def layer_slices(self: _Layered) -> tuple[slice, ...]:
        ends = itertools.accumulate(self.layer_sizes)
        return tuple(slice(end - size, end) for end, size in zip(ends, self.layer_sizes, strict=True))

    @cached_property
    def voxel_layer(self: _Layered) -> NDArray[np.int64]:
        """Layer index of every voxel."""
        return np.repeat(np.arange(len(self.layer_sizes)), self.layer_sizes)


@dataclass(frozen=True)
class Layer:
    """One calorimeter layer: its id in the binning file, radial edges (mm) and number of alpha bins."""

    layer_id: int
    r_edges_mm: tuple[float, ...]
    n_alpha: int

    @property
    def n_r(self) -> int:
        return len(self.r_edges_mm) - 1

    @property
    def n_voxels(self) -> int:
        return self.n_r * self.n_alpha

    @property
    def r_centres_mm(self) -> NDArray[np.float64]:
        edges = np.asarray(self.r_edges_mm, dtype=np.float64)
        return 0.5 * (edges[1:] + edges[:-1])

    @property
    def alpha_centres(self) -> NDArray[np.float64]:
        if self.n_alpha == 1:
            return np.zeros(1)
        edges = np.linspace(-np.pi, np.pi, self.n_alpha + 1)
        return 0.5 * (edges[1:] + edges[:-1])


@dataclass(frozen=True)
class Geometry(LayerIndex):
    """The relevant layers of one particle's binning, in voxel order (built-in ones: ``caloflow.data.datasets``)."""

    name: str
    pid: int
    layers: tuple[Layer, ...]

    kind = "cylindrical"

    @property
    def shower_shape(self) -> tuple[int]:
        """One shower's shape in a CaloChallenge file: a flat vector of voxels."""
        return (self.n_voxels,)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @cached_property
    def layer_sizes(self) -> tuple[int, ...]:
        return tuple(layer.n_voxels for layer in self.layers)

    @property
    def layer_ids(self) -> tuple[int, ...]:
        return tuple(layer.layer_id for layer in self.layers)

    @property
    def alpha_binned_layers(self) -> tuple[int, ...]:
        """Indices (into ``layers``) of the layers binned in alpha."""
        return tuple(i for i, layer in enumerate(self.layers) if layer.n_alpha > 1)

    @cached_property
    def voxel_r_mm(self) -> NDArray[np.float64]:
        """Radial bin centre of every voxel (mm)."""
        return np.concatenate([np.tile(layer.r_centres_mm, layer.n_alpha) for layer in self.layers])

    @cached_property
    def voxel_alpha(self) -> NDArray[np.float64]:
        """Alpha bin centre of every voxel (rad); 0 in layers not binned in alpha."""
        return np.concatenate([np.repeat(layer.alpha_centres, layer.n_r) for layer in self.layers])

    @property
    def voxel_eta_mm(self) -> NDArray[np.float64]:
        return self.voxel_r_mm * np.cos(self.voxel_alpha)

    @property
    def voxel_phi_mm(self) -> NDArray[np.float64]:
        return self.voxel_r_mm * np.sin(self.voxel_alpha)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly description (used in model manifests)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "pid": self.pid,
            "n_voxels": self.n_voxels,
            "layers": [
                {"id": layer.layer_id, "r_edges_mm": list(layer.r_edges_mm), "n_alpha": layer.n_alpha}
                for layer in self.layers
            ],
            "layer_offsets": list(self.layer_offsets),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Geometry:
        layers_raw = data["layers"]
        assert isinstance(layers_raw, list)
        layers = tuple(
            Layer(int(d["id"]), tuple(float(r) for r in d["r_edges_mm"]), int(d["n_alpha"])) for d in layers_raw
        )
        pid = data["pid"]
        assert isinstance(pid, int)
        return cls(name=str(data["name"]), pid=pid, layers=layers)
