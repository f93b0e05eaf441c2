"""E_tot / E_inc per incident energy: histograms, chi2/NDF, and mean and RMS ratios (Dataset 1 only).

Binning as in ``evaluate.py`` (``plot_Etot_Einc_discrete``): 20 bins over [0.4, 1.4], or [0.9, 1.1] for
photons at E_inc >= 4096 MeV (``i > 3`` of the 15 energies), density-normalised, with a separation power.

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

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from caloflow.evaluation.histograms import HistogramComparison, compare_histograms, linear_edges

__all__ = ["EnergyBin", "EnergyResponse", "chi2_two_histograms", "energy_response", "response_edges"]

Array = NDArray[np.float64]
PHOTON_NARROW_FROM_MEV = 4096.0


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

    @property
    def chi2_per_ndf(self) -> float:
        return self.chi2 / self.ndf if self.ndf > 0 else float("nan")


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


def response_edges(particle: str, energy_mev: float) -> Array:
    if particle == "photon" and energy_mev >= PHOTON_NARROW_FROM_MEV:
        return linear_edges(0.9, 1.1, 20)
    return linear_edges(0.4, 1.4, 20)


def energy_response(particle: str, reference: tuple[Array, Array], generated: tuple[Array, Array]) -> EnergyResponse:
    """Compare E_tot / E_inc per incident energy; each argument is (incident energies (N,), E_tot / E_inc (N,))."""
    energies = np.intersect1d(np.unique(reference[0]), np.unique(generated[0]))
    return EnergyResponse(tuple(_energy_bin(particle, float(e), reference, generated) for e in energies))


def _energy_bin(
    particle: str, energy: float, reference: tuple[Array, Array], generated: tuple[Array, Array]
) -> EnergyBin:
    ref = reference[1][reference[0] == energy]
    gen = generated[1][generated[0] == energy]
    edges = response_edges(particle, energy)
    chi2, ndf = chi2_two_histograms(_counts_with_flow(ref, edges), _counts_with_flow(gen, edges))
    return EnergyBin(
        energy_mev=energy,
        n_reference=len(ref),
        n_generated=len(gen),
        histogram=compare_histograms(f"e_ratio_at_{energy:g}", ref, gen, edges),
        chi2=chi2,
        ndf=ndf,
        mean_ratio=_ratio(float(np.mean(gen)), float(np.mean(ref))),
        rms_ratio=_ratio(float(np.std(gen)), float(np.std(ref))),
    )


def _counts_with_flow(values: Array, edges: Array) -> Array:
    """Counts in the bins of ``edges`` with an underflow bin first and an overflow bin last."""
    return np.histogram(values, bins=np.concatenate([[-np.inf], edges, [np.inf]]))[0].astype(np.float64)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 else float("nan")
