"""Stand-in generator speed: showers per second for 100k showers of each particle (Dataset 1 energy mix).

Usage: ``python benchmarks/bench_standin.py [--showers N] [--particle photon|pion] [--seed S]``.
The spec asks for 100 000 showers of either particle in under a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time

from caloflow.data.standin import iter_standin_showers
from caloflow.data.standin.files import standin_energies


def bench(particle: str, n_showers: int, seed: int) -> float:
    """Generate ``n_showers`` showers (first rows of a shuffled full-scale file); returns seconds."""
    energies = standin_energies(particle, seed, 1.0)[:n_showers]
    start = time.perf_counter()
    rows = sum(len(chunk) for chunk in iter_standin_showers(particle, energies, seed))
    elapsed = time.perf_counter() - start
    print(f"{particle:6s}: {rows} showers in {elapsed:6.1f} s = {rows / elapsed:8.0f} showers/s")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--showers", type=int, default=100_000)
    parser.add_argument("--particle", choices=("photon", "pion"), action="append")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for particle in args.particle or ["photon", "pion"]:
        bench(particle, args.showers, args.seed)


if __name__ == "__main__":
    main()
