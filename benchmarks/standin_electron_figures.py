"""Physics figures of the DS2/DS3 electron stand-in (stand-in, not Geant4), at 1, 10, 100 and 1000 GeV.

Usage: ``python benchmarks/standin_electron_figures.py [--seed S]``. Prints, per energy (DS2 binning): the layer
of the mean profile's maximum, E_tot/E_inc mean and relative spread, the share within 1 R_M and beyond 2 R_M
near the maximum, outer-ring and overall sparsity, and the persistence figure (mean correlation of layer n's
deviation from the mean pattern with layer n-1's, same shower vs a shuffled one); then DS2 vs DS3 sparsity.
"""

from __future__ import annotations

import argparse

import numpy as np

from caloflow.data.datasets import dataset
from caloflow.data.standin import iter_standin_showers

SIZES = {1e3: 1000, 1e4: 1000, 1e5: 1000, 1e6: 400}


def showers(name: str, energy_mev: float, n: int, seed: int) -> np.ndarray:
    ds = dataset(name)
    layer = ds.cylindrical_geometry.layers[0]
    x = np.concatenate(list(iter_standin_showers(name, np.full(n, energy_mev), seed)))
    return x.reshape(n, ds.n_layers, layer.n_alpha, layer.n_r)


def residual_correlation(a: np.ndarray, b: np.ndarray) -> float:
    num = (a * b).sum(axis=-1)
    den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    return float((num[den > 0] / den[den > 0]).mean())


def report(energy_mev: float, x: np.ndarray) -> None:
    layers = x.sum(axis=(2, 3))
    ratio = layers.sum(axis=1) / energy_mev
    peak = int(np.argmax(layers.mean(axis=0)))
    rings = x[:, max(peak - 2, 0) : peak + 3].sum(axis=(0, 1, 2))
    share = np.cumsum(rings) / rings.sum()
    images = (x / np.maximum(layers, 1e-30)[..., None, None]).reshape(*layers.shape, -1)
    res = images - images.mean(axis=0)
    now, before = res[:, max(peak - 3, 1) : peak + 5], res[:, max(peak - 3, 1) - 1 : peak + 4]
    shuffled = before[np.random.default_rng(0).permutation(len(x))]
    print(
        f"{energy_mev / 1e3:6g} GeV: max layer {peak:2d}, "
        f"E_tot/E_inc {ratio.mean():.3f} +- {ratio.std() / ratio.mean():.3f}, "
        f"<1 R_M {share[1]:.3f}, >2 R_M {1 - share[3]:.4f}, outer-ring sparsity {(x[..., -1] == 0).mean():.3f}, "
        f"sparsity {(x == 0).mean():.3f}, persistence {residual_correlation(now, before):.3f} "
        f"(shuffled {residual_correlation(now, shuffled):.3f}), max layer energy {layers.max():.0f} MeV"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    for energy, n in SIZES.items():
        report(energy, showers("ds2-electron", energy, n, args.seed))
    for energy in (1e3, 1e4, 1e5):
        ds2, ds3 = (showers(name, energy, 200, args.seed) for name in ("ds2-electron", "ds3-electron"))
        print(f"sparsity at {energy / 1e3:g} GeV: DS2 {(ds2 == 0).mean():.3f}, DS3 {(ds3 == 0).mean():.3f}")


if __name__ == "__main__":
    main()
