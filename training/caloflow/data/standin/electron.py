"""Stand-in electron showers in the Par04 Si-W calorimeter of Datasets 2 and 3: stand-in, not Geant4.

One physical shower model, binned into either dataset's (layer, alpha, r) voxels (:class:`ElectronShowerModel`
takes the geometry; the two datasets differ only in binning). Sources: ``shared/design/icaloflow-method.md``
section 1.2 (detector) and section 5 (the stand-in's facts and physics; its coefficients are [textbook]
starting points, tuned here, **not** checked against the real files).

Detector (section 1.2 / 5 facts): the electron enters at (0, 0, 0) along the readout axis; 45 read-out layers of
``2 x 1.4 mm W / 3.504 mm = 0.7991 X0`` each (36 X0 in all), cut into 2 integration cells each, then 100 X0 of
"beyond" in 50 cells (leakage, lost); W Moliere radius 9.327 mm; read-out threshold 0.5 keV / 0.033 = 15.15 keV
(from the registry: exact zeros below it). Voxel values are calibrated (Si deposit / 0.033) MeV, so E_tot ~ E_inc.

Per shower (energies E in MeV; ``l`` a read-out layer):

1. **Longitudinal** (section 5 item 1): a GFlash Gamma profile (:mod:`.gflash` with the tungsten medium
   ``E_c = 8 MeV``, ``Z = 74``, ``<ln T> = ln(ln(E/E_c) - 0.5)``: maximum at 4.3 X0 ~ layer 5 at 1 GeV, 11.2 X0 ~
   layer 14 at 1 TeV) with GFlash's correlated per-shower fluctuations of shape ``a`` and maximum ``T``, starting
   at depth ``s ~ Exp(0.4 X0)`` (the fluctuating depth of the first hard bremsstrahlung: a stand-in choice).
   ``T`` is raised where needed so that no profile puts more than :data:`MAX_LAYER_MEV` = 58 GeV into one layer
   (peak ``E 0.7991 (a-1)^a e^(1-a) / (Gamma(a) T)``; it binds near 1 TeV only, at about 5.8 % of E_inc): with
   the sampling fluctuations every layer stays below 65 GeV, where the real files peak at 64 GeV (section 1.4;
   the reference preprocessing NaNs above 65 GeV, section 4.1).
2. **Energy response** (item 2): per-layer Gamma smearing of relative width ``0.15 / sqrt(E_layer / GeV)``
   (stochastic term 15 %/sqrt(E) in the sum) times one per-shower constant term ``1 + 0.01 N(0, 1)``; the layers
   are correlated through the profile.
3. **Lateral** (item 3): GFlash core + tail radii and core share (:func:`.gflash.em_radial`, tungsten medium) at
   the layer's mean relative depth ``tau = t / T``. The layer energy is carried by ``Poisson(40 (E_l/GeV)^0.6)``
   discrete spots (few at low energy: sparse, granular; many at high energy) with Landau-like weights
   (:func:`.fluctuations.landau_factor`, width 0.2), a share ``p`` of them core spots (``f(r; R_C)`` around the
   core centre), the rest tail spots split over the shower's sub-shower clumps (multinomial over the clump
   weights) at ``f(r; 0.7 R_T)`` around each clump's centre. The shower has ``1 + Poisson(1 + 1.5 log10(E/GeV))``
   clumps (at most 8): more at high energy.
4. **Persistence** (item 4): the core centre random-walks in x and y by ``N(0, 0.25 mm)`` per layer from the
   axis; clump ``k`` sits at ``core centre + 0.5 R_T u_k(l)`` where ``u_k`` is a 2-d AR(1) walk of unit variance,
   ``u_k(l) = 0.9 u_k(l-1) + sqrt(1 - 0.81) xi``, and its weight is ``exp(0.8 v_k(l))`` with ``v_k`` an AR(1) walk
   of the same correlation: layer ``l`` looks like layer ``l-1``, more than like another shower's.
5. **Granularity and halo** (item 5): ``Poisson(30 (E_l/GeV)^0.5)`` soft-photon deposits per layer of
   ``0.05 MeV LogNormal(0, 1.2)`` each at ``f(r; 1.5 R_T)`` around the core centre, taken from the layer's budget:
   the voxel spectrum reaches down to the threshold. Spots beyond the outer radius (41.85 mm) are lost.

Everything is vectorised over the spots of a block; positions in float32 (:mod:`.lateral`'s binning).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaln

from caloflow.data.geometry import Geometry, Layer
from caloflow.data.standin.detector import DepthGrid, Region
from caloflow.data.standin.fluctuations import gamma_smear, landau_factor, stochastic_sigma
from caloflow.data.standin.gflash import EMShape, GFlashParams, em_radial, sample_em_shape
from caloflow.data.standin.longitudinal import gamma_profile, layer_mean_depth, layer_shares

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Float32Array = NDArray[np.float32]

TUNGSTEN = GFlashParams(e_critical_mev=8.0, z_eff=74.0, moliere_mm=9.327, t_max_offset=0.5)
LAYER_X0 = 2 * 1.4 / 3.504
LAYER_LAMBDA = 2 * 1.4 / 99.46  # W interaction length 99.46 mm [textbook]; not used by the EM model
CELLS_PER_LAYER = 2
BEYOND_X0, BEYOND_CELLS = 100.0, 50
START_LENGTH_X0 = 0.4
MAX_LAYER_MEV = 58_000.0
SAMPLING_TERM = 0.15
CONSTANT_TERM = 0.01
SPOTS_AT_1_GEV, SPOT_EXPONENT = 20.0, 0.6
LANDAU_WIDTH = 0.2
MAX_CLUMPS = 8
CLUMPS_BASE, CLUMPS_PER_DECADE = 1.0, 1.5
CLUMP_SPREAD, CLUMP_RADIUS = 0.5, 0.7
CORE_STEP_MM = 0.25
PERSISTENCE = 0.9
CLUMP_WEIGHT_SIGMA = 0.8
HALO_AT_1_GEV, HALO_EXPONENT = 10.0, 0.5
HALO_MEDIAN_MEV, HALO_LOG_SIGMA, HALO_RADIUS = 0.05, 1.2, 1.5


def par04_regions(n_layers: int) -> tuple[Region, ...]:
    """The read-out layers of the Par04 calorimeter in depth, then the uninstrumented 'beyond'."""
    layers = tuple(Region(f"layer_{i}", i, LAYER_X0, LAYER_LAMBDA, CELLS_PER_LAYER) for i in range(n_layers))
    return (*layers, Region("beyond", None, BEYOND_X0, BEYOND_X0 * 3.504 / 99.46, BEYOND_CELLS))


@dataclass(frozen=True)
class Longitudinal:
    """Measured layer energies (n, layers) MeV and each layer's mean relative depth ``tau`` (n, layers)."""

    energy_mev: FloatArray
    tau: FloatArray


@dataclass(frozen=True)
class Clouds:
    """Spot clouds per (shower, layer, cloud): counts, centres and radius scales; all (n, layers, clouds)."""

    counts: IntArray
    x_mm: FloatArray
    y_mm: FloatArray
    radius_mm: FloatArray


@dataclass(frozen=True)
class ElectronShowerModel:
    """The block model of one Par04 binning: ``(energies MeV (n,), rng) -> showers (n, n_voxels) MeV``."""

    geometry: Geometry
    threshold_mev: float

    def __post_init__(self) -> None:
        if len({(layer.r_edges_mm, layer.n_alpha) for layer in self.geometry.layers}) != 1:
            raise ValueError(f"{self.geometry.name}: the Par04 model needs identical layers")

    @cached_property
    def grid(self) -> DepthGrid:
        return DepthGrid(self.geometry, par04_regions(self.geometry.n_layers))

    def __call__(self, energy_mev: FloatArray, rng: np.random.Generator) -> FloatArray:
        longitudinal = self.layer_energies(energy_mev, rng)
        return self._thresholded(self._lateral(energy_mev, longitudinal, rng))

    def _thresholded(self, showers: FloatArray) -> FloatArray:
        """Float32 precision (a float32 source's; it compresses better), exact zeros below the threshold."""
        flat = showers.reshape(-1)
        hit = np.flatnonzero(flat)
        values = flat[hit].astype(np.float32).astype(np.float64)
        flat[hit] = np.where(values < self.threshold_mev, 0.0, values)
        return showers

    def layer_energies(self, energy_mev: FloatArray, rng: np.random.Generator) -> Longitudinal:
        """Step 1 and 2: the measured energy of every layer (before lateral losses and the threshold)."""
        start = rng.exponential(START_LENGTH_X0, energy_mev.size)
        shape = _peak_limited(sample_em_shape(energy_mev, rng, TUNGSTEN), energy_mev)
        profile = gamma_profile(self.grid.cell_mid_x0, self.grid.cell_width_x0, start, shape.shape, shape.t_max)
        depth = self.grid.cell_mid_x0[None, :] - start[:, None]
        tau = layer_mean_depth(self.grid, profile, depth) / shape.t_max[:, None]
        true_energy = energy_mev[:, None] * layer_shares(self.grid, profile)
        measured = gamma_smear(true_energy, stochastic_sigma(true_energy, SAMPLING_TERM), rng)
        constant = np.maximum(1.0 + CONSTANT_TERM * rng.standard_normal(energy_mev.size), 0.0)
        return Longitudinal(energy_mev=measured * constant[:, None], tau=tau)

    def _lateral(self, energy_mev: FloatArray, longitudinal: Longitudinal, rng: np.random.Generator) -> FloatArray:
        layer_energy = longitudinal.energy_mev
        radial = em_radial(energy_mev[:, None], longitudinal.tau, TUNGSTEN)
        core_x, core_y = _core_walk(layer_energy.shape, rng)
        halo = Clouds(
            counts=rng.poisson(HALO_AT_1_GEV * (layer_energy / 1000.0) ** HALO_EXPONENT)[..., None],
            x_mm=core_x[..., None],
            y_mm=core_y[..., None],
            radius_mm=HALO_RADIUS * radial.tail_mm[..., None],
        )
        halo_energy = HALO_MEDIAN_MEV * np.exp(HALO_LOG_SIGMA * rng.standard_normal(int(halo.counts.sum())))
        halo_cell = _cloud_cell(halo.counts)
        halo_sum = np.bincount(halo_cell, halo_energy, minlength=layer_energy.size).reshape(layer_energy.shape)
        spots = _spot_clouds(
            energy_mev, layer_energy, radial.core_prob, radial.core_mm, radial.tail_mm, core_x, core_y, rng
        )
        spot_cell = _cloud_cell(spots.counts)
        weights = landau_factor((spot_cell.size,), LANDAU_WIDTH, rng)
        totals = np.bincount(spot_cell, weights, minlength=layer_energy.size)
        budget = np.maximum(layer_energy - halo_sum, 0.0).ravel()
        scale = np.divide(budget, totals, out=np.zeros_like(totals), where=totals > 0)
        deposits = [
            (self._voxels(halo, rng), halo_energy),
            (self._voxels(spots, rng), weights * scale[spot_cell]),
        ]
        return self._summed(energy_mev.size, deposits)

    def _voxels(self, clouds: Clouds, rng: np.random.Generator) -> tuple[IntArray, NDArray[np.bool_]]:
        """Flat ``shower * n_voxels + voxel`` index of every kept spot, and which spots were kept."""
        counts = clouds.counts.ravel()
        radius = np.repeat(clouds.radius_mm.ravel().astype(np.float32), counts)
        v, turn = rng.random((2, radius.size), dtype=np.float32)
        r = radius * np.sqrt(v / (np.float32(1.0) - v))
        angle = np.float32(2.0 * np.pi) * turn
        x = np.repeat(clouds.x_mm.ravel().astype(np.float32), counts) + r * np.cos(angle)
        y = np.repeat(clouds.y_mm.ravel().astype(np.float32), counts) + r * np.sin(angle)
        voxel, kept = _uniform_voxel(self.geometry.layers[0], x, y)
        cell = _cloud_cell(clouds.counts)[kept]  # shower * layers + layer
        return cell * self.geometry.layer_sizes[0] + voxel, kept

    def _summed(self, n: int, deposits: list[tuple[tuple[IntArray, NDArray[np.bool_]], FloatArray]]) -> FloatArray:
        flat = np.concatenate([index for (index, _), _ in deposits])
        energy = np.concatenate([e[kept] for (_, kept), e in deposits])
        summed = np.bincount(flat, weights=energy, minlength=n * self.geometry.n_voxels).astype(np.float64, copy=False)
        return summed.reshape(n, self.geometry.n_voxels)


def _uniform_voxel(layer: Layer, x: Float32Array, y: Float32Array) -> tuple[IntArray, NDArray[np.bool_]]:
    """Voxel index in a layer of equal radial bins (alpha bin outer, r bin inner) of the kept points."""
    r_max = np.float32(layer.r_edges_mm[-1])
    r = np.hypot(x, y)
    kept = r < r_max
    x, y = x[kept], y[kept]
    r_bin = np.minimum((r[kept] * (np.float32(layer.n_r) / r_max)).astype(np.int64), layer.n_r - 1)
    turns = np.arctan2(y, x) * np.float32(1.0 / (2.0 * np.pi)) + np.float32(0.5)
    alpha_bin = np.minimum((turns * np.float32(layer.n_alpha)).astype(np.int64), layer.n_alpha - 1)
    return alpha_bin * layer.n_r + r_bin, kept


def _peak_limited(shape: EMShape, energy_mev: FloatArray) -> EMShape:
    """Raise ``T`` where a profile would put more than :data:`MAX_LAYER_MEV` into one layer."""
    a = shape.shape
    log_peak = a * np.log(a - 1.0) - (a - 1.0) - gammaln(a)  # peak of the unit-T Gamma density
    t_min = LAYER_X0 * np.exp(log_peak) * energy_mev / MAX_LAYER_MEV
    return EMShape(shape=a, t_max=np.maximum(shape.t_max, t_min))


def _cloud_cell(counts: IntArray) -> IntArray:
    """The (shower * layers + layer) cell of every spot of clouds (n, layers, clouds), in spot order."""
    n, layers = counts.shape[:2]
    cells = np.repeat(np.arange(n * layers), counts.shape[2])
    return np.repeat(cells, counts.ravel())


def _ar1_walk(shape: tuple[int, ...], rng: np.random.Generator) -> FloatArray:
    """Unit-variance AR(1) walks along axis 1 (layers): step correlation :data:`PERSISTENCE`."""
    steps = rng.standard_normal(shape)
    walk = np.empty(shape)
    walk[:, 0] = steps[:, 0]
    innovation = np.sqrt(1.0 - PERSISTENCE**2)
    for layer in range(1, shape[1]):
        walk[:, layer] = PERSISTENCE * walk[:, layer - 1] + innovation * steps[:, layer]
    return walk


def _core_walk(shape: tuple[int, int], rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """The core centre (mm): a random walk in x and y from the axis, one step per layer."""
    steps = CORE_STEP_MM * rng.standard_normal((2, *shape))
    walk = np.cumsum(steps, axis=2)
    return walk[0], walk[1]


def _spot_clouds(
    energy_mev: FloatArray,
    layer_energy: FloatArray,
    core_prob: FloatArray,
    core_mm: FloatArray,
    tail_mm: FloatArray,
    core_x: FloatArray,
    core_y: FloatArray,
    rng: np.random.Generator,
) -> Clouds:
    """The core cloud and the clump clouds of every (shower, layer): (n, layers, 1 + MAX_CLUMPS)."""
    n, layers = layer_energy.shape
    n_spots = rng.poisson(SPOTS_AT_1_GEV * (layer_energy / 1000.0) ** SPOT_EXPONENT)
    n_core = rng.binomial(n_spots, core_prob)
    n_clumps = np.minimum(1 + rng.poisson(CLUMPS_BASE + CLUMPS_PER_DECADE * np.log10(energy_mev / 1000.0)), MAX_CLUMPS)
    active = np.arange(MAX_CLUMPS)[None, :] < n_clumps[:, None]
    log_weight = CLUMP_WEIGHT_SIGMA * _ar1_walk((n, layers, MAX_CLUMPS), rng)
    weights = np.exp(log_weight) * active[:, None, :]
    n_tail = rng.multinomial(n_spots - n_core, weights / weights.sum(axis=2, keepdims=True))
    offset = CLUMP_SPREAD * tail_mm[..., None, None] * _ar1_walk((n, layers, MAX_CLUMPS, 2), rng)
    tail_radius = np.broadcast_to(CLUMP_RADIUS * tail_mm[..., None], n_tail.shape)
    return Clouds(
        counts=np.concatenate([n_core[..., None], n_tail], axis=2),
        x_mm=np.concatenate([core_x[..., None], core_x[..., None] + offset[..., 0]], axis=2),
        y_mm=np.concatenate([core_y[..., None], core_y[..., None] + offset[..., 1]], axis=2),
        radius_mm=np.concatenate([core_mm[..., None], tail_radius], axis=2),
    )
