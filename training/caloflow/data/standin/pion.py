"""Stand-in charged-pion showers (hadronic), one block of showers at a time.

Depths in interaction lengths (lambda) from the front of the dead material (:mod:`.detector`).

1. **First hard interaction** at ``t_int ~ Exp(L(E))``, ``L(E) = 1.25 lambda * (1 + 1.5 (E/GeV)^-0.7)``:
   1.25 lambda is the pion's inelastic length at high energy; below a few GeV most interactions are soft
   (quasi-elastic, or slow absorption), which the stand-in folds into the MIP track, hence the longer
   length (6.1 lambda at 256 MeV, 3.1 at 1 GeV, 1.4 at 65 GeV).
2. **MIP track** before it: per read-out layer crossed, a mean visible energy for a full
   traversal of 3 (presampler), 25, 90, 12 (EM layers 1-3), 300, 800, 350 MeV (Tile A, BC, D), scaled
   by the fraction crossed, with Landau fluctuations (Moyal, width 0.05, normalised to mean 1), in the
   central voxels (core 1.5 mm, tail 6 mm, core share 0.85, 1 + Poisson(2) spots). The track consumes
   ``visible / 0.85`` of the pion's energy in read-out layers (the visible share of a MIP's ionisation
   loss), 25 MeV in the front dead material and 10 MeV in the cryostat; a pion whose energy runs out
   before ``t_int`` stops there (MIP-like: E_tot/E_inc ~ 0.75 at 256 MeV to 1 GeV), and half of the
   stopped pions (pi-) are captured, adding ``Exp(20 MeV)`` in the layer where they stop (core 20 mm,
   tail 60 mm; now and then E_tot > E_inc). Pions interacting behind Tile D punch through.
3. **Shower** of the remaining energy ``E_int``: an electromagnetic fraction ``f_em ~ Beta`` with mean
   ``1 - (E_int / 1 GeV)^(0.8 - 1)`` (Groom; clipped to [0.02, 0.95]) and concentration 8 (sd ~0.17 at
   mean 0.5); the hadronic part is seen with response ``h = h_bar(E_int) * LogNormal(0, 0.10)``,
   ``h_bar = 0.70 - 0.30 (E_int/GeV)^-0.5`` (>= 0.2): non-compensating, h/e ~ 0.6-0.7 above 10 GeV,
   lower for the nuclear-binding-dominated showers of the lowest energies (0.4 at 1 GeV).
   * EM part: a GFlash profile (:mod:`.gflash`, at E_em / 3, the pi0 photons' scale) in X0 from
     ``t_int`` plus an ``Exp(9/7 X0)`` conversion; narrow: core ``10 + 8 d`` mm, tail ``40 + 25 d`` mm,
     core share 0.65, centres displaced by ``N(0, 8 + 12 d mm)`` (d: lambda from ``t_int`` to the
     layer's middle); spots ``Poisson(30 (E_layer/GeV)^0.6)``, Gamma(2) weights.
   * Hadronic part: a Gamma profile in lambda from ``t_int``, shape ``LogNormal(ln 1.8, 0.25)``
     (>= 1.3), maximum at ``max(0.2 ln(E_int/GeV) + 0.9, 0.4) * LogNormal(0, 0.3)`` lambda; wide: core
     ``40 + 15 d`` mm, tail ``min(150 + 30 d, 300)`` mm, core share 0.55; spots
     ``Poisson(25 (E_layer/GeV)^0.6)`` with exponential weights (granular).
   * Per-layer sampling fluctuations: Gamma smearing of 15%/sqrt(E/GeV) (EM part) and
     50%/sqrt(E/GeV) (hadronic part, capped at 50% relative width): long upper tails; then one
     per-shower constant term ``1 + 0.02 N(0,1)`` on the whole shower.
4. **Isolated deposits** (neutron captures, soft photons): ``Poisson(3 + 2 ln(E / 256 MeV))`` per
   shower, spread over layers in proportion to their energy (plus a 5% floor), ``0.1 MeV *
   LogNormal(0, 0.5)`` each, radii ``f(r; 200 mm)``: the ~0.1 MeV peak of the voxel spectra.

The axis is jittered by ``N(0, 3 mm)`` in x and y per shower plus ``N(0, 1 mm)`` per layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from caloflow.data.datasets import DS1_PION_GEOMETRY as PION
from caloflow.data.standin.detector import REGIONS, DepthGrid
from caloflow.data.standin.fluctuations import gamma_smear, landau_factor, stochastic_sigma
from caloflow.data.standin.gflash import sample_em_shape
from caloflow.data.standin.lateral import Deposits, SpotCloud, deposit_cloud, deposit_isolated, voxelise
from caloflow.data.standin.longitudinal import gamma_profile, layer_shares

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

GRID = DepthGrid(PION)

INTERACTION_LENGTH_LAMBDA = 1.25
SOFT_INTERACTION_BOOST = (1.5, -0.7)
MIP_VISIBLE_MEV: dict[str, float] = {
    "presampler": 3.0,
    "strips": 25.0,
    "middle": 90.0,
    "back": 12.0,
    "tile_a": 300.0,
    "tile_bc": 800.0,
    "tile_d": 350.0,
}
MIP_VISIBLE_FRACTION = 0.85
DEAD_CONSUMPTION_MEV: dict[str, float] = {"front": 25.0, "cryostat": 10.0, "beyond": 1.0e12}
LANDAU_WIDTH = 0.05
CAPTURE_PROBABILITY = 0.5
CAPTURE_MEAN_MEV = 20.0
GROOM_E0_MEV, GROOM_K = 1000.0, 0.8
F_EM_CONCENTRATION = 8.0
H_OVER_E = (0.70, 0.30, 0.2)
H_LOG_SIGMA = 0.10
EM_SAMPLING_TERM, HAD_SAMPLING_TERM, HAD_MAX_SIGMA = 0.15, 0.50, 0.5
CONSTANT_TERM = 0.02
AXIS_JITTER_MM, LAYER_JITTER_MM = 3.0, 1.0


def _region_array(table: dict[str, float]) -> FloatArray:
    return np.array([table.get(r.name, 0.0) for r in REGIONS])


_MOYAL_MEAN = 1.2704  # Euler's gamma + ln 2: Landau factors are divided by 1 + width * this
_MIP_VISIBLE = _region_array(MIP_VISIBLE_MEV)
_CONSUMPTION = _MIP_VISIBLE / MIP_VISIBLE_FRACTION + _region_array(DEAD_CONSUMPTION_MEV)
_CONSUMED_BEFORE = np.concatenate([[0.0], np.cumsum(_CONSUMPTION)])


def pion_showers(energy_mev: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Voxel energies (n, 533), MeV, of charged pions of the given incident energies."""
    axis = AXIS_JITTER_MM * rng.standard_normal((2, energy_mev.size, 1))
    centre = axis + LAYER_JITTER_MM * rng.standard_normal((2, energy_mev.size, PION.n_layers))
    track = _track(energy_mev, rng)
    shower = _shower(track, rng)
    layer_energy = track.visible + track.capture + shower.em + shower.had
    deposits = [
        deposit_cloud(_track_cloud(track, centre, rng), PION, rng),
        deposit_cloud(_capture_cloud(track, centre, rng), PION, rng),
        deposit_cloud(_em_cloud(shower, centre, rng), PION, rng),
        deposit_cloud(_had_cloud(shower, centre, rng), PION, rng),
        _isolated(energy_mev, layer_energy, rng),
    ]
    return voxelise(energy_mev.size, PION, deposits)


# ------------------------------------------------------------------------------------------ MIP track


@dataclass(frozen=True)
class Track:
    """The pion before its first hard interaction: per-layer visible energies and where it ended."""

    visible: FloatArray  # (n, layers) MIP energy, MeV
    capture: FloatArray  # (n, layers) energy of a stopped pi- capture, MeV
    t_int: FloatArray  # (n,) depth of the interaction (lambda); where the shower starts
    remaining_mev: FloatArray  # (n,) energy left for the shower (0 if the pion stopped)


def interaction_length(energy_mev: FloatArray) -> FloatArray:
    """Mean depth (lambda) of the first hard interaction."""
    boost, power = SOFT_INTERACTION_BOOST
    return INTERACTION_LENGTH_LAMBDA * (1.0 + boost * (energy_mev / 1000.0) ** power)


def _track(energy_mev: FloatArray, rng: np.random.Generator) -> Track:
    t_int = rng.exponential(interaction_length(energy_mev))
    t_stop = _stopping_depth(energy_mev)
    crossed = _fraction_crossed(np.minimum(t_int, t_stop))
    landau = landau_factor(crossed.shape, LANDAU_WIDTH, rng) / (1.0 + LANDAU_WIDTH * _MOYAL_MEAN)
    visible = (crossed * _MIP_VISIBLE * landau) @ GRID.region_to_layer
    interacts = t_int < t_stop
    remaining = np.where(interacts, np.maximum(energy_mev - crossed @ _CONSUMPTION, 0.0), 0.0)
    return Track(visible, _capture(~interacts, t_stop, rng), t_int, remaining)


def _stopping_depth(energy_mev: FloatArray) -> FloatArray:
    """Depth (lambda) where the track has consumed the pion's whole energy."""
    region = np.searchsorted(_CONSUMED_BEFORE, energy_mev, side="right") - 1
    left = energy_mev - _CONSUMED_BEFORE[region]
    edges = GRID.region_edges_lambda
    depth: FloatArray = edges[region] + left / _CONSUMPTION[region] * (edges[region + 1] - edges[region])
    return depth


def _fraction_crossed(end: FloatArray) -> FloatArray:
    """(n, regions) share of each region's thickness the track crossed before ``end``."""
    edges = GRID.region_edges_lambda
    return np.clip((end[:, None] - edges[:-1]) / np.diff(edges), 0.0, 1.0)


def _capture(stopped: BoolArray, t_stop: FloatArray, rng: np.random.Generator) -> FloatArray:
    """(n, layers) capture energy of stopped negative pions, in the layer where they stopped."""
    captured = stopped & (rng.random(stopped.size) < CAPTURE_PROBABILITY)
    energy = np.where(captured, rng.exponential(CAPTURE_MEAN_MEV, stopped.size), 0.0)
    region = np.searchsorted(GRID.region_edges_lambda, t_stop, side="right") - 1
    return energy[:, None] * GRID.region_to_layer[np.minimum(region, len(REGIONS) - 1)]


def _track_cloud(track: Track, centre: FloatArray, rng: np.random.Generator) -> SpotCloud:
    n_spots = np.where(track.visible > 0, 1 + rng.poisson(2.0, track.visible.shape), 0)
    return _cloud(track.visible, n_spots, (1.5, 6.0, 0.85), centre, weight_shape=2)


def _capture_cloud(track: Track, centre: FloatArray, rng: np.random.Generator) -> SpotCloud:
    n_spots = np.where(track.capture > 0, 1 + rng.poisson(2.0, track.capture.shape), 0)
    return _cloud(track.capture, n_spots, (20.0, 60.0, 0.5), centre, weight_shape=1)


def _cloud(
    energy: FloatArray,
    n_spots: NDArray[np.int64],
    radial: tuple[float | FloatArray, float | FloatArray, float],
    centre: FloatArray,
    weight_shape: int,
) -> SpotCloud:
    core, tail, prob = radial
    shape = energy.shape
    return SpotCloud(
        energy_mev=energy,
        n_spots=n_spots,
        core_mm=np.broadcast_to(core, shape),
        tail_mm=np.broadcast_to(tail, shape),
        core_prob=np.full(shape, prob),
        centre_x_mm=np.broadcast_to(centre[0], shape),
        centre_y_mm=np.broadcast_to(centre[1], shape),
        weight_shape=weight_shape,
    )


# --------------------------------------------------------------------------------- hadronic shower


@dataclass(frozen=True)
class Shower:
    """Visible per-layer energies (n, layers) of the two parts of the shower, and layer distances."""

    em: FloatArray
    had: FloatArray
    depth_after: FloatArray  # (n, layers) lambda from the interaction to the layer's middle (>= 0)


def groom_em_fraction(energy_mev: FloatArray) -> FloatArray:
    """Mean electromagnetic fraction ``1 - (E / E0)^(k - 1)``, clipped to [0.02, 0.95]."""
    return np.clip(1.0 - (energy_mev / GROOM_E0_MEV) ** (GROOM_K - 1.0), 0.02, 0.95)


def _shower(track: Track, rng: np.random.Generator) -> Shower:
    e_int = track.remaining_mev
    mean = groom_em_fraction(np.maximum(e_int, 1.0))
    f_em = rng.beta(mean * F_EM_CONCENTRATION, (1.0 - mean) * F_EM_CONCENTRATION)
    em_true = (e_int * f_em)[:, None] * _em_shares(track.t_int, e_int * f_em, rng)
    h = _hadronic_response(e_int, rng)
    had_true = (e_int * (1.0 - f_em) * h)[:, None] * _had_shares(track.t_int, e_int, rng)
    em, had = _smeared(em_true, had_true, rng)
    depth_after = np.maximum(GRID.layer_mid_lambda[None, :] - track.t_int[:, None], 0.0)
    return Shower(em=em, had=had, depth_after=depth_after)


def _smeared(em_true: FloatArray, had_true: FloatArray, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Per-layer sampling fluctuations of both parts, then one per-shower constant term."""
    em = gamma_smear(em_true, stochastic_sigma(em_true, EM_SAMPLING_TERM), rng)
    had_sigma = np.minimum(stochastic_sigma(had_true, HAD_SAMPLING_TERM), HAD_MAX_SIGMA)
    had = gamma_smear(had_true, had_sigma, rng)
    constant = np.maximum(1.0 + CONSTANT_TERM * rng.standard_normal(em.shape[0]), 0.0)[:, None]
    return em * constant, had * constant


def _hadronic_response(energy_mev: FloatArray, rng: np.random.Generator) -> FloatArray:
    top, slope, floor = H_OVER_E
    mean = np.maximum(top - slope / np.sqrt(np.maximum(energy_mev, 1.0) / 1000.0), floor)
    return mean * np.exp(H_LOG_SIGMA * rng.standard_normal(energy_mev.size))


def _em_shares(t_int: FloatArray, em_mev: FloatArray, rng: np.random.Generator) -> FloatArray:
    start = GRID.x0_at_lambda(t_int) + rng.exponential(9.0 / 7.0, t_int.size)
    shape = sample_em_shape(np.maximum(em_mev / 3.0, 100.0), rng)
    profile = gamma_profile(GRID.cell_mid_x0, GRID.cell_width_x0, start, shape.shape, shape.t_max)
    return layer_shares(GRID, profile)


def _had_shares(t_int: FloatArray, e_int: FloatArray, rng: np.random.Generator) -> FloatArray:
    z_shape, z_depth = rng.standard_normal((2, t_int.size))
    shape = np.maximum(1.8 * np.exp(0.25 * z_shape), 1.3)
    log_e = np.log(np.maximum(e_int, 1.0) / 1000.0)
    t_max = np.maximum(0.2 * log_e + 0.9, 0.4) * np.exp(0.3 * z_depth)
    profile = gamma_profile(GRID.cell_mid_lambda, GRID.cell_width_lambda, t_int, shape, t_max)
    return layer_shares(GRID, profile)


def _em_cloud(shower: Shower, centre: FloatArray, rng: np.random.Generator) -> SpotCloud:
    d = shower.depth_after
    n_spots = rng.poisson(30.0 * (shower.em / 1000.0) ** 0.6)
    offset = (8.0 + 12.0 * d) * rng.standard_normal((2, *d.shape))
    return _cloud(shower.em, n_spots, (10.0 + 8.0 * d, 40.0 + 25.0 * d, 0.65), centre + offset, 2)


def _had_cloud(shower: Shower, centre: FloatArray, rng: np.random.Generator) -> SpotCloud:
    d = shower.depth_after
    n_spots = rng.poisson(25.0 * (shower.had / 1000.0) ** 0.6)
    radial = (40.0 + 15.0 * d, np.minimum(150.0 + 30.0 * d, 300.0), 0.55)
    return _cloud(shower.had, n_spots, radial, centre, 1)


# --------------------------------------------------------------------------------- isolated deposits


def _isolated(energy_mev: FloatArray, layer_energy: FloatArray, rng: np.random.Generator) -> Deposits:
    count = rng.poisson(3.0 + 2.0 * np.log(np.maximum(energy_mev, 256.0) / 256.0))
    total = layer_energy.sum(axis=1, keepdims=True)
    share = np.divide(layer_energy, total, out=np.zeros_like(layer_energy), where=total > 0)
    weights = share + 0.05 / PION.n_layers
    per_layer = rng.multinomial(count, weights / weights.sum(axis=1, keepdims=True))
    return deposit_isolated(per_layer, 0.1, 0.5, 200.0, PION, rng)
