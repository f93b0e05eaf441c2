"""Calorimeter data: the dataset registry, geometries, HDF5 I/O, features and the stand-in shower generators."""

from caloflow.data.datasets import (
    DATASET_NAMES,
    DATASETS,
    Dataset,
    DatasetError,
    dataset,
    ds1_dataset,
    ds1_energy_multiset,
    ds1_particles,
    geometry_for,
)
from caloflow.data.geometry import Geometry, Layer
from caloflow.data.grid_geometry import GridGeometry

__all__ = [
    "DATASETS",
    "DATASET_NAMES",
    "Dataset",
    "DatasetError",
    "Geometry",
    "GridGeometry",
    "Layer",
    "dataset",
    "ds1_dataset",
    "ds1_energy_multiset",
    "ds1_particles",
    "geometry_for",
]
