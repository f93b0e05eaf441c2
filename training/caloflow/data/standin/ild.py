"""Stand-in photon showers in the ILD Si-W ECAL barrel (``ild-photon``): stand-in, not Geant4.

Specification: ``shared/design/l2lflows-method.md`` section 7 (section 2 for the data). Tags below: [note]
is that design note (its own sources: [K4G] k4geo, [CC2]/[CC3] CaloClouds, [GH] Getting High, [PDG]), [GP]
GFlash (hep-ex/0001020, values recalled in the note), [EST] an estimate of the note or of this module
(calibrated to the note's targets; see ``tests/test_standin_ild.py`` for the figures).

Geometry: everything from the registry (``dataset("ild-photon").geometry``): 30 sensors at the tungsten depth
in front of each (``layer_depth_x0``: 2.1 mm W = 0.6 X0 per layer for layers 0-19, 4.2 mm = 1.2 X0 after
[note K4G]) plus 8 % for the passive material (PCB, glue, carbon fibre; the note allows 5-10 %, 8 % puts the
mean CoG depth near the measured layer 13.6 [note 7.1.2, CC3]), 30 x 30 cells of 5.088 mm. Shower axis at the
gun position, near the corner of four central cells: 0.41 mm below the x edge between cells 13|14 and 0.68 mm
below the z edge between cells 14|15 (:data:`AXIS_X_MM`, :data:`AXIS_Z_MM`; distances [note 2.3], sides [EST]).

Per shower, one block at a time (all vectorised):

1. Start: conversion depth ``t0 ~ Exp(9/7 X0)`` [note 7.1.2]; nothing before it (empty early layers).
2. Longitudinal: a Gamma profile ``g(u) = b^a u^(a-1) e^(-b u) / Gamma(a)``, ``u = t - t0``, ``b = (a-1)/T``,
   per-shower correlated (ln T, ln a) from GFlash's sampling-calorimeter form (:data:`.gflash.SAMPLING_W`:
   ``E_c = 9 MeV``, ``Z = 74`` [note 7.1.2, GP]). The visible signal of a sensor is the local charged-track
   density, so each sensor sees ``E/GeV * 50 * g(t_i)`` track crossings on average
   (:data:`CROSSINGS_PER_GEV_X0`, [EST] calibrated to E_vis/E_inc ~ 2 % [note 2.5]): the profile is sampled
   at the sensor depth, not integrated over the plate in front, so the layer profile has a kink, not a
   step, at the thick plates; the part beyond the last sensor leaks out.
3. Lateral (GFlash core + tail [note 7.1.5, GP], :func:`.gflash.em_radial` at ``tau = u / T``, Z = 74), radii
   in an effective Moliere radius of 20 mm in front of the thick plates and 16 mm behind [note 2.2], times a
   per-shower width factor ``exp(0.15 N(0,1))`` [EST] that persists through all layers. The axis of every
   layer is the shower's axis (offset ``N(0, 0.2 mm)`` per coordinate) plus a random walk of ``N(0, 0.05 mm)``
   steps per layer [EST, tuned to the lateral CoG std of ~0.5 mm, note 7.1.6 / CC3].
4. Sub-clusters [note 7.1.6]: ``Poisson(1.5 + 1.0 ln(E / 10 GeV))`` late bremsstrahlung photons per shower,
   each converting at a depth drawn from the shower's own profile, at an offset ``f(r; 6 mm)`` from the axis,
   lasting ``2 + Poisson(3)`` layers, taking a share ``U(0.03, 0.10)`` of the shower's crossings in those
   layers (taken from the main body) with a radius of 1.5 mm growing by 20 % per layer [EST]. They sit at the
   same (x, z) in consecutive layers, so a layer's image predicts the next one's.
5. Hits [note 7.1.7]: the crossings of each (shower, layer, component) are ``Poisson`` draws; core and tail
   points are scattered around the layer's axis (:mod:`.grid_points`) and summed per cell. A MIP crossing
   deposits ``0.15 MeV * (1 + 0.062 Moyal) / cos(theta)`` (MPV 0.15 MeV [note 2.2]; Landau width xi / MPV =
   0.062 for 0.525 mm Si, ``xi = 0.1535 Z/A rho x`` [PDG]; ``cos(theta) ~ U(0.55, 1)``, mean path factor
   1.33 [note 7.1.7]); 15 % of the crossings are soft electrons, log-normal around 3 MIP (median 0.6 MeV,
   sigma_ln 0.5) [note 7.1.7]; plus ``0.3`` Compton / photo-absorption deposits per crossing, exponential
   with mean 0.04 MeV, spread 1.5 times as wide as the tail [note 7.1.7, EST].
6. Threshold: cells below the dataset's threshold (0.1 MeV, half a MIP [note 2, GH/CC2]) are set to exactly
   0 after summation [note 7.1.8].

Output: (n, n_voxels) float64 MeV, flat C order of (n, layers, x, z), the ILD file's axis order.

Speed (~4 600 hits per shower, so per-hit work is all that counts): the block's Philox stream only seeds the
model's own SFC64 generator (:func:`hit_stream`; four words of the block stream, so the showers still depend on
(dataset, seed, block) alone and chunk-size byte-identity holds), whose uniforms cost about half of Philox's;
hit positions and deposits are float32 with in-place arithmetic; hits are binned with one ``np.bincount`` over
the block and the threshold looks only at hit cells.
:class:`ILDPhotonModel` holds every coefficient; its switches (``fluctuating_start``, ``fluctuating_profile``,
``core_tail``, ``persistent``, ``threshold``) exist so that tests can remove one feature and see the check
that guards it fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaln

from caloflow.data.datasets import dataset
from caloflow.data.grid_geometry import GridGeometry
from caloflow.data.standin.fluctuations import landau_factor32
from caloflow.data.standin.gflash import SAMPLING_W, EMShape, GFlashParams, em_radial, mean_em_shape, sample_em_shape
from caloflow.data.standin.grid_points import scatter_points

FloatArray = NDArray[np.float64]
Float32Array = NDArray[np.float32]
IntArray = NDArray[np.int64]

ILD = dataset("ild-photon")
assert isinstance(ILD.geometry, GridGeometry)
GRID: GridGeometry = ILD.geometry


def _edge_below(centres_mm: FloatArray, cell: int) -> float:
    return float(centres_mm[cell]) - 0.5 * GRID.cell_mm


AXIS_X_MM = _edge_below(GRID.x_centres_mm, 14) - 0.41
AXIS_Z_MM = _edge_below(GRID.z_centres_mm, 15) - 0.68
CROSSINGS_PER_GEV_X0 = 50.0


@dataclass(frozen=True)
class _Profile:
    """Per-shower longitudinal state: expected crossings per sensor, relative depth, start and shape."""

    crossings: FloatArray  # (n, layers)
    tau: FloatArray  # (n, layers): depth after the start over T (0 before the start)
    start_x0: FloatArray  # (n,)
    shape: EMShape


@dataclass(frozen=True)
class _Lateral:
    """Per (shower, layer): axis position, core and tail radii (mm) and the core share."""

    axis_x_mm: FloatArray
    axis_z_mm: FloatArray
    core_mm: FloatArray
    tail_mm: FloatArray
    core_prob: FloatArray


@dataclass(frozen=True)
class _Clusters:
    """Sub-clusters: one row each, (rows, layers) arrays; ``taken`` is the main body's lost share (n, layers)."""

    shower: IntArray
    crossings: FloatArray
    centre_x_mm: FloatArray
    centre_z_mm: FloatArray
    radius_mm: FloatArray
    taken: FloatArray


@dataclass(frozen=True)
class ILDPhotonModel:
    """The ILD photon stand-in; every coefficient is documented in the module docstring."""

    gflash: GFlashParams = SAMPLING_W
    passive_fraction: float = 0.08
    conversion_length_x0: float = 9.0 / 7.0
    crossings_per_gev_x0: float = CROSSINGS_PER_GEV_X0
    moliere_front_mm: float = 20.0
    moliere_rear_mm: float = 16.0
    width_log_sigma: float = 0.15
    axis_sigma_mm: float = 0.2
    axis_step_mm: float = 0.05
    clusters_at_10_gev: float = 1.5
    clusters_per_ln_e: float = 1.0
    cluster_offset_mm: float = 6.0
    cluster_share: tuple[float, float] = (0.03, 0.10)
    cluster_mean_extra_layers: float = 3.0
    cluster_radius_mm: float = 1.5
    cluster_growth_per_layer: float = 0.2
    mip_mpv_mev: float = 0.15
    landau_width: float = 0.062
    cos_theta_min: float = 0.55
    soft_fraction: float = 0.15
    soft_median_mev: float = 0.6
    soft_log_sigma: float = 0.5
    compton_per_crossing: float = 0.3
    compton_mean_mev: float = 0.04
    compton_spread: float = 1.5
    fluctuating_start: bool = True
    fluctuating_profile: bool = True
    core_tail: bool = True
    persistent: bool = True
    threshold: bool = True

    def __call__(self, energy_mev: FloatArray, rng: np.random.Generator) -> FloatArray:
        """Cell energies (n, n_voxels), MeV, of photons of the given incident energies (MeV)."""
        rng = hit_stream(rng)
        profile = self._profile(energy_mev, rng)
        lateral = self._lateral(energy_mev, profile, rng)
        clusters = self._clusters(energy_mev, profile, lateral, rng)
        flat, deposits = self._hits(profile, lateral, clusters, rng)
        showers = np.bincount(flat, weights=deposits, minlength=energy_mev.size * GRID.n_voxels)
        if self.threshold:  # only hit cells can be non-zero: look at those, not the whole block
            showers[flat[showers[flat] < ILD.threshold_mev]] = 0.0
        return showers.astype(np.float64, copy=False).reshape(energy_mev.size, GRID.n_voxels)

    # ------------------------------------------------------------------------------ longitudinal

    def _profile(self, energy_mev: FloatArray, rng: np.random.Generator) -> _Profile:
        n = energy_mev.size
        start = rng.exponential(self.conversion_length_x0, n) if self.fluctuating_start else np.zeros(n)
        if not self.fluctuating_start:
            start += self.conversion_length_x0
        shape = sample_em_shape(energy_mev, rng, self.gflash)
        if not self.fluctuating_profile:
            shape = mean_em_shape(energy_mev, self.gflash)
        u = self.sensor_depth_x0[None, :] - start[:, None]
        density = _gamma_density(u, shape)
        crossings = (energy_mev / 1000.0 * self.crossings_per_gev_x0)[:, None] * density
        tau = np.maximum(u, 0.0) / shape.t_max[:, None]
        return _Profile(crossings=crossings, tau=tau, start_x0=start, shape=shape)

    @cached_property
    def sensor_depth_x0(self) -> FloatArray:
        """Depth of each sensor in X0: the registry's tungsten depth plus the passive share."""
        depth: FloatArray = GRID.layer_depth_x0 * (1.0 + self.passive_fraction)
        return depth

    # ------------------------------------------------------------------------------ lateral

    @cached_property
    def moliere_mm(self) -> FloatArray:
        """Effective Moliere radius of each layer: front value before the thick plates, rear value behind."""
        absorber = np.asarray(GRID.absorber_mm)
        return np.where(absorber > absorber.min(), self.moliere_rear_mm, self.moliere_front_mm)

    def _lateral(self, energy_mev: FloatArray, profile: _Profile, rng: np.random.Generator) -> _Lateral:
        n, n_layers = profile.crossings.shape
        per_layer = (n, 1) if self.persistent else (n, n_layers)
        width = np.exp(self.width_log_sigma * rng.standard_normal(per_layer)) * self.moliere_mm[None, :]
        radial = em_radial(energy_mev[:, None], profile.tau, self.gflash)
        axis = [self._axis(rng, n, n_layers) + centre for centre in (AXIS_X_MM, AXIS_Z_MM)]
        core, tail, prob = radial.core_mm * width, radial.tail_mm * width, radial.core_prob
        if not self.core_tail:
            core = tail = prob * core + (1.0 - prob) * tail
        return _Lateral(axis_x_mm=axis[0], axis_z_mm=axis[1], core_mm=core, tail_mm=tail, core_prob=prob)

    def _axis(self, rng: np.random.Generator, n: int, n_layers: int) -> FloatArray:
        """Axis offset per (shower, layer): a per-shower offset plus a random walk in depth."""
        offset = self.axis_sigma_mm * rng.standard_normal((n, 1))
        steps = self.axis_step_mm * rng.standard_normal((n, n_layers))
        if self.persistent:
            walk: FloatArray = offset + np.cumsum(steps, axis=1)
            return walk
        spread = np.sqrt(self.axis_sigma_mm**2 + n_layers / 2 * self.axis_step_mm**2)
        independent: FloatArray = spread * rng.standard_normal((n, n_layers))
        return independent

    # ------------------------------------------------------------------------------ sub-clusters

    def _clusters(
        self, energy_mev: FloatArray, profile: _Profile, lateral: _Lateral, rng: np.random.Generator
    ) -> _Clusters:
        n, n_layers = profile.crossings.shape
        mean = self.clusters_at_10_gev + self.clusters_per_ln_e * np.log(energy_mev / 1.0e4)
        shower = np.repeat(np.arange(n), rng.poisson(np.maximum(mean, 0.0)))
        a, t_max = profile.shape.shape[shower], profile.shape.t_max[shower]
        depth = profile.start_x0[shower] + rng.gamma(a, t_max / (a - 1.0))
        first = np.searchsorted(self.sensor_depth_x0, depth)
        last = first + 2 + rng.poisson(self.cluster_mean_extra_layers, shower.size)
        layers = np.arange(n_layers)
        active = (layers[None, :] >= first[:, None]) & (layers[None, :] < last[:, None])
        share = rng.uniform(*self.cluster_share, shower.size)[:, None] * active
        taken = np.zeros((n, n_layers))
        np.add.at(taken, shower, share)
        offset = self._cluster_offsets(rng, shower.size, n_layers)
        grown = 1.0 + self.cluster_growth_per_layer * np.maximum(layers[None, :] - first[:, None], 0)
        return _Clusters(
            shower=shower,
            crossings=share * profile.crossings[shower],
            centre_x_mm=lateral.axis_x_mm[shower] + offset[0],
            centre_z_mm=lateral.axis_z_mm[shower] + offset[1],
            radius_mm=self.cluster_radius_mm * grown,
            taken=taken,
        )

    def _cluster_offsets(self, rng: np.random.Generator, rows: int, n_layers: int) -> FloatArray:
        """(2, rows, 1) axis offsets drawn from f(r; cluster_offset_mm); (2, rows, layers) if not persistent."""
        size = (2, rows, 1) if self.persistent else (2, rows, n_layers)
        scale = self.cluster_offset_mm * np.sqrt(0.5) / np.sqrt(rng.standard_exponential(size[1:]))
        result: FloatArray = scale * rng.standard_normal(size)
        return result

    # ------------------------------------------------------------------------------ hits

    def _hits(
        self, profile: _Profile, lateral: _Lateral, clusters: _Clusters, rng: np.random.Generator
    ) -> tuple[IntArray, Float32Array]:
        """Flat block indices and deposits (MeV, float32) of every hit of every component."""
        main = profile.crossings * np.clip(1.0 - clusters.taken, 0.0, 1.0)
        core, tail = main * lateral.core_prob, main * (1.0 - lateral.core_prob)
        at_axis = (lateral.axis_x_mm, lateral.axis_z_mm, np.arange(main.shape[0]))
        at_cluster = (clusters.centre_x_mm, clusters.centre_z_mm, clusters.shower)
        compton_mm = lateral.tail_mm * self.compton_spread
        components = [
            (core, lateral.core_mm, at_axis),
            (tail, lateral.tail_mm, at_axis),
            (clusters.crossings, clusters.radius_mm, at_cluster),
        ]
        flats: list[IntArray] = []
        deposits: list[Float32Array] = []
        for mean, radius, (cx, cz, rows) in components:
            for kind, share in (("mip", 1.0 - self.soft_fraction), ("soft", self.soft_fraction)):
                flat = scatter_points(rng.poisson(mean * share), radius, cx, cz, rows, GRID, rng)
                flats.append(flat)
                deposits.append(self._deposits(kind, flat.size, rng))
        compton = rng.poisson(profile.crossings * self.compton_per_crossing)
        flats.append(scatter_points(compton, compton_mm, *at_axis, GRID, rng))
        deposits.append(self._deposits("compton", flats[-1].size, rng))
        return np.concatenate(flats), np.concatenate(deposits)

    def _deposits(self, kind: str, size: int, rng: np.random.Generator) -> Float32Array:
        """Energy (MeV, float32) of ``size`` hits of one kind: MIP crossings, soft electrons or Compton deposits."""
        if kind == "mip":  # MPV / cos(theta), cos(theta) ~ U(cos_theta_min, 1), times the Landau factor
            path = rng.random(size, dtype=np.float32)
            path *= np.float32(1.0 - self.cos_theta_min)
            path += np.float32(self.cos_theta_min)
            np.divide(np.float32(self.mip_mpv_mev), path, out=path)
            path *= landau_factor32(size, self.landau_width, rng)
            return path
        if kind == "soft":
            soft = rng.standard_normal(size, dtype=np.float32)
            soft *= np.float32(self.soft_log_sigma)
            np.exp(soft, out=soft)
            soft *= np.float32(self.soft_median_mev)
            return soft
        compton = rng.standard_exponential(size, dtype=np.float32)
        compton *= np.float32(self.compton_mean_mev)
        return compton


def _gamma_density(u: FloatArray, shape: EMShape) -> FloatArray:
    """Gamma profile per X0 at depths ``u`` after the start, (n, layers); 0 before the start."""
    a = shape.shape[:, None]
    rate = (a - 1.0) / shape.t_max[:, None]
    positive = u > 0
    log_u = np.log(np.where(positive, u, 1.0))
    log_density = a * np.log(rate) + (a - 1.0) * log_u - rate * u - gammaln(a)
    density: FloatArray = np.where(positive, np.exp(log_density), 0.0)
    return density


def hit_stream(block_rng: np.random.Generator) -> np.random.Generator:
    """The model's generator: SFC64 seeded from four words of the block's stream (see the module docstring)."""
    words = block_rng.integers(0, 2**63, size=4).tolist()
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence(words)))


ild_photon_showers = ILDPhotonModel()
