"""Stand-in photon showers (electromagnetic), one block of showers at a time.

Per shower (depths in X0 from the front of the dead material, :mod:`.detector`):

1. Conversion depth ``c ~ Exp(9/7 X0)``: the shower starts there, so early conversions put more energy
   in the dead material (lost) and the presampler.
2. Longitudinal profile: a GFlash Gamma profile from ``c`` with fluctuating, correlated shape and depth
   of maximum (:mod:`.gflash`, ``E_c = 10 MeV``, ``Z_eff = 60``), integrated per layer on the depth
   grid; the shares in the front dead material, the cryostat, Tile layers absent from the geometry and
   behind the detector are lost (E_tot/E_inc lower and wider at low energy, leakage at high energy).
3. Sampling fluctuations per layer: Gamma smearing with relative width ``0.10 / sqrt(E_layer / GeV)``
   (so the sum fluctuates like 10%/sqrt(E)), times one per-shower constant term ``1 + 0.01 N(0,1)``:
   the layer energies are correlated through the profile, not drawn independently.
4. Lateral: ``n_spots ~ Poisson(40 (E_layer / GeV)^0.6)`` spots per layer (no spot: the layer stays
   empty), sharing the layer energy with Gamma(2) weights, at GFlash core+tail radii evaluated at the
   layer's mean relative depth ``tau = t / T`` (:func:`.gflash.em_radial`, R_M = 40 mm). The axis is
   jittered by ``N(0, 2.5 mm)`` in x and y per shower plus ``N(0, 1 mm)`` per layer.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from caloflow.data.datasets import DS1_PHOTON_GEOMETRY as PHOTON
from caloflow.data.standin.detector import DepthGrid
from caloflow.data.standin.fluctuations import gamma_smear, stochastic_sigma
from caloflow.data.standin.gflash import em_radial, sample_em_shape
from caloflow.data.standin.lateral import SpotCloud, deposit_cloud, voxelise
from caloflow.data.standin.longitudinal import gamma_profile, layer_mean_depth, layer_shares

FloatArray = NDArray[np.float64]

CONVERSION_LENGTH_X0 = 9.0 / 7.0
SAMPLING_TERM = 0.10
CONSTANT_TERM = 0.01
SPOTS_AT_1_GEV = 40.0
SPOT_EXPONENT = 0.6
SPOT_WEIGHT_SHAPE = 2
AXIS_JITTER_MM = 2.5
LAYER_JITTER_MM = 1.0

GRID = DepthGrid(PHOTON)


def photon_showers(energy_mev: FloatArray, rng: np.random.Generator) -> FloatArray:
    """Voxel energies (n, 368), MeV, of photons of the given incident energies."""
    layer_energy, tau = _longitudinal(energy_mev, rng)
    cloud = _spot_cloud(energy_mev, layer_energy, tau, rng)
    return voxelise(energy_mev.size, PHOTON, [deposit_cloud(cloud, PHOTON, rng)])


def _longitudinal(energy_mev: FloatArray, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Measured layer energies (n, layers) and the mean relative depth ``tau`` of each layer."""
    start = rng.exponential(CONVERSION_LENGTH_X0, energy_mev.size)
    shape = sample_em_shape(energy_mev, rng)
    profile = gamma_profile(GRID.cell_mid_x0, GRID.cell_width_x0, start, shape.shape, shape.t_max)
    depth = GRID.cell_mid_x0[None, :] - start[:, None]
    tau = layer_mean_depth(GRID, profile, depth) / shape.t_max[:, None]
    true_energy = energy_mev[:, None] * layer_shares(GRID, profile)
    return _sampled(true_energy, rng), tau


def _sampled(true_energy: FloatArray, rng: np.random.Generator) -> FloatArray:
    measured = gamma_smear(true_energy, stochastic_sigma(true_energy, SAMPLING_TERM), rng)
    constant = np.maximum(1.0 + CONSTANT_TERM * rng.standard_normal(true_energy.shape[0]), 0.0)
    result: FloatArray = measured * constant[:, None]
    return result


def _spot_cloud(
    energy_mev: FloatArray, layer_energy: FloatArray, tau: FloatArray, rng: np.random.Generator
) -> SpotCloud:
    n_spots = rng.poisson(SPOTS_AT_1_GEV * (layer_energy / 1000.0) ** SPOT_EXPONENT)
    radial = em_radial(energy_mev[:, None], tau)
    axis = AXIS_JITTER_MM * rng.standard_normal((2, energy_mev.size, 1))
    centre = axis + LAYER_JITTER_MM * rng.standard_normal((2, *layer_energy.shape))
    return SpotCloud(
        energy_mev=layer_energy,
        n_spots=n_spots,
        core_mm=radial.core_mm,
        tail_mm=radial.tail_mm,
        core_prob=radial.core_prob,
        centre_x_mm=centre[0],
        centre_y_mm=centre[1],
        weight_shape=SPOT_WEIGHT_SHAPE,
    )
