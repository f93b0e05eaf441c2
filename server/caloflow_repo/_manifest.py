"""``manifest.json``: what one exported model version is, how it was made, and the digest of every artifact."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from caloflow_repo._errors import ArtifactNotFoundError, InvalidNameError, ManifestError
from caloflow_repo._fields import (
    check_bool,
    check_int,
    check_mapping,
    check_number,
    check_sequence,
    check_sha256,
    check_str,
    fail,
    require_keys,
)
from caloflow_repo._geometry import check_geometry
from caloflow_repo._names import validate_filename, validate_model_name
from caloflow_repo._precision import check_precision_gates

SCHEMA_VERSION = 1
MANIFEST_FILENAME = "manifest.json"
GEOMETRY_KINDS = ("cylindrical", "cartesian")
FILE_LAYOUTS = ("calochallenge", "ild")
# Added after schema version 1 was first written: a manifest without them (the committed demo models) is read
# as a CaloChallenge Dataset 1 model of its particle (``legacy_dataset_fields``).
DATASET_FIELDS = ("dataset", "dataset_aliases", "geometry_kind", "shower_shape", "file_layout")
INPUT_ENERGY = "INCIDENT_ENERGY"
INPUT_NOISE = "NOISE"
OUTPUT_SHOWERS = "SHOWERS"
TRAINING_KEYS = ("preset", "seed", "data_sha256")
_FORMAT = re.compile(r"[a-z][a-z0-9_]{0,31}")
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the exported sampler; ``shape[0]`` is -1, the batch dimension."""

    name: str
    dtype: str
    shape: tuple[int, ...]


def standard_inputs(noise_dim: int) -> tuple[TensorSpec, TensorSpec]:
    """The sampler's inputs: incident energies (MeV) ``[-1, 1]`` and standard-normal noise ``[-1, noise_dim]``."""
    return (TensorSpec(INPUT_ENERGY, "float32", (-1, 1)), TensorSpec(INPUT_NOISE, "float32", (-1, noise_dim)))


def standard_outputs(n_voxels: int) -> tuple[TensorSpec]:
    """The sampler's output: voxel energies (MeV) ``[-1, n_voxels]``."""
    return (TensorSpec(OUTPUT_SHOWERS, "float32", (-1, n_voxels)),)


@dataclass(frozen=True)
class ArtifactInfo:
    """One exported file of a version. ``format``: "onnx", "fast_onnx", "torchscript", "torch_export", ..."""

    filename: str
    format: str
    sha256: str
    size_bytes: int
    format_version: str

    def validate(self, field_name: str = "artifacts[]") -> None:
        try:
            validate_filename(self.filename)
        except InvalidNameError as exc:
            fail(f"{field_name}.filename", str(exc))
        if self.filename == MANIFEST_FILENAME:
            fail(f"{field_name}.filename", f"must not be {MANIFEST_FILENAME!r}")
        if not isinstance(self.format, str) or not _FORMAT.fullmatch(self.format):
            fail(f"{field_name}.format", f"must be a lower-case identifier such as 'onnx', got {self.format!r}")
        check_sha256(self.sha256, f"{field_name}.sha256")
        check_int(self.size_bytes, f"{field_name}.size_bytes")
        check_str(self.format_version, f"{field_name}.format_version", nonempty=True)


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """The validated description of one model version (``<model>/<version>/manifest.json``)."""

    schema_version: int = SCHEMA_VERSION
    model: str
    version: int
    particle: str
    description: str
    standin: bool
    geometry: dict[str, Any]
    energy_range_mev: tuple[float, float]
    noise_dim: int
    n_voxels: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing: dict[str, Any]
    training: dict[str, Any]
    artifacts: tuple[ArtifactInfo, ...]
    created_utc: str
    producer: str
    extra: dict[str, Any] = field(default_factory=dict)
    # What the server routes on, knowing no dataset: left empty, they take the legacy (Dataset 1) values.
    dataset: str = ""
    dataset_aliases: tuple[str, ...] | None = None
    geometry_kind: str = ""
    shower_shape: tuple[int, ...] = ()
    file_layout: str = ""

    def __post_init__(self) -> None:
        for name, value in legacy_dataset_fields(self.particle, self.n_voxels, self.geometry).items():
            current = getattr(self, name)
            if current is None or (name != "dataset_aliases" and not current):
                object.__setattr__(self, name, value)
        for name in ("dataset_aliases", "shower_shape"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def total_size_bytes(self) -> int:
        return sum(artifact.size_bytes for artifact in self.artifacts)

    def artifact(self, filename: str) -> ArtifactInfo:
        for artifact in self.artifacts:
            if artifact.filename == filename:
                return artifact
        raise ArtifactNotFoundError(f"model {self.model!r} version {self.version} has no artifact {filename!r}")

    def validate(self) -> None:
        """Raise ManifestError naming the first missing, ill-typed or inconsistent field."""
        _validate_identity(self)
        n_voxels = check_geometry(self.geometry)
        _validate_shapes(self, n_voxels)
        _validate_dataset(self)
        check_mapping(self.preprocessing, "preprocessing")
        _validate_training(self.training)
        _validate_artifacts(self.artifacts)
        _validate_created_utc(self.created_utc)
        check_str(self.producer, "producer", nonempty=True)
        check_mapping(self.extra, "extra")
        check_precision_gates(self.extra)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Build and validate a manifest from parsed JSON; ManifestError on any missing or unknown field."""
        _check_top_level(data)
        values = dict(data)
        values["energy_range_mev"] = tuple(check_sequence(data["energy_range_mev"], "energy_range_mev"))
        values["inputs"] = _tensors_from_json(data["inputs"], "inputs")
        values["outputs"] = _tensors_from_json(data["outputs"], "outputs")
        values["artifacts"] = _artifacts_from_json(data["artifacts"])
        for name in ("dataset_aliases", "shower_shape"):
            if name in data:
                values[name] = tuple(check_sequence(data[name], name))
        manifest = cls(**values)
        manifest.validate()
        return manifest

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


MANIFEST_FIELDS = tuple(f.name for f in dataclasses.fields(Manifest))


def legacy_dataset_fields(particle: Any, n_voxels: Any, geometry: Any) -> dict[str, Any]:
    """The dataset fields of a manifest written before they existed: ``ds1-<particle>``, aliases ``[particle]``,
    the geometry's kind (cylindrical when unstated), one flat shower of ``n_voxels``, the CaloChallenge layout."""
    kind = geometry.get("kind", "cylindrical") if isinstance(geometry, dict) else "cylindrical"
    return {
        "dataset": f"ds1-{particle}",
        "dataset_aliases": (particle,),
        "geometry_kind": kind,
        "shower_shape": (n_voxels,),
        "file_layout": "calochallenge",
    }


def utc_now_iso() -> str:
    """The current time for ``created_utc``: ISO 8601, seconds, with a ``Z`` suffix."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _check_top_level(data: Any) -> None:
    if not isinstance(data, dict):
        raise ManifestError(f"manifest must be a JSON object, got {type(data).__name__}")
    if "schema_version" not in data:
        fail("schema_version", "is missing")
    if isinstance(data["schema_version"], bool) or data["schema_version"] != SCHEMA_VERSION:
        fail("schema_version", f"is {data['schema_version']!r}; this reader supports only {SCHEMA_VERSION}")
    for name in MANIFEST_FIELDS:
        if name not in data and name not in DATASET_FIELDS:
            fail(name, "is missing")
    for name in data:
        if name not in MANIFEST_FIELDS:
            fail(name, "is not a field of schema version 1 (put additions under 'extra')")


def _tensors_from_json(value: Any, field_name: str) -> tuple[TensorSpec, ...]:
    specs = []
    for i, item in enumerate(check_sequence(value, field_name)):
        entry = check_mapping(item, f"{field_name}[{i}]")
        require_keys(entry, ("name", "dtype", "shape"), f"{field_name}[{i}]")
        shape = check_sequence(entry["shape"], f"{field_name}[{i}].shape")
        specs.append(TensorSpec(entry["name"], entry["dtype"], tuple(shape)))
    return tuple(specs)


def _artifacts_from_json(value: Any) -> tuple[ArtifactInfo, ...]:
    keys = tuple(f.name for f in dataclasses.fields(ArtifactInfo))
    artifacts = []
    for i, item in enumerate(check_sequence(value, "artifacts")):
        entry = check_mapping(item, f"artifacts[{i}]")
        require_keys(entry, keys, f"artifacts[{i}]")
        artifacts.append(ArtifactInfo(**{key: entry[key] for key in keys}))
    return tuple(artifacts)


def _validate_identity(manifest: Manifest) -> None:
    if isinstance(manifest.schema_version, bool) or manifest.schema_version != SCHEMA_VERSION:
        fail("schema_version", f"is {manifest.schema_version!r}; this reader supports only {SCHEMA_VERSION}")
    try:
        validate_model_name(manifest.model)
    except InvalidNameError as exc:
        fail("model", str(exc))
    check_int(manifest.version, "version", minimum=1)
    _check_name(manifest.particle, "particle")
    check_str(manifest.description, "description")
    check_bool(manifest.standin, "standin")


def _validate_shapes(manifest: Manifest, geometry_voxels: int) -> None:
    low, high = _energy_range(manifest.energy_range_mev)
    if not 0 < low < high:
        fail("energy_range_mev", f"must be [min, max] with 0 < min < max, got {[low, high]}")
    noise_dim = check_int(manifest.noise_dim, "noise_dim", minimum=1)
    n_voxels = check_int(manifest.n_voxels, "n_voxels", minimum=1)
    if n_voxels != geometry_voxels:
        fail("n_voxels", f"is {n_voxels} but geometry.n_voxels is {geometry_voxels}")
    _check_tensors(manifest.inputs, standard_inputs(noise_dim), "inputs")
    _check_tensors(manifest.outputs, standard_outputs(n_voxels), "outputs")


def _check_name(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        fail(field_name, f"must be a lower-case name such as 'photon' or 'ds2-electron', got {value!r}")
    return value


def _validate_dataset(manifest: Manifest) -> None:
    """The dataset fields: names, a known geometry kind and file layout, and a shape holding ``n_voxels`` (on a
    Cartesian grid: the grid's own ``geometry.shape``, the cells the artifact's rows hold)."""
    _check_name(manifest.dataset, "dataset")
    aliases = check_sequence(manifest.dataset_aliases, "dataset_aliases")
    for i, alias in enumerate(aliases):
        _check_name(alias, f"dataset_aliases[{i}]")
    if manifest.geometry_kind not in GEOMETRY_KINDS:
        fail("geometry_kind", f"must be one of {list(GEOMETRY_KINDS)}, got {manifest.geometry_kind!r}")
    stated = manifest.geometry.get("kind", "cylindrical")
    if manifest.geometry_kind != stated:
        fail("geometry_kind", f"is {manifest.geometry_kind!r} but geometry.kind is {stated!r}")
    if manifest.file_layout not in FILE_LAYOUTS:
        fail("file_layout", f"must be one of {list(FILE_LAYOUTS)}, got {manifest.file_layout!r}")
    shape = check_sequence(manifest.shower_shape, "shower_shape", min_length=1)
    dims = [check_int(d, f"shower_shape[{i}]", minimum=1) for i, d in enumerate(shape)]
    if math.prod(dims) != manifest.n_voxels:
        fail("shower_shape", f"is {dims}, which holds {math.prod(dims)} voxels, not n_voxels {manifest.n_voxels}")
    grid = manifest.geometry.get("shape") if stated == "cartesian" else None
    if grid is not None and dims != list(grid):
        fail("shower_shape", f"is {dims}, but the grid the model covers (geometry.shape) is {list(grid)}")


def _energy_range(value: Any) -> tuple[float, float]:
    bounds = check_sequence(value, "energy_range_mev", min_length=2)
    if len(bounds) != 2:
        fail("energy_range_mev", f"must hold exactly [min, max], got {list(bounds)}")
    return check_number(bounds[0], "energy_range_mev"), check_number(bounds[1], "energy_range_mev")


def _check_tensors(value: Any, expected: tuple[TensorSpec, ...], field_name: str) -> None:
    specs = check_sequence(value, field_name)
    if tuple(specs) != expected:
        want = [f"{s.name} {s.dtype} {list(s.shape)}" for s in expected]
        got = [f"{s.name} {s.dtype} {list(s.shape)}" if isinstance(s, TensorSpec) else repr(s) for s in specs]
        fail(field_name, f"must be {want} (the exported sampler's signature), got {got}")


def _validate_training(value: Any) -> None:
    training = check_mapping(value, "training")
    require_keys(training, TRAINING_KEYS, "training")
    check_str(training["preset"], "training.preset", nonempty=True)
    check_int(training["seed"], "training.seed")
    check_sha256(training["data_sha256"], "training.data_sha256")


def _validate_artifacts(value: Any) -> None:
    artifacts = check_sequence(value, "artifacts", min_length=1)
    seen: set[str] = set()
    for i, artifact in enumerate(artifacts):
        if not isinstance(artifact, ArtifactInfo):
            fail(f"artifacts[{i}]", f"must be an ArtifactInfo, got {type(artifact).__name__}")
        artifact.validate(f"artifacts[{i}]")
        if artifact.filename in seen:
            fail(f"artifacts[{i}].filename", f"repeats {artifact.filename!r}")
        seen.add(artifact.filename)


def _validate_created_utc(value: Any) -> None:
    text = check_str(value, "created_utc", nonempty=True)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        fail("created_utc", f"must be an ISO 8601 time, got {text!r}")
    offset = moment.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        fail("created_utc", f"must be in UTC with an explicit 'Z' or '+00:00', got {text!r}")
