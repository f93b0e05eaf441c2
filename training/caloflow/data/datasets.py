"""The one registry of datasets: geometry, particle, file layout, incident energies, threshold, official files.

Names: ``ds1-photon``, ``ds1-pion`` (CaloChallenge Dataset 1, ATLAS), ``ds2-electron``, ``ds3-electron``
(CaloChallenge Datasets 2 and 3, the Par04 Si-W calorimeter) and ``ild-photon`` (the ILD Si-W ECAL barrel,
the "Getting High" / L2LFlows photon set). ``photon`` and ``pion`` are the short forms of the Dataset 1
names (``--particle photon|pion`` everywhere). Everything else in the project asks this module; nothing
outside it spells a particle, a voxel count or a layer count.

Sources (the design notes in ``shared/design``, which the product does not need at run time):

* Dataset 1: ``binning_dataset_1_{photons,pions}.xml``; 15 energies 2^8 ... 2^22 MeV with fixed counts;
  threshold 1 MeV (``evaluate.py``'s DS1 cut); Zenodo 10.5281/zenodo.8099322.
* Stored dtype of stand-in voxel energies: float64 for Dataset 1 (as its official files), float32 for the others
  (the DS2/3 ``showers`` dtype is not documented - a DS3 file is quoted as 8 GB, i.e. float32 - and the ILD
  originals are probably float64; readers accept either, and float32 halves the write time and the size).
* Datasets 2 and 3: ``binning_dataset_{2,3}.xml`` - 45 identical layers of (16 alpha x 9 r) and
  (50 alpha x 18 r), radial pitch 4.65 / 2.325 mm to 41.85 mm; electrons (pid 11); E_inc log-uniform in
  1 GeV - 1 TeV; threshold 0.5 keV / 0.033 = 0.01515 MeV; Zenodo 10.5281/zenodo.6366270 (DS2) and
  10.5281/zenodo.6366323 (DS3); ``_1`` trains, ``_2`` is the DS2 reference, ``_3`` + ``_4`` joined the DS3 one.
* ILD: 30 layers of 30 x 30 cells of 5.088333 mm; one tungsten plate in front of each layer, 2.1 mm for the
  first 20 and 4.2 mm for the last 10 (X0 of W 3.504 mm: 0.6 ... 24.0 X0); sensitive layers at y = 1811.34 mm
  + gaps alternating 3.125 / 9.345 mm (layers 0-19) and 11.445 / 5.225 mm (19-29); photons, E_inc uniform
  10-100 GeV; cell threshold 0.1 MeV (half a MIP); file group ``30x30``: ``energy`` (N, 1) GeV, ``layers``
  (N, 30, 30, 30) MeV. Only a small part of the data is public (Zenodo record 3826103; file names and counts
  not verified).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from caloflow.data.geometry import Geometry, Layer
from caloflow.data.grid_geometry import GridGeometry
from caloflow.errors import CaloflowError

__all__ = [
    "DATASETS",
    "DATASET_NAMES",
    "DS1_PHOTON_GEOMETRY",
    "DS1_PION_GEOMETRY",
    "DS2_GEOMETRY",
    "DS3_GEOMETRY",
    "ILD_GEOMETRY",
    "Dataset",
    "DatasetError",
    "EnergySpec",
    "FileLayout",
    "OfficialFile",
    "dataset",
    "dataset_for_voxels",
    "ds1_dataset",
    "ds1_energy_multiset",
    "ds1_particles",
    "geometry_for",
]

FileLayout = Literal["calochallenge", "ild"]
EnergyKind = Literal["discrete", "log-uniform", "uniform"]
AnyGeometry = Geometry | GridGeometry


class DatasetError(CaloflowError, ValueError):
    """An unknown dataset name, or a dataset that does not fit what was asked of it."""


@dataclass(frozen=True)
class EnergySpec:
    """How a dataset's incident energies are distributed (MeV)."""

    kind: EnergyKind
    min_mev: float
    max_mev: float
    counts: Mapping[float, int] = field(default_factory=dict)  # "discrete": showers per energy in one file

    def sample(self, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
        """``n`` energies drawn from a continuous distribution (not for ``discrete``: use ``multiset``)."""
        if self.kind == "log-uniform":
            return np.exp(rng.uniform(np.log(self.min_mev), np.log(self.max_mev), size=n))
        if self.kind == "uniform":
            return rng.uniform(self.min_mev, self.max_mev, size=n)
        raise DatasetError("a discrete energy spectrum is a fixed multiset: use multiset(), not sample()")

    def multiset(self, scale: float = 1.0) -> NDArray[np.float64]:
        """The discrete energies, each count times ``scale`` (at least one each), sorted ascending."""
        if self.kind != "discrete":
            raise DatasetError(f"a {self.kind} energy spectrum has no multiset")
        if not np.isfinite(scale) or scale <= 0:
            raise DatasetError(f"scale must be a positive finite number, got {scale}")
        parts = [np.full(max(1, round(n * scale)), e, dtype=np.float64) for e, n in sorted(self.counts.items())]
        return np.concatenate(parts)

    def contains(self, energies_mev: NDArray[np.float64], *, rtol: float = 1e-6) -> NDArray[np.bool_]:
        """Which energies lie in the dataset's range (discrete: equal to one of its values)."""
        if self.kind == "discrete":
            values = np.asarray(sorted(self.counts), dtype=np.float64)
            return np.asarray(np.isclose(energies_mev[..., None], values, rtol=rtol, atol=0.0).any(axis=-1))
        lo, hi = self.min_mev * (1 - rtol), self.max_mev * (1 + rtol)
        return (energies_mev >= lo) & (energies_mev <= hi)

    def describe(self) -> str:
        if self.kind == "discrete":
            return f"{len(self.counts)} values {self.min_mev:g} ... {self.max_mev:g} MeV"
        return f"{self.kind} {self.min_mev / 1e3:g}-{self.max_mev / 1e3:g} GeV"


@dataclass(frozen=True)
class OfficialFile:
    """One published file of a dataset."""

    name: str
    role: Literal["training", "evaluation"]
    n_showers: int | None  # None where the count could not be verified


@dataclass(frozen=True)
class Dataset:
    """Everything the project knows about one dataset."""

    name: str
    title: str
    particle: str
    geometry: AnyGeometry
    layout: FileLayout
    energies: EnergySpec
    threshold_mev: float  # voxels below it are zero in the data and cut before evaluation
    showers_per_file: int  # the official file size (stand-in ``--scale 1``)
    doi: str
    official_files: tuple[OfficialFile, ...]
    shower_dtype: str = "float32"  # how stand-in files store voxel energies (incident energies: float64)
    short_names: tuple[str, ...] = ()  # "photon" / "pion" for Dataset 1
    official_note: str = ""
    evaluation_reference: str = ""  # how the official evaluation reference is made from the files

    @property
    def pid(self) -> int:
        return self.geometry.pid

    @property
    def geometry_kind(self) -> str:
        return "cartesian" if isinstance(self.geometry, GridGeometry) else "cylindrical"

    @property
    def n_voxels(self) -> int:
        return self.geometry.n_voxels

    @property
    def n_layers(self) -> int:
        return self.geometry.n_layers

    @property
    def shower_shape(self) -> tuple[int, ...]:
        """One shower's natural shape: ``(V,)`` for CaloChallenge files, ``(layers, x, z)`` for a grid."""
        if isinstance(self.geometry, GridGeometry):
            return self.geometry.shower_shape
        return (self.geometry.n_voxels,)

    @property
    def cylindrical_geometry(self) -> Geometry:
        """The geometry, for code that handles the CaloChallenge cylindrical binning only."""
        if not isinstance(self.geometry, Geometry):
            raise DatasetError(f"{self.name} has a {self.geometry_kind} geometry, not a CaloChallenge binning")
        return self.geometry

    @property
    def is_ds1(self) -> bool:
        return bool(self.short_names)

    def file_energies(self, scale: float, rng: np.random.Generator) -> NDArray[np.float64]:
        """Incident energies (MeV) of a file ``scale`` times the official size, in random (file) order.

        Dataset 1: the official multiset, each count scaled, shuffled; the others: ``round(scale * showers per
        file)`` draws (at least one) from the continuous spectrum.
        """
        if not np.isfinite(scale) or scale <= 0:
            raise DatasetError(f"scale must be a positive finite number, got {scale}")
        if self.energies.kind == "discrete":
            return rng.permutation(self.energies.multiset(scale))
        return self.energies.sample(max(1, round(self.showers_per_file * scale)), rng)

    def manifest_fields(self) -> dict[str, object]:
        """What a model manifest records about its dataset (the server routes on these, knowing no dataset)."""
        return {
            "dataset": self.name,
            "dataset_aliases": list(self.short_names),
            "geometry_kind": self.geometry_kind,
            "shower_shape": list(self.shower_shape),
            "file_layout": self.layout,
        }


# ------------------------------------------------------------------------------------------ geometries

_EM_PRESAMPLER = Layer(0, (0, 5, 10, 30, 50, 100, 200, 400, 600), 1)
_EM_BACK = Layer(3, (0, 50, 100, 200, 400, 600), 1)
_TILE_EDGES = (0, 10, 20, 30, 50, 80, 100, 130, 160, 200, 250, 300, 350, 400)

DS1_PHOTON_GEOMETRY = Geometry(
    name="photon",
    pid=22,
    layers=(
        _EM_PRESAMPLER,
        Layer(1, (0, 2, 4, 6, 8, 10, 12, 15, 20, 30, 40, 50, 70, 90, 120, 150, 200), 10),
        Layer(2, (0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 130, 160, 200, 250, 300, 350, 400), 10),
        _EM_BACK,
        Layer(12, (0, 100, 200, 400, 1000, 2000), 1),
    ),
)

DS1_PION_GEOMETRY = Geometry(
    name="pion",
    pid=211,
    layers=(
        _EM_PRESAMPLER,
        Layer(1, (0, 1, 4, 7, 10, 15, 30, 50, 90, 150, 200), 10),
        Layer(2, (0, 5, 10, 20, 30, 50, 80, 130, 200, 300, 400), 10),
        _EM_BACK,
        Layer(12, (*_TILE_EDGES, 1000, 2000), 10),
        Layer(13, (*_TILE_EDGES, 600, 1000, 2000), 10),
        Layer(14, (0, 50, 100, 150, 200, 250, 300, 400, 600, 1000, 2000), 1),
    ),
)


def _uniform_cylinder(n_layers: int, n_r: int, r_step_mm: float, n_alpha: int) -> Geometry:
    """Identical layers 0 ... n_layers-1, radial edges k * r_step (rounded as the XML writes them)."""
    edges = tuple(round(k * r_step_mm, 6) for k in range(n_r + 1))
    return Geometry(name="electron", pid=11, layers=tuple(Layer(i, edges, n_alpha) for i in range(n_layers)))


DS2_GEOMETRY = _uniform_cylinder(45, 9, 4.65, 16)
DS3_GEOMETRY = _uniform_cylinder(45, 18, 2.325, 50)


def _ild_layer_positions_mm() -> tuple[float, ...]:
    gaps = [3.125 if i % 2 == 0 else 9.345 for i in range(19)] + [11.445 if i % 2 == 0 else 5.225 for i in range(10)]
    return tuple(round(p, 4) for p in itertools.accumulate(gaps, initial=1811.34))


ILD_GEOMETRY = GridGeometry(
    name="photon",
    pid=22,
    n_layers=30,
    n_x=30,
    n_z=30,
    cell_mm=5.088333,
    absorber_mm=(2.1,) * 20 + (4.2,) * 10,
    absorber_x0_mm=3.504,
    layer_position_mm=_ild_layer_positions_mm(),
)

# ------------------------------------------------------------------------------------------ energies


def _ds1_counts(particle: str) -> dict[float, int]:
    counts = {float(2**k): 10_000 for k in range(8, 19)}
    counts.update({float(2**19): 5_000, float(2**20): 3_000, float(2**21): 2_000, float(2**22): 1_000})
    if particle == "pion":
        counts[float(2**18)] = 9_800
    return counts


def _ds1_energies(particle: str) -> EnergySpec:
    return EnergySpec("discrete", float(2**8), float(2**22), _ds1_counts(particle))


_ELECTRON_ENERGIES = EnergySpec("log-uniform", 1e3, 1e6)
_ILD_ENERGIES = EnergySpec("uniform", 1e4, 1e5)

# ------------------------------------------------------------------------------------------ registry

_DS1_DOI = "10.5281/zenodo.8099322"


def _ds1(particle: str, geometry: Geometry) -> Dataset:
    n = sum(_ds1_counts(particle).values())
    files = (
        OfficialFile(f"dataset_1_{particle}s_1.hdf5", "training", n),
        OfficialFile(f"dataset_1_{particle}s_2.hdf5", "evaluation", n),
    )
    return Dataset(
        name=f"ds1-{particle}",
        title=f"CaloChallenge Dataset 1 {particle}s (ATLAS)",
        particle=particle,
        geometry=geometry,
        layout="calochallenge",
        energies=_ds1_energies(particle),
        threshold_mev=1.0,
        showers_per_file=n,
        doi=_DS1_DOI,
        official_files=files,
        shower_dtype="float64",
        short_names=(particle,),
        official_note="_1 trains (first 70 % training, last 30 % model selection, in file order)",
        evaluation_reference=files[1].name,
    )


def _par04(number: int, geometry: Geometry, doi: str, files: tuple[OfficialFile, ...], note: str, ref: str) -> Dataset:
    """Dataset 2 or 3: Par04 Si-W electrons, the same detector binned finer for Dataset 3."""
    return Dataset(
        name=f"ds{number}-electron",
        title=f"CaloChallenge Dataset {number} electrons (Par04 Si-W, {geometry.n_voxels:_} voxels)".replace("_", " "),
        particle="electron",
        geometry=geometry,
        layout="calochallenge",
        energies=_ELECTRON_ENERGIES,
        threshold_mev=0.5e-3 / 0.033,  # 0.5 keV of silicon energy over the 0.033 sampling fraction
        showers_per_file=files[0].n_showers or 0,
        doi=doi,
        official_files=files,
        official_note=note,
        evaluation_reference=ref,
    )


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        _ds1("photon", DS1_PHOTON_GEOMETRY),
        _ds1("pion", DS1_PION_GEOMETRY),
        _par04(
            2,
            DS2_GEOMETRY,
            "10.5281/zenodo.6366270",
            (
                OfficialFile("dataset_2_1.hdf5", "training", 100_000),
                OfficialFile("dataset_2_2.hdf5", "evaluation", 100_000),
            ),
            "_1 trains, _2 is the evaluation reference",
            "dataset_2_2.hdf5",
        ),
        _par04(
            3,
            DS3_GEOMETRY,
            "10.5281/zenodo.6366323",
            tuple(
                OfficialFile(f"dataset_3_{k}.hdf5", "training" if k < 3 else "evaluation", 50_000) for k in range(1, 5)
            ),
            "_1 and _2 train; 8.1 GB each in float32: read in chunks",
            "dataset_3_3.hdf5 and dataset_3_4.hdf5 joined (100 000 showers)",
        ),
        Dataset(
            name="ild-photon",
            title="ILD Si-W ECAL barrel photons (30 x 30 x 30 cells)",
            particle="photon",
            geometry=ILD_GEOMETRY,
            layout="ild",
            energies=_ILD_ENERGIES,
            threshold_mev=0.1,
            showers_per_file=100_000,
            doi="10.5281/zenodo.3826103",
            official_files=(),
            official_note=(
                "only a small part of the ~950k training showers is public (Zenodo record 3826103, inferred DOI); "
                "file names and counts could not be verified here"
            ),
            evaluation_reference="an independent file of the same simulation",
        ),
    )
}
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
_ALIASES: dict[str, str] = {alias: d.name for d in DATASETS.values() for alias in d.short_names}


def dataset(name: str) -> Dataset:
    """The dataset called ``name`` (or its short form: ``photon`` / ``pion`` for Dataset 1)."""
    key = _ALIASES.get(name, name)
    try:
        return DATASETS[key]
    except KeyError:
        known = ", ".join((*DATASET_NAMES, *_ALIASES))
        raise DatasetError(f"unknown dataset {name!r}; expected one of {known}") from None


def ds1_dataset(particle: str) -> Dataset:
    """The Dataset 1 entry of ``particle`` (``photon`` or ``pion``)."""
    if particle not in _ALIASES:
        raise DatasetError(f"unknown particle {particle!r}; expected one of {sorted(_ALIASES)}")
    return DATASETS[_ALIASES[particle]]


def dataset_for_voxels(n_voxels: int, layout: FileLayout = "calochallenge") -> list[Dataset]:
    """The datasets of ``layout`` whose showers have ``n_voxels`` voxels (to name the one a file fits)."""
    return [d for d in DATASETS.values() if d.layout == layout and d.n_voxels == n_voxels]


def ds1_particles() -> tuple[str, ...]:
    """The particles of Dataset 1, in registry order (``photon``, ``pion``)."""
    return tuple(_ALIASES)


def geometry_for(name: str) -> AnyGeometry:
    """The geometry of the dataset ``name`` (or its short form)."""
    return dataset(name).geometry


def ds1_energy_multiset(particle: str, scale: float = 1.0) -> NDArray[np.float64]:
    """The Dataset 1 incident energies (MeV) of ``particle``, sorted ascending, each count times ``scale``."""
    return ds1_dataset(particle).energies.multiset(scale)
