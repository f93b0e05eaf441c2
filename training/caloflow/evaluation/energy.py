"""E_tot / E_inc per incident energy: histograms, chi2/NDF, mean and RMS ratios, linearity and resolution.

Groups of showers: a discrete spectrum (Dataset 1) has one group per incident energy; a continuous one one
group per incident-energy range (:func:`energy_ranges`): the decades [1e3, 1e4), [1e4, 1e5), [1e5, 1e6] MeV
of ``evaluate.py``'s Datasets 2/3 plots for a log-uniform spectrum, nine equal ranges (10 GeV wide for the
ILD 10-100 GeV photons) for a uniform one.

Binning as in ``evaluate.py`` (``plot_Etot_Einc_discrete``): 20 bins over [0.4, 1.4], or [0.9, 1.1] for
Dataset 1 photons at E_inc >= 4096 MeV (``i > 3`` of the 15 energies), density-normalised, with a separation
power. For a continuous spectrum (ILD visible energy is a few per cent of E_inc) the 20 bins span the
reference group's 0.5-99.5 percentile range widened by 10 % on each side.

Linearity and resolution (the L2LFlows note's ``fit90``): per group, mu90 and sigma90 are the mean and the
standard deviation of the smallest window holding 90 % of the E_tot / E_inc values; resolution is
sigma90 / mu90. We take the ratio rather than E_tot itself so that the width of a continuous range does not
enter the resolution.

``evaluate.py`` prints a chi2 but does not define one we can reproduce, so ours is written down here.
It is the chi2 test of two *unweighted* histograms (Gagunashvili; ROOT ``TH1::Chi2Test("UU")``) on the
counts n_i (reference, N in all) and m_i (generated, M in all) of the 20 bins **plus one underflow and
one overflow bin**, so a generator that puts its showers outside the range is not rewarded:

    chi2 = sum_i (M n_i - N m_i)^2 / (N M (n_i + m_i)),  over bins with n_i + m_i > 0,
    NDF  = (number of such bins) - 1.

It follows a chi2 distribution with NDF degrees of freedom when both samples come from one distribution,
so chi2/NDF is about 1 for a perfect generator. The overall figure is sum chi2 / sum NDF over energies.
``mean_ratio`` and ``rms_ratio`` are generated / reference of the mean and of the standard deviation.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from caloflow.data.datasets import Dataset, dataset
from caloflow.evaluation.histograms import HistogramComparison, compare_histograms, linear_edges

__all__ = [
    "EnergyBin",
    "EnergyResponse",
    "chi2_two_histograms",
    "energy_ranges",
    "energy_response",
    "fit90",
    "response_edges",
]

Array = NDArray[np.float64]
PHOTON_NARROW_FROM_MEV = 4096.0
UNIFORM_RANGES = 9
WINDOW_FRACTION = 0.9


@dataclass(frozen=True)
class EnergyBin:
    """The E_tot / E_inc comparison at one incident energy."""

    energy_mev: float
    n_reference: int
    n_generated: int
    histogram: HistogramComparison
    chi2: float
    ndf: int
    mean_ratio: float
    rms_ratio: float
    energy_low_mev: float  # the group's range (both equal to energy_mev for a discrete spectrum)
    energy_high_mev: float
    mu90: tuple[float, float]  # (reference, generated) mean of the 90 % window of E_tot / E_inc
    sigma90: tuple[float, float]  # (reference, generated) standard deviation of that window

    @property
    def chi2_per_ndf(self) -> float:
        return self.chi2 / self.ndf if self.ndf > 0 else float("nan")

    @property
    def resolution(self) -> tuple[float, float]:
        """sigma90 / mu90 of (reference, generated)."""
        return _ratio(self.sigma90[0], self.mu90[0]), _ratio(self.sigma90[1], self.mu90[1])


@dataclass(frozen=True)
class EnergyResponse:
    """All incident energies present in both files, and the summed chi2/NDF."""

    bins: tuple[EnergyBin, ...]

    @property
    def chi2(self) -> float:
        return float(sum(b.chi2 for b in self.bins))

    @property
    def ndf(self) -> int:
        return sum(b.ndf for b in self.bins)

    @property
    def chi2_per_ndf(self) -> float:
        return self.chi2 / self.ndf if self.ndf > 0 else float("nan")


def chi2_two_histograms(reference_counts: Array, generated_counts: Array) -> tuple[float, int]:
    """(chi2, NDF) of the unweighted two-histogram test over the bins where either count is non-zero."""
    n = np.asarray(reference_counts, dtype=np.float64)
    m = np.asarray(generated_counts, dtype=np.float64)
    if n.shape != m.shape:
        raise ValueError(f"histograms have {n.shape} and {m.shape} bins")
    big_n, big_m = n.sum(), m.sum()
    if big_n == 0 or big_m == 0:
        return float("nan"), 0
    used = (n + m) > 0
    chi2 = np.sum((big_m * n[used] - big_n * m[used]) ** 2 / (big_n * big_m * (n[used] + m[used])))
    return float(chi2), int(used.sum()) - 1


def fit90(values: Array) -> tuple[float, float]:
    """(mean, std) of the smallest window of sorted ``values`` that holds ceil(90 %) of them; NaN if empty."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if len(x) == 0:
        return float("nan"), float("nan")
    k = max(1, math.ceil(WINDOW_FRACTION * len(x)))
    start = int(np.argmin(x[k - 1 :] - x[: len(x) - k + 1]))
    window = x[start : start + k]
    return float(window.mean()), float(window.std())


def energy_ranges(ds: Dataset) -> list[tuple[float, float]]:
    """The incident-energy ranges (MeV) of a continuous spectrum; the last one includes its upper end."""
    spec = ds.energies
    if spec.kind == "log-uniform":
        low, high = math.floor(math.log10(spec.min_mev)), math.ceil(math.log10(spec.max_mev))
        return [(10.0**k, 10.0 ** (k + 1)) for k in range(low, high)]
    edges = np.linspace(spec.min_mev, spec.max_mev, UNIFORM_RANGES + 1)
    return [(float(a), float(b)) for a, b in itertools.pairwise(edges)]


def response_edges(ds: Dataset, energy_mev: float, reference_ratios: Array) -> Array:
    if ds.energies.kind != "discrete":
        low, high = np.percentile(reference_ratios, [0.5, 99.5]) if len(reference_ratios) else (0.0, 1.0)
        margin = 0.1 * max(float(high - low), 1e-12)
        return linear_edges(float(low) - margin, float(high) + margin, 20)
    if ds.is_ds1 and ds.particle == "photon" and energy_mev >= PHOTON_NARROW_FROM_MEV:
        return linear_edges(0.9, 1.1, 20)
    return linear_edges(0.4, 1.4, 20)


def energy_response(
    ds: Dataset | str, reference: tuple[Array, Array], generated: tuple[Array, Array]
) -> EnergyResponse:
    """Compare E_tot / E_inc per group; each argument is (incident energies (N,), E_tot / E_inc (N,))."""
    ds = dataset(ds) if isinstance(ds, str) else ds
    if ds.energies.kind == "discrete":
        energies = np.intersect1d(np.unique(reference[0]), np.unique(generated[0]))
        groups = [(float(e), float(e)) for e in energies]
    else:
        groups = energy_ranges(ds)
    bins = (_energy_bin(ds, group, i == len(groups) - 1, reference, generated) for i, group in enumerate(groups))
    return EnergyResponse(tuple(b for b in bins if b is not None))


def _in_group(energies: Array, group: tuple[float, float], last: bool) -> NDArray[np.bool_]:
    low, high = group
    if low == high:
        return np.asarray(energies == low)
    return np.asarray((energies >= low) & ((energies <= high) if last else (energies < high)))


def _energy_bin(
    ds: Dataset, group: tuple[float, float], last: bool, reference: tuple[Array, Array], generated: tuple[Array, Array]
) -> EnergyBin | None:
    ref = reference[1][_in_group(reference[0], group, last)]
    gen = generated[1][_in_group(generated[0], group, last)]
    if len(ref) == 0 or len(gen) == 0:
        return None
    energy = _centre(ds, group)
    edges = response_edges(ds, energy, ref)
    chi2, ndf = chi2_two_histograms(_counts_with_flow(ref, edges), _counts_with_flow(gen, edges))
    (mu_ref, sigma_ref), (mu_gen, sigma_gen) = fit90(ref), fit90(gen)
    return EnergyBin(
        energy_mev=energy,
        n_reference=len(ref),
        n_generated=len(gen),
        histogram=compare_histograms(f"e_ratio_at_{energy:g}", ref, gen, edges),
        chi2=chi2,
        ndf=ndf,
        mean_ratio=_ratio(float(np.mean(gen)), float(np.mean(ref))),
        rms_ratio=_ratio(float(np.std(gen)), float(np.std(ref))),
        energy_low_mev=group[0],
        energy_high_mev=group[1],
        mu90=(mu_ref, mu_gen),
        sigma90=(sigma_ref, sigma_gen),
    )


def _centre(ds: Dataset, group: tuple[float, float]) -> float:
    """The energy a group is plotted at: its value, the geometric centre of a log-uniform range, or the middle."""
    if ds.energies.kind == "log-uniform":
        return math.sqrt(group[0] * group[1])
    return 0.5 * (group[0] + group[1])


def _counts_with_flow(values: Array, edges: Array) -> Array:
    """Counts in the bins of ``edges`` with an underflow bin first and an overflow bin last."""
    return np.histogram(values, bins=np.concatenate([[-np.inf], edges, [np.inf]]))[0].astype(np.float64)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 else float("nan")
