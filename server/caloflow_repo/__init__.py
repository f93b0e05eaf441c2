"""The CaloFlow model repository format: the contract between the offline exporter and the server.

Standard library only, so that both ``caloflow`` (training, export) and ``caloflow_server`` can import it.
Layout of a repository (Triton-compatible)::

    <root>/<model>/config.pbtxt          Triton config of the default version (ONNX artifact)
    <root>/<model>/default               the default version number, for one-step rollback
    <root>/<model>/<version>/manifest.json
    <root>/<model>/<version>/model.onnx | model.fast.onnx | model.pt | model.pt2 ...
    <root>/<model>/<version>/quality.json, quality.sha256   the optional quality report and its checksum
"""

from __future__ import annotations

from caloflow_repo._checksums import sha256_file
from caloflow_repo._errors import (
    ArtifactNotFoundError,
    ChecksumError,
    InvalidNameError,
    ManifestError,
    ModelNotFoundError,
    RepositoryError,
    VersionNotFoundError,
)
from caloflow_repo._manifest import (
    DATASET_FIELDS,
    FILE_LAYOUTS,
    GEOMETRY_KINDS,
    INPUT_ENERGY,
    INPUT_NOISE,
    MANIFEST_FILENAME,
    OUTPUT_SHOWERS,
    SCHEMA_VERSION,
    ArtifactInfo,
    Manifest,
    TensorSpec,
    legacy_dataset_fields,
    standard_inputs,
    standard_outputs,
    utc_now_iso,
)
from caloflow_repo._names import parse_version, validate_filename, validate_model_name
from caloflow_repo._precision import (
    CPU_CLASS,
    DEFAULT_PRECISION,
    GPU_ONLY_PRECISIONS,
    PRECISION_GATES_KEY,
    PRECISIONS,
    check_precision_gates,
    default_precision,
    enabled_precisions,
    gpu_class,
)
from caloflow_repo._quality import QUALITY_CHECKSUM_FILENAME, QUALITY_FILENAME, QualityNotFoundError
from caloflow_repo._repository import CONFIG_FILENAME, DEFAULT_POINTER, ModelRepository
from caloflow_repo._triton_config import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_QUEUE_DELAY_US, render_config_pbtxt

__all__ = [
    "CONFIG_FILENAME",
    "CPU_CLASS",
    "DATASET_FIELDS",
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_QUEUE_DELAY_US",
    "DEFAULT_POINTER",
    "DEFAULT_PRECISION",
    "FILE_LAYOUTS",
    "GEOMETRY_KINDS",
    "GPU_ONLY_PRECISIONS",
    "INPUT_ENERGY",
    "INPUT_NOISE",
    "MANIFEST_FILENAME",
    "OUTPUT_SHOWERS",
    "PRECISIONS",
    "PRECISION_GATES_KEY",
    "QUALITY_CHECKSUM_FILENAME",
    "QUALITY_FILENAME",
    "SCHEMA_VERSION",
    "ArtifactInfo",
    "ArtifactNotFoundError",
    "ChecksumError",
    "InvalidNameError",
    "Manifest",
    "ManifestError",
    "ModelNotFoundError",
    "ModelRepository",
    "QualityNotFoundError",
    "RepositoryError",
    "TensorSpec",
    "VersionNotFoundError",
    "check_precision_gates",
    "default_precision",
    "enabled_precisions",
    "gpu_class",
    "legacy_dataset_fields",
    "parse_version",
    "render_config_pbtxt",
    "sha256_file",
    "standard_inputs",
    "standard_outputs",
    "utc_now_iso",
    "validate_filename",
    "validate_model_name",
]
