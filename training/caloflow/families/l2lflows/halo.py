"""What a lateral crop loses: the share of each shower outside it, and the ILD observables that change when they
are computed on the crop instead of the whole grid (issue 15 item 3: what the full-grid presets buy).

``python -m caloflow.families.l2lflows.halo --data data/ild_2.h5`` reads an ILD-layout file chunk by chunk, cuts
every cell at the dataset's threshold (0.1 MeV), and prints

* per incident-energy range: the median and the 16-84 % spread of the fraction of visible energy and of hits
  (cells >= threshold) outside the crop, per shower;
* per observable of :func:`caloflow.evaluation.ild_observables.grid_observables` (the per-shower observables of
  ``caloflow evaluate --dataset ild-photon``): its mean on the whole grid and on the crop (zeros outside), and
  the shift between the two in units of the whole grid's standard deviation - the W1/std a perfect crop model
  would show against whole-grid data, i.e. what the crop model cannot reproduce.

The crop is the training's (:func:`caloflow.families.l2lflows.crop.centred_crop` on the axis of the file's first
chunk) unless ``--crop x0:x1,z0:z1`` is given. Pure numpy; about 10 s per 10 000 showers on one core.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import cast

import numpy as np
from numpy.typing import NDArray

from caloflow.data.datasets import Dataset, dataset
from caloflow.data.grid_geometry import GridGeometry
from caloflow.data.hdf5 import iter_showers
from caloflow.evaluation.ild_observables import GridObservables, grid_observables
from caloflow.evaluation.region import CropRegion, parse_crop
from caloflow.families.l2lflows.crop import LateralCrop, axis_cells, centred_crop
from caloflow.families.l2lflows.data import grid_geometry

__all__ = ["HaloReport", "halo_report", "main"]

Array = NDArray[np.float64]
ENERGY_EDGES_GEV = (10.0, 40.0, 70.0, 100.0)
"""Incident-energy ranges of the per-range figures."""
MEV_PER_GEV = 1000.0


@dataclass(frozen=True)
class HaloReport:
    """Per shower: incident energy (MeV) and the fractions of visible energy and hits outside the crop; the
    observables on the whole grid and on the crop."""

    crop: LateralCrop
    incident_mev: Array
    energy_outside: Array
    hits_outside: Array
    full: GridObservables
    cropped: GridObservables

    def fractions_by_energy(self) -> list[dict[str, object]]:
        """Median and 16/84 % quantiles of both fractions per incident-energy range."""
        rows: list[dict[str, object]] = []
        gev = self.incident_mev / MEV_PER_GEV
        for low, high in itertools.pairwise(ENERGY_EDGES_GEV):
            chosen = (gev >= low) & (gev <= high)
            row: dict[str, object] = {"range_gev": [low, high], "showers": int(chosen.sum())}
            for name, values in (("energy_outside", self.energy_outside), ("hits_outside", self.hits_outside)):
                q16, q50, q84 = np.quantile(values[chosen], [0.16, 0.5, 0.84]) if chosen.any() else (np.nan,) * 3
                row[name] = {"median": float(q50), "q16": float(q16), "q84": float(q84)}
            rows.append(row)
        return rows

    def observable_shifts(self) -> list[dict[str, object]]:
        """Per observable (per-layer and per-ring ones averaged over their columns): means and the shift/std."""
        rows: list[dict[str, object]] = []
        for field in fields(GridObservables):
            if field.name == "e_inc":
                continue
            full, crop = getattr(self.full, field.name), getattr(self.cropped, field.name)
            spread = full.std(axis=0)
            shift = np.abs(full.mean(axis=0) - crop.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
            rows.append(
                {
                    "observable": field.name,
                    "mean_full": float(full.mean()),
                    "mean_crop": float(crop.mean()),
                    "shift_over_std": float(np.mean(shift)),
                }
            )
        return rows


def _chunks(path: str | Path, ds: Dataset, max_showers: int | None) -> Iterator[tuple[Array, Array]]:
    seen = 0
    for energies, showers in iter_showers(path, grid_geometry(ds), layout=ds.layout, chunk_rows=1000):
        take = len(showers) if max_showers is None else min(len(showers), max_showers - seen)
        if take <= 0:
            return
        cut = np.where(showers[:take] >= ds.threshold_mev, showers[:take], 0.0).astype(np.float64)
        yield energies[:take, 0].astype(np.float64), cut
        seen += take


def halo_report(
    path: str | Path, ds: Dataset, crop_cells: int = 10, crop: LateralCrop | None = None, max_showers: int | None = None
) -> HaloReport:
    """Read ``path`` (a file of ``ds``) and measure what the crop leaves out (module docstring)."""
    geometry = grid_geometry(ds)
    incident, energy_out, hits_out, full, cropped = [], [], [], [], []
    for energies, showers in _chunks(path, ds, max_showers):
        if crop is None:
            crop = centred_crop(geometry, crop_cells, axis_cells(showers, geometry))
        in_crop = _region(crop, geometry).mask(showers)
        total, hits = showers.sum(axis=1), (showers > 0).sum(axis=1)
        energy_out.append(1.0 - in_crop.sum(axis=1) / np.maximum(total, 1e-12))
        hits_out.append(1.0 - (in_crop > 0).sum(axis=1) / np.maximum(hits, 1))
        incident.append(energies)
        full.append(grid_observables(showers, geometry, energies))
        cropped.append(grid_observables(in_crop, geometry, energies))
    if crop is None:
        raise ValueError(f"{path}: no showers")
    return HaloReport(
        crop,
        np.concatenate(incident),
        np.concatenate(energy_out),
        np.concatenate(hits_out),
        GridObservables.concatenate(full),
        GridObservables.concatenate(cropped),
    )


def _region(crop: LateralCrop, geometry: GridGeometry) -> CropRegion:
    """The evaluator's region of an L2LFlows crop (its ``mask`` zeroes every cell outside it)."""
    return CropRegion(geometry, (crop.x_start, crop.x_start + crop.size), (crop.z_start, crop.z_start + crop.size))


def _crop_arg(text: str, ds: Dataset) -> LateralCrop:
    """``--crop X0:X1,Z0:Z1`` read and bounds-checked by the evaluator's ``parse_crop``; L2LFlows crops are square."""
    geometry = grid_geometry(ds)
    region = parse_crop(text, geometry)
    (x0, x1), (z0, z1) = region.x, region.z
    if x1 - x0 != z1 - z0:
        raise argparse.ArgumentTypeError(f"--crop {text}: L2LFlows crops are square")
    return LateralCrop(geometry.n_layers, geometry.n_x, geometry.n_z, x0, z0, x1 - x0)


def _print(report: HaloReport) -> None:
    c = report.crop
    print(
        f"crop x {c.x_start}:{c.x_start + c.size}, z {c.z_start}:{c.z_start + c.size} of {c.full_x} x {c.full_z}; "
        f"{len(report.incident_mev)} showers (cells cut at the threshold)"
    )
    print("E_inc GeV   showers  energy outside: median [16 %, 84 %]   hits outside: median [16 %, 84 %]")
    for row in report.fractions_by_energy():
        e, h = row["energy_outside"], row["hits_outside"]
        assert isinstance(e, dict) and isinstance(h, dict)
        low, high = cast(list[float], row["range_gev"])
        print(
            f"{low:>4.0f}-{high:<4.0f} {row['showers']:>9}   {e['median']:.4f} [{e['q16']:.4f}, {e['q84']:.4f}]"
            f"          {h['median']:.3f} [{h['q16']:.3f}, {h['q84']:.3f}]"
        )
    print("observable      mean (whole grid)   mean (crop)   |shift| / std (whole grid)")
    for row in report.observable_shifts():
        print(
            f"{row['observable']:<14} {row['mean_full']:>17.4g} {row['mean_crop']:>13.4g} "
            f"{row['shift_over_std']:>14.3f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="an ILD-layout HDF5 file (stand-in or official)")
    parser.add_argument("--dataset", default="ild-photon")
    parser.add_argument("--crop-cells", type=int, default=10, help="side of the crop centred on the axis")
    parser.add_argument("--crop", default=None, help="x0:x1,z0:z1 instead of the centred crop")
    parser.add_argument("--max-showers", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    ds = dataset(args.dataset)
    crop = _crop_arg(args.crop, ds) if args.crop else None
    report = halo_report(args.data, ds, args.crop_cells, crop, args.max_showers)
    _print(report)
    if args.json:
        figures = {"fractions": report.fractions_by_energy(), "observables": report.observable_shifts()}
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
