"""GFlash electromagnetic shower parametrisation (Grindhammer & Peters, hep-ex/0001020), homogeneous form.

Energies E in GeV, ``y = E / E_c`` with the critical energy ``E_c = 10 MeV``; effective ``Z = 60``
(lead/liquid-argon, absorber dominated). Depths in X0, radii in Moliere radii (``R_M = 40 mm`` here).

Longitudinal (one Gamma profile per shower, from the start of the shower), fluctuating and correlated:

* ``ln T ~ N(ln(ln y - 0.812), (-1.4 + 1.26 ln y)^-1)``   (T: depth of the maximum)
* ``ln a ~ N(ln(0.81 + 0.458 ln y), (-0.58 + 0.86 ln y)^-1)``   (a: shape)
* correlation of the two normals ``rho = 0.705 - 0.023 ln y``

``a`` is clipped to >= 1.3 and T to [0.3, 30] X0 so that every profile has a finite maximum, and T to
<= (a - 1) / 0.3 so that the tail falls at least like exp(-0.3 t), the attenuation of the most
penetrating photons (a low fluctuated ``a`` shortens the profile instead of making it endless).
Parameters are evaluated at E clipped to [100 MeV, 10 TeV] (``ln y`` stays where the widths are positive).

The coefficients that differ between calorimeters are a :class:`GFlashParams`: :data:`HOMOGENEOUS` (the values
above, Dataset 1's default) and :data:`SAMPLING_W` (GFlash's sampling-calorimeter fluctuation widths,
``sigma(ln T) = (-2.5 + 1.25 ln y)^-1``, ``sigma(ln a) = (-0.82 + 0.79 ln y)^-1``, mean ``ln a`` slope
``0.458 + 2.26 / Z``, tungsten ``Z = 74``, ``E_c = 9 MeV``, radii in Moliere units: the ILD Si-W ECAL,
``shared/design/l2lflows-method.md`` section 7.1 item 2, coefficients recalled there from hep-ex/0001020).

Radial (per depth ``tau = t / T``): the energy at radius r follows
``p f(r; R_C) + (1 - p) f(r; R_T)`` with ``f(r; R) = 2 r R^2 / (r^2 + R^2)^2`` and

* ``R_C = z1 + z2 tau``, ``z1 = 0.0251 + 0.00319 ln E``, ``z2 = 0.1162 - 0.000381 Z``
* ``R_T = k1 (exp(k3 (tau - k2)) + exp(k4 (tau - k2)))``, ``k1 = 0.659 - 0.00309 Z``, ``k2 = 0.645``,
  ``k3 = -2.59``, ``k4 = 0.3585 + 0.0421 ln E``
* ``p = p1 exp((p2 - tau) / p3 - exp((p2 - tau) / p3))``, ``p1 = 2.632 - 0.00094 Z``,
  ``p2 = 0.401 + 0.00187 Z``, ``p3 = 1.313 - 0.0686 ln E``

so both radii grow with depth and the core share falls behind the maximum. ``p`` is clipped to
[0.05, 0.95], radii to [0.02, 5] R_M.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

E_CRITICAL_MEV = 10.0
Z_EFF = 60.0
MOLIERE_RADIUS_MM = 40.0
MIN_SHAPE = 1.3
MIN_RATE_PER_X0 = 0.3
T_MAX_RANGE_X0 = (0.3, 30.0)
_ENERGY_RANGE_MEV = (100.0, 1.0e7)


@dataclass(frozen=True)
class GFlashParams:
    """The calorimeter-dependent GFlash coefficients (see the module docstring)."""

    e_critical_mev: float = E_CRITICAL_MEV
    z_eff: float = Z_EFF
    moliere_mm: float = MOLIERE_RADIUS_MM  # radii come out in mm; 1.0 gives Moliere units
    ln_a_slope: float = 0.458  # <ln a> = ln(0.81 + ln_a_slope ln y)
    ln_t_width: tuple[float, float] = (-1.4, 1.26)  # sigma(ln T) = 1 / (c0 + c1 ln y)
    ln_a_width: tuple[float, float] = (-0.58, 0.86)  # sigma(ln a) = 1 / (c0 + c1 ln y)
    t_max_offset: float = 0.812  # <ln T> = ln(ln y - t_max_offset)


HOMOGENEOUS = GFlashParams()
SAMPLING_W = GFlashParams(
    e_critical_mev=9.0,
    z_eff=74.0,
    moliere_mm=1.0,
    ln_a_slope=0.458 + 2.26 / 74.0,
    ln_t_width=(-2.5, 1.25),
    ln_a_width=(-0.82, 0.79),
)


@dataclass(frozen=True)
class EMShape:
    """Per-shower Gamma profile parameters: shape ``a`` and depth of maximum ``T`` (X0)."""

    shape: FloatArray
    t_max: FloatArray


def _ln_y(energy_mev: FloatArray, e_critical_mev: float) -> FloatArray:
    return np.log(np.clip(energy_mev, *_ENERGY_RANGE_MEV) / e_critical_mev)


def sample_em_shape(energy_mev: FloatArray, rng: np.random.Generator, params: GFlashParams = HOMOGENEOUS) -> EMShape:
    """Draw correlated, fluctuating (a, T) for showers of the given energies."""
    ln_y = _ln_y(energy_mev, params.e_critical_mev)
    z_t, z_free = rng.standard_normal((2, energy_mev.size))
    rho = 0.705 - 0.023 * ln_y
    z_a = rho * z_t + np.sqrt(1.0 - rho**2) * z_free
    return _em_shape(ln_y, z_t, z_a, params)


def mean_em_shape(energy_mev: FloatArray, params: GFlashParams = HOMOGENEOUS) -> EMShape:
    """(a, T) at the centre of their distributions: every shower of an energy alike (no fluctuation)."""
    zeros = np.zeros(energy_mev.size)
    return _em_shape(_ln_y(energy_mev, params.e_critical_mev), zeros, zeros, params)


def _em_shape(ln_y: FloatArray, z_t: FloatArray, z_a: FloatArray, params: GFlashParams) -> EMShape:
    (t0, t1), (a0, a1) = params.ln_t_width, params.ln_a_width
    ln_t = np.log(ln_y - params.t_max_offset) + z_t / (t0 + t1 * ln_y)
    ln_a = np.log(0.81 + params.ln_a_slope * ln_y) + z_a / (a0 + a1 * ln_y)
    shape = np.maximum(np.exp(ln_a), MIN_SHAPE)
    t_max = np.minimum(np.clip(np.exp(ln_t), *T_MAX_RANGE_X0), (shape - 1.0) / MIN_RATE_PER_X0)
    return EMShape(shape=shape, t_max=t_max)


@dataclass(frozen=True)
class RadialProfile:
    """Core and tail radii (mm) and core probability, shaped like the ``tau`` they were computed at."""

    core_mm: FloatArray
    tail_mm: FloatArray
    core_prob: FloatArray


def em_radial(energy_mev: FloatArray, tau: FloatArray, params: GFlashParams = HOMOGENEOUS) -> RadialProfile:
    """GFlash radial parameters at relative depth ``tau``; ``energy_mev`` broadcasts against it."""
    z_eff = params.z_eff
    ln_e = np.log(np.clip(energy_mev, *_ENERGY_RANGE_MEV) / 1000.0)
    core = 0.0251 + 0.00319 * ln_e + (0.1162 - 0.000381 * z_eff) * tau
    k1, k2, k3, k4 = 0.659 - 0.00309 * z_eff, 0.645, -2.59, 0.3585 + 0.0421 * ln_e
    tail = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    x = ((0.401 + 0.00187 * z_eff) - tau) / (1.313 - 0.0686 * ln_e)
    prob = (2.632 - 0.00094 * z_eff) * np.exp(x - np.exp(x))
    return RadialProfile(
        core_mm=np.clip(core, 0.02, 5.0) * params.moliere_mm,
        tail_mm=np.clip(tail, 0.02, 5.0) * params.moliere_mm,
        core_prob=np.clip(prob, 0.05, 0.95),
    )
