"""The repository format without a repository: names, versions, manifests and the Triton config text."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from test_repo_support import make_manifest

import caloflow_repo
from caloflow_repo import (
    ArtifactInfo,
    InvalidNameError,
    Manifest,
    ManifestError,
    TensorSpec,
    parse_version,
    render_config_pbtxt,
    validate_filename,
    validate_model_name,
)

SHA = "0123456789abcdef" * 4


def published(**changes: object) -> Manifest:
    """A manifest as it lies in a repository: checksums filled in."""
    artifacts = (
        ArtifactInfo("model.onnx", "onnx", SHA, 3300, "opset 17"),
        ArtifactInfo("model.pt", "torchscript", SHA, 3600, "torch 2.13.0"),
    )
    return make_manifest(**{"artifacts": artifacts, **changes})


# ---------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["caloflow_photon", "a", "pion-v2.1", "0model", "x" * 64])
def test_valid_model_names(name: str) -> None:
    assert validate_model_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "../x", "a/b", "a\\b", "..", ".", ".hidden", "a..b", "Caps", "x" * 65, "sp ace", "-x", "a\x00b", "é"]
)
def test_invalid_model_names(name: str) -> None:
    with pytest.raises(InvalidNameError, match="invalid model name"):
        validate_model_name(name)


@pytest.mark.parametrize(("text", "expected"), [("1", 1), ("42", 42), (7, 7), ("1000000", 1000000)])
def test_valid_versions(text: str | int, expected: int) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", ["0", "01", "-1", "+1", "1e3", "1.0", " 1", "1 ", "", "../1", "1/2", "٣", 0, -1, True])
def test_invalid_versions(text: str | int) -> None:
    with pytest.raises(InvalidNameError, match="invalid version"):
        parse_version(text)


@pytest.mark.parametrize("name", ["../model.onnx", "a/model.onnx", "/etc/passwd", ".hidden", "..", "", "a b"])
def test_invalid_artifact_filenames(name: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_filename(name)


# ---------------------------------------------------------------------------------------------- manifest


def test_manifest_json_round_trip() -> None:
    manifest = published()
    manifest.validate()
    text = manifest.to_json()
    assert Manifest.from_json(text) == manifest
    data = json.loads(text)
    assert data["schema_version"] == 1 and data["inputs"][1] == {"name": "NOISE", "dtype": "float32", "shape": [-1, 8]}
    assert data["artifacts"][0]["sha256"] == SHA and data["energy_range_mev"] == [256.0, 4194304.0]


def _json_with(**changes: object) -> str:
    data = published().to_dict()
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"noise_dim": -3}, "noise_dim"),
        ({"noise_dim": True}, "noise_dim"),
        ({"standin": "yes"}, "standin"),
        ({"particle": "Photon!"}, "particle"),
        ({"dataset": "DS2 electron"}, "dataset"),
        ({"shower_shape": [7]}, "shower_shape"),
        ({"file_layout": "root"}, "file_layout"),
        ({"geometry_kind": "cartesian"}, "geometry_kind"),
        ({"dataset_aliases": ["ok", 3]}, "dataset_aliases[1]"),
        ({"model": "../evil"}, "model"),
        ({"version": 0}, "version"),
        ({"n_voxels": 9}, "n_voxels"),
        ({"energy_range_mev": [100.0, 10.0]}, "energy_range_mev"),
        ({"energy_range_mev": [1.0, 2.0, 3.0]}, "energy_range_mev"),
        ({"created_utc": "yesterday"}, "created_utc"),
        ({"created_utc": "2026-01-02T03:04:05"}, "created_utc"),
        ({"producer": ""}, "producer"),
        ({"training": {"preset": "small", "seed": 1}}, "training"),
        ({"training": {"preset": "small", "seed": 1, "data_sha256": "xyz"}}, "training.data_sha256"),
        ({"preprocessing": []}, "preprocessing"),
        ({"artifacts": []}, "artifacts"),
        ({"inputs": [{"name": "NOISE", "dtype": "float32", "shape": [-1, 8]}]}, "inputs"),
        ({"outputs": [{"name": "SHOWERS", "dtype": "float64", "shape": [-1, 8]}]}, "outputs"),
        ({"geometry": {"name": "tiny"}}, "geometry"),
    ],
)
def test_manifest_errors_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ManifestError, match=re.escape(f"'{field}'")):
        Manifest.from_json(_json_with(**changes))


def test_manifest_missing_unknown_and_future_fields_refused() -> None:
    data = published().to_dict()
    del data["noise_dim"]
    with pytest.raises(ManifestError, match="'noise_dim' is missing"):
        Manifest.from_dict(data)
    with pytest.raises(ManifestError, match="'colour' is not a field"):
        Manifest.from_json(_json_with(colour="red"))
    with pytest.raises(ManifestError, match="'schema_version' is 2"):
        Manifest.from_json(_json_with(schema_version=2, new_field=1))
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.from_json("{")


def test_manifest_geometry_checks() -> None:
    geometry = dict(published().geometry, layer_offsets=[0, 2, 9])
    with pytest.raises(ManifestError, match=r"'geometry\.layer_offsets' must be \[0, 2, 8\]"):
        Manifest.from_json(_json_with(geometry=geometry))
    layers = [{"id": 0, "r_edges_mm": [0.0, 5.0, 5.0], "n_alpha": 1}, published().geometry["layers"][1]]
    with pytest.raises(ManifestError, match=r"'geometry.layers\[0\].r_edges_mm'"):
        Manifest.from_json(_json_with(geometry=dict(published().geometry, layers=layers)))


@pytest.mark.parametrize(
    ("artifact", "field"),
    [
        (ArtifactInfo("../model.onnx", "onnx", SHA, 1, "17"), "artifacts[0].filename"),
        (ArtifactInfo("sub/model.onnx", "onnx", SHA, 1, "17"), "artifacts[0].filename"),
        (ArtifactInfo("manifest.json", "onnx", SHA, 1, "17"), "artifacts[0].filename"),
        (ArtifactInfo("model.onnx", "ONNX!", SHA, 1, "17"), "artifacts[0].format"),
        (ArtifactInfo("model.onnx", "onnx", "abc", 1, "17"), "artifacts[0].sha256"),
        (ArtifactInfo("model.onnx", "onnx", SHA, -1, "17"), "artifacts[0].size_bytes"),
        (ArtifactInfo("model.onnx", "onnx", SHA, 1, ""), "artifacts[0].format_version"),
    ],
)
def test_artifact_errors_name_the_field(artifact: ArtifactInfo, field: str) -> None:
    with pytest.raises(ManifestError, match=re.escape(f"'{field}'")):
        published(artifacts=(artifact,)).validate()


def test_duplicate_artifact_refused() -> None:
    artifact = ArtifactInfo("model.onnx", "onnx", SHA, 1, "17")
    with pytest.raises(ManifestError, match=r"repeats 'model\.onnx'"):
        published(artifacts=(artifact, artifact)).validate()


def test_nan_in_training_figures_refused() -> None:
    training = {"preset": "small", "seed": 1, "data_sha256": "ab" * 32, "kl": float("nan")}
    with pytest.raises(ManifestError, match="'training'"):
        published(training=training).validate()


# ---------------------------------------------------------------------------------------------- config.pbtxt


def test_config_text() -> None:
    text = render_config_pbtxt(published(version=3), max_batch_size=1024, max_queue_delay_us=250)
    assert 'name: "caloflow_photon"\n' in text and 'platform: "onnxruntime_onnx"\n' in text
    assert 'default_model_filename: "model.onnx"\n' in text and "max_batch_size: 1024\n" in text
    assert 'name: "INCIDENT_ENERGY"\n    data_type: TYPE_FP32\n    dims: [ 1 ]' in text
    assert 'name: "NOISE"\n    data_type: TYPE_FP32\n    dims: [ 8 ]' in text
    assert 'output [\n  {\n    name: "SHOWERS"\n    data_type: TYPE_FP32\n    dims: [ 8 ]\n  }\n]' in text
    assert "dynamic_batching {\n  max_queue_delay_microseconds: 250\n}" in text
    assert "version_policy: { specific: { versions: [ 3 ] } }" in text
    assert "WARNING" not in text
    assert text.count("{") == text.count("}") and text.count("[") == text.count("]")


def test_config_warns_without_onnx() -> None:
    only_pt = (ArtifactInfo("model.pt", "torchscript", SHA, 10, "torch 2.13.0"),)
    assert "# WARNING: version 1 has no model.onnx" in render_config_pbtxt(published(artifacts=only_pt))


@pytest.mark.parametrize("onnx_files", [("model.onnx", "model.fast.onnx"), ("model.fast.onnx",)])
def test_config_names_the_fast_onnx_file_when_the_version_has_one(onnx_files: tuple[str, ...]) -> None:
    formats = {"model.onnx": "onnx", "model.fast.onnx": "fast_onnx"}
    artifacts = tuple(ArtifactInfo(name, formats[name], SHA, 10, "opset 18") for name in onnx_files)
    text = render_config_pbtxt(published(artifacts=artifacts))
    assert 'default_model_filename: "model.fast.onnx"\n' in text and "WARNING" not in text


def test_config_parses_as_triton_model_config() -> None:
    """Parse against the subset of Triton's model_config.proto we emit; unknown field names would fail."""
    config_class = _mini_model_config_class()
    from google.protobuf import text_format

    config = text_format.Parse(render_config_pbtxt(published(version=2), 64, 100), config_class())
    assert config.name == "caloflow_photon" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 64 and config.default_model_filename == "model.onnx"
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("INCIDENT_ENERGY", 11, [1]),
        ("NOISE", 11, [8]),
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [("SHOWERS", 11, [8])]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert list(config.version_policy.specific.versions) == [2]


def _mini_model_config_class() -> type:
    """``inference.ModelConfig`` reduced to the fields we write (names, numbers and types as in Triton's proto)."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="mini_model_config.proto", package="inference", syntax="proto3")
    dtype = file.enum_type.add(name="DataType")
    for number, name in enumerate(["TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32",
                                   "TYPE_UINT64", "TYPE_INT8", "TYPE_INT16", "TYPE_INT32", "TYPE_INT64",
                                   "TYPE_FP16", "TYPE_FP32", "TYPE_FP64"]):  # fmt: skip
        dtype.value.add(name=name, number=number)

    def message(name: str, fields: list[tuple[str, int, int, int, str]], parent: object = file) -> object:
        msg = (parent.message_type if parent is file else parent.nested_type).add(name=name)  # type: ignore[attr-defined]
        for field_name, number, kind, label, type_name in fields:
            extra = {"type_name": type_name} if type_name else {}
            msg.field.add(name=field_name, number=number, type=kind, label=label, **extra)
        return msg

    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    tensor = [("name", 1, F.TYPE_STRING, one, ""), ("data_type", 2, F.TYPE_ENUM, one, ".inference.DataType")]
    message("ModelInput", [*tensor, ("dims", 4, F.TYPE_INT64, many, "")])
    message("ModelOutput", [*tensor, ("dims", 3, F.TYPE_INT64, many, "")])
    message("ModelDynamicBatching", [("preferred_batch_size", 1, F.TYPE_INT32, many, ""),
                                     ("max_queue_delay_microseconds", 2, F.TYPE_UINT64, one, "")])  # fmt: skip
    policy = message("ModelVersionPolicy", [])
    message("Latest", [("num_versions", 1, F.TYPE_UINT32, one, "")], policy)
    message("All", [], policy)
    message("Specific", [("versions", 1, F.TYPE_INT64, many, "")], policy)
    for number, name in enumerate(["latest", "all", "specific"], start=1):
        type_name = f".inference.ModelVersionPolicy.{name.capitalize()}"
        policy.field.add(name=name, number=number, type=F.TYPE_MESSAGE, label=one, type_name=type_name)  # type: ignore[attr-defined]
    message("ModelConfig", [
        ("name", 1, F.TYPE_STRING, one, ""), ("platform", 2, F.TYPE_STRING, one, ""),
        ("version_policy", 3, F.TYPE_MESSAGE, one, ".inference.ModelVersionPolicy"),
        ("max_batch_size", 4, F.TYPE_INT32, one, ""),
        ("input", 5, F.TYPE_MESSAGE, many, ".inference.ModelInput"),
        ("output", 6, F.TYPE_MESSAGE, many, ".inference.ModelOutput"),
        ("default_model_filename", 8, F.TYPE_STRING, one, ""),
        ("dynamic_batching", 11, F.TYPE_MESSAGE, one, ".inference.ModelDynamicBatching"),
    ])  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


# ---------------------------------------------------------------------------------------------- public API


def test_public_api_is_pinned() -> None:
    assert set(caloflow_repo.__all__) >= {
        "RepositoryError", "ModelNotFoundError", "VersionNotFoundError", "ChecksumError", "ManifestError",
        "validate_model_name", "parse_version", "ArtifactInfo", "Manifest", "sha256_file", "ModelRepository",
        "render_config_pbtxt",
    }  # fmt: skip
    assert all(hasattr(caloflow_repo, name) for name in caloflow_repo.__all__)
    assert [f.name for f in dataclasses.fields(ArtifactInfo)] == [
        "filename", "format", "sha256", "size_bytes", "format_version"
    ]  # fmt: skip
    assert TensorSpec("NOISE", "float32", (-1, 8)) == caloflow_repo.standard_inputs(8)[1]
    assert all(issubclass(getattr(caloflow_repo, n), caloflow_repo.RepositoryError)
               for n in caloflow_repo.__all__ if n.endswith("Error"))  # fmt: skip


def test_standard_library_only() -> None:
    import subprocess
    import sys

    code = "import sys, caloflow_repo; bad = {'torch', 'numpy', 'pydantic', 'caloflow'} & set(sys.modules); print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "set()"
