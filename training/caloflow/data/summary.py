"""A one-screen text summary of a shower file, computed chunk by chunk while the file is validated.

Per incident energy: the number of showers and the mean and spread (standard deviation) of E_tot/E_inc.
Energies are grouped by power of two, [2^k, 2^(k+1)) MeV, which gives one row per Dataset 1 energy and a
bounded table for files with continuous energies. Per layer: voxels, mean sparsity (threshold 0) and the
layer's share of all deposited energy. Then the file's provenance attributes, with a loud warning when
they say the showers are a stand-in rather than Geant4.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from caloflow.data.dataset_files import validate_dataset_file
from caloflow.data.datasets import Dataset
from caloflow.data.hdf5 import FloatArray, ShowerFileInfo

__all__ = ["EnergyRow", "ShowerFileSummary", "is_standin", "summarize_shower_file"]

STANDIN_WARNING = "!!! STAND-IN SHOWERS, NOT GEANT4: not the official data; do not quote as physics !!!"
_STANDIN_MARKERS = ("not geant4", "stand-in")


@dataclass(frozen=True)
class EnergyRow:
    """Showers whose incident energy lies in [low, high) MeV."""

    low_mev: float
    high_mev: float
    count: int
    ratio_mean: float  # E_tot / E_inc
    ratio_std: float

    @property
    def label(self) -> str:
        if self.low_mev == self.high_mev:
            return f"{self.low_mev:,.0f} MeV"
        return f"[{self.low_mev:,.4g}, {self.high_mev:,.4g}] MeV"


@dataclass(frozen=True)
class ShowerFileSummary:
    info: ShowerFileInfo
    dataset: Dataset
    energies: tuple[EnergyRow, ...]
    layer_sparsity: tuple[float, ...]  # mean over showers, per relevant layer
    layer_energy_share: tuple[float, ...]  # sum of E_layer over sum of E_tot, per relevant layer

    @property
    def standin(self) -> bool:
        return is_standin(self.info.attrs)

    def render(self) -> str:
        return "\n".join([*self._header(), *self._energy_table(), *self._layer_table(), *self._provenance()])

    def _header(self) -> list[str]:
        i, d = self.info, self.dataset
        shape = " x ".join(str(n) for n in i.shower_shape)
        lines = [
            f"{i.path}",
            f"  {i.n_showers} showers x {shape} voxels, {i.dtype}, compression {i.compression}, {i.layout} layout",
            f"  {d.name}: {d.title}, {d.particle} (pid {d.pid}), {d.geometry_kind} geometry, {d.n_layers} layers",
        ]
        return [STANDIN_WARNING, *lines] if self.standin else lines

    def _energy_table(self) -> list[str]:
        lines = [f"  {'incident energy':<26}{'showers':>9}{'E_tot/E_inc mean':>18}{'spread':>9}"]
        for row in self.energies:
            lines.append(f"  {row.label:<26}{row.count:>9}{row.ratio_mean:>18.4f}{row.ratio_std:>9.4f}")
        return lines

    def _layer_table(self) -> list[str]:
        lines = [f"  {'layer':<7}{'voxels':>7}{'sparsity':>10}{'energy share':>14}"]
        g = self.dataset.geometry
        rows = zip(g.layer_ids, g.layer_sizes, self.layer_sparsity, self.layer_energy_share, strict=True)
        for layer_id, size, sparsity, share in rows:
            lines.append(f"  {layer_id:<7}{size:>7}{sparsity:>10.3f}{share:>13.2%}")
        return lines

    def _provenance(self) -> list[str]:
        attrs = self.info.attrs
        lines = ["  provenance:" if attrs else "  provenance: (no file attributes)"]
        lines += [f"    {key}: {value}" for key, value in sorted(attrs.items())]
        return [*lines, STANDIN_WARNING] if self.standin else lines


def is_standin(attrs: Mapping[str, object]) -> bool:
    """Whether file attributes mark the showers as a stand-in (any text value saying "not Geant4")."""
    text = " ".join(str(v) for v in attrs.values()).lower()
    return any(marker in text for marker in _STANDIN_MARKERS)


def summarize_shower_file(
    path: str | os.PathLike[str],
    ds: Dataset,
    *,
    chunk_rows: int = 10_000,
    on_rows: Callable[[int], None] | None = None,
) -> ShowerFileSummary:
    """Validate the file as a ``ds`` file (ShowerFileError on any problem) and summarise it, in one pass."""
    acc = _Accumulator(ds)

    def on_chunk(energies: FloatArray, showers: FloatArray) -> None:
        acc.add(energies, showers)
        if on_rows is not None:
            on_rows(len(showers))

    info = validate_dataset_file(path, ds, chunk_rows=chunk_rows, on_chunk=on_chunk)
    return acc.finish(info)


@dataclass
class _EnergyBin:
    count: int = 0
    ratio_sum: float = 0.0
    ratio_sq_sum: float = 0.0
    low: float = np.inf
    high: float = -np.inf

    def row(self) -> EnergyRow:
        mean = self.ratio_sum / self.count
        spread = float(np.sqrt(max(self.ratio_sq_sum / self.count - mean**2, 0.0)))
        return EnergyRow(self.low, self.high, self.count, mean, spread)


@dataclass
class _Accumulator:
    dataset: Dataset
    bins: dict[int, _EnergyBin] = field(default_factory=dict)
    sparsity_sum: FloatArray | None = None
    layer_energy: FloatArray | None = None
    n: int = 0

    def add(self, energies: FloatArray, showers: FloatArray) -> None:
        g = self.dataset.geometry
        starts = list(g.layer_offsets[:-1])
        e_layer = np.add.reduceat(showers, starts, axis=1)
        hits = np.add.reduceat((showers > 0).astype(np.float64), starts, axis=1)
        e_inc = energies[:, 0].astype(np.float64)
        self._add_energies(e_inc, e_layer.sum(axis=1) / e_inc)
        sparsity = (1.0 - hits / np.asarray(g.layer_sizes)).sum(axis=0)
        layer_energy = e_layer.sum(axis=0)
        self.sparsity_sum = sparsity if self.sparsity_sum is None else self.sparsity_sum + sparsity
        self.layer_energy = layer_energy if self.layer_energy is None else self.layer_energy + layer_energy
        self.n += len(showers)

    def _add_energies(self, e_inc: FloatArray, ratio: FloatArray) -> None:
        keys = np.floor(np.log2(e_inc)).astype(np.int64)
        for key in np.unique(keys):
            sel = keys == key
            b = self.bins.setdefault(int(key), _EnergyBin())
            b.count += int(sel.sum())
            b.ratio_sum += float(ratio[sel].sum())
            b.ratio_sq_sum += float((ratio[sel] ** 2).sum())
            b.low, b.high = min(b.low, float(e_inc[sel].min())), max(b.high, float(e_inc[sel].max()))

    def finish(self, info: ShowerFileInfo) -> ShowerFileSummary:
        assert self.sparsity_sum is not None and self.layer_energy is not None
        total = float(self.layer_energy.sum())
        return ShowerFileSummary(
            info=info,
            dataset=self.dataset,
            energies=tuple(self.bins[k].row() for k in sorted(self.bins)),
            layer_sparsity=tuple(float(s) / self.n for s in self.sparsity_sum),
            layer_energy_share=tuple(float(e) / total if total > 0 else 0.0 for e in self.layer_energy),
        )
