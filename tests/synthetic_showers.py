"""A small SYNTHETIC shower generator for evaluation tests and measurements: right shapes, some structure.

NOT a physics model, NOT the stand-in generator (that is ``caloflow.data.standin``) and NOT Geant4: it exists so
that the evaluation of Datasets 2, 3 and the ILD ECAL can be tested before their stand-in generators land.
Per shower: a gamma-shaped longitudinal profile whose shape and depth fluctuate, an exponential lateral
profile around a (for the grid: slightly displaced) axis with a fluctuating radius, a sampling fraction with
a 5 % fluctuation, and gamma-distributed voxel fluctuations, so that layer energies, centres, widths and
sparsity vary from shower to shower. ``broken_layers`` scales those layers' voxels by ``broken_factor``.

As a script it writes the two 20 000-shower Dataset 3 files of the memory measurement:
``python tests/synthetic_showers.py DIR [--dataset ds3-electron --count 20000]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from caloflow.data.datasets import Dataset, dataset
from caloflow.data.grid_geometry import GridGeometry
from caloflow.data.hdf5 import ShowerWriter

Array = NDArray[np.float64]
NOTICE = "synthetic test showers (tests/synthetic_showers.py), not a physics model, not Geant4"
_CHUNK = 500


def _layer_plane(ds: Dataset) -> tuple[Array, Array]:
    """Transverse coordinates (mm) of one layer's voxels; every layer of DS2, DS3 and ILD has the same."""
    g = ds.geometry
    if isinstance(g, GridGeometry):
        x = np.broadcast_to(g.x_centres_mm[:, None], (g.n_x, g.n_z)).ravel()
        z = np.broadcast_to(g.z_centres_mm[None, :], (g.n_x, g.n_z)).ravel()
        return x, z
    cyl = ds.cylindrical_geometry
    if len(set(cyl.layer_sizes)) != 1:
        raise ValueError(f"{ds.name}: the synthetic generator needs identical layers")
    first = cyl.layer_slices[0]
    return cyl.voxel_eta_mm[first], cyl.voxel_phi_mm[first]


def synthetic_showers(
    ds: Dataset,
    energies_mev: Array,
    rng: np.random.Generator,
    *,
    broken_layers: Sequence[int] = (),
    broken_factor: float = 1.3,
) -> Array:
    """(n, V) showers in MeV for incident energies (n,) MeV; see the module notes."""
    vx, vz = _layer_plane(ds)
    n, n_layers = len(energies_mev), ds.n_layers
    grid = isinstance(ds.geometry, GridGeometry)
    depth = np.arange(n_layers, dtype=np.float64) + 0.5
    shape = rng.normal(3.0, 0.3, size=(n, 1)) + 0.3 * np.log10(energies_mev[:, None] / ds.energies.min_mev)
    scale = rng.normal(n_layers / 12.0, n_layers / 80.0, size=(n, 1)).clip(min=0.5)
    longitudinal = depth ** (shape - 1.0) * np.exp(-depth / scale)
    longitudinal /= longitudinal.sum(axis=1, keepdims=True)
    offset = rng.normal(0.0, 3.0 if grid else 0.5, size=(n, 2))
    radius = rng.lognormal(np.log(8.0 if grid else 5.0), 0.15, size=(n, 1))
    lateral = np.exp(-np.hypot(vx[None, :] - offset[:, :1], vz[None, :] - offset[:, 1:]) / radius)
    lateral /= lateral.sum(axis=1, keepdims=True)
    fraction = (0.015 if grid else 1.0) * rng.normal(1.0, 0.05, size=(n, 1))
    longitudinal *= energies_mev[:, None] * fraction
    if broken_layers:
        longitudinal[:, list(broken_layers)] *= broken_factor
    showers = longitudinal[:, :, None] * lateral[:, None, :]
    showers *= rng.gamma(2.0, 0.5, size=showers.shape)
    return showers.reshape(n, -1)


def write_synthetic_file(
    path: Path,
    ds: Dataset,
    count: int,
    seed: int,
    *,
    broken_layers: Sequence[int] = (),
    dtype: type = np.float64,
) -> Path:
    """``count`` synthetic showers of ``ds`` in its layout, written chunk by chunk."""
    rng = np.random.default_rng(seed)
    energies = ds.file_energies(count / ds.showers_per_file, rng)[:count]
    attrs = {"description": NOTICE, "dataset": ds.name}
    with ShowerWriter(
        path, ds.n_voxels, layout=ds.layout, shower_shape=ds.shower_shape, attrs=attrs, dtype=dtype
    ) as writer:
        for start in range(0, len(energies), _CHUNK):
            e = energies[start : start + _CHUNK]
            writer.append(e, synthetic_showers(ds, e, rng, broken_layers=broken_layers))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="write two synthetic files (generated, reference) of a dataset")
    parser.add_argument("out", type=Path)
    parser.add_argument("--dataset", default="ds3-electron")
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    ds = dataset(args.dataset)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, seed in (("generated", 1), ("reference", 2)):
        path = write_synthetic_file(args.out / f"{ds.name}_{name}.h5", ds, args.count, seed, dtype=np.float32)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
