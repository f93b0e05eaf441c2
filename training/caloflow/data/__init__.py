"""CaloChallenge data: geometry, HDF5 I/O, high-level features and the stand-in shower generator."""

from caloflow.data.energies import DS1_ENERGY_COUNTS, ds1_energy_multiset
from caloflow.data.geometry import PARTICLES, PHOTON, PION, Geometry, Layer, geometry_for

__all__ = [
    "DS1_ENERGY_COUNTS",
    "PARTICLES",
    "PHOTON",
    "PION",
    "Geometry",
    "Layer",
    "ds1_energy_multiset",
    "geometry_for",
]
