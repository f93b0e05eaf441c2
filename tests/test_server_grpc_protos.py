"""The .proto files and their generated stubs: the OIP subset is wire-compatible with Triton's protos as shipped in
tritonclient, the stubs import as ``caloflow_server._proto`` and are regenerated only when a source changes."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FileDescriptor
from tritonclient.grpc import model_config_pb2 as triton_model_config
from tritonclient.grpc import service_pb2 as triton_service

from caloflow_server import gen_protos
from caloflow_server.gen_protos import DEFAULT_OUT, DEFAULT_PROTO_ROOT, ensure_protos, generate, sources_digest

ensure_protos()

from caloflow_server._proto.inference import grpc_service_pb2, model_config_pb2  # noqa: E402

PAIRS = [
    (grpc_service_pb2.DESCRIPTOR, triton_service.DESCRIPTOR),
    (model_config_pb2.DESCRIPTOR, triton_model_config.DESCRIPTOR),
]


def _messages(descriptors: list[Descriptor]) -> list[Descriptor]:
    found = []
    for descriptor in descriptors:
        if not descriptor.GetOptions().map_entry:
            found.append(descriptor)
        found.extend(_messages(list(descriptor.nested_types)))
    return found


def _enums(file: FileDescriptor) -> list[EnumDescriptor]:
    enums = list(file.enum_types_by_name.values())
    for message in _messages(list(file.message_types_by_name.values())):
        enums.extend(message.enum_types)
    return enums


def _field_type(field: object) -> tuple[object, ...]:
    message = getattr(field, "message_type", None)
    enum = getattr(field, "enum_type", None)
    map_value = None
    if message is not None and message.GetOptions().map_entry:
        value = message.fields_by_name["value"]
        map_value = (value.type, value.message_type.full_name if value.message_type else None)
        message = None
    return (
        getattr(field, "type", None),
        getattr(field, "is_repeated", None),
        message.full_name if message is not None else None,
        enum.full_name if enum is not None else None,
        map_value,
    )


@pytest.mark.parametrize(("ours", "triton"), PAIRS, ids=["grpc_service", "model_config"])
def test_oip_messages_match_tritons_wire_contract(ours: FileDescriptor, triton: FileDescriptor) -> None:
    assert ours.package == triton.package == "inference"
    theirs = {m.full_name: m for m in _messages(list(triton.message_types_by_name.values()))}
    for message in _messages(list(ours.message_types_by_name.values())):
        assert message.full_name in theirs, message.full_name
        reference = theirs[message.full_name]
        for field in message.fields:
            other = reference.fields_by_number.get(field.number)
            assert other is not None and other.name == field.name, f"{message.full_name}.{field.name}"
            assert _field_type(field) == _field_type(other), f"{message.full_name}.{field.name}"
            oneof = field.containing_oneof.name if field.containing_oneof else None
            assert oneof == (other.containing_oneof.name if other.containing_oneof else None)
    their_enums = {e.full_name: e for e in _enums(triton)}
    for enum in _enums(ours):
        assert {v.name: v.number for v in enum.values}.items() <= {
            v.name: v.number for v in their_enums[enum.full_name].values
        }.items()


def test_oip_service_methods_match_triton() -> None:
    ours = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = triton_service.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert ours.full_name == theirs.full_name == "inference.GRPCInferenceService"
    needed = {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"}
    assert needed | {"ModelConfig", "RepositoryIndex", "ModelStatistics"} == {m.name for m in ours.methods}
    for method in ours.methods:
        other = theirs.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            other.input_type.full_name,
            other.output_type.full_name,
        )
        assert (method.client_streaming, method.server_streaming) == (other.client_streaming, other.server_streaming)


def test_stubs_coexist_with_tritonclient_in_one_process() -> None:
    """Same full names, different descriptor pools: building either message class never clashes."""
    ours = grpc_service_pb2.ModelInferRequest(model_name="m", raw_input_contents=[b"\0\0\0\0"])
    theirs = triton_service.ModelInferRequest.FromString(ours.SerializeToString())
    assert theirs.model_name == "m" and list(theirs.raw_input_contents) == [b"\0\0\0\0"]
    assert grpc_service_pb2.DESCRIPTOR.pool is not triton_service.DESCRIPTOR.pool
    assert "inference" not in sys.modules and "caloflow.v1" not in sys.modules


def test_generated_package_imports_point_inside_the_package() -> None:
    for path in DEFAULT_OUT.rglob("*.py*"):
        text = path.read_text(encoding="utf-8")
        assert "\nfrom inference " not in text and "\nfrom caloflow.v1 " not in text, path
    native = importlib.import_module("caloflow_server._proto.caloflow.v1.showers_pb2")
    assert native.ShowerChunk.__module__ == "caloflow_server._proto.caloflow.v1.showers_pb2"
    assert native.DESCRIPTOR.package == "caloflow.v1"


def test_ensure_regenerates_only_when_a_source_changes(tmp_path: Path) -> None:
    assert not ensure_protos()  # current after the import-time call
    assert gen_protos.main(["--check"]) == 0
    protos = tmp_path / "proto"
    for source in DEFAULT_PROTO_ROOT.rglob("*.proto"):
        target = protos / source.relative_to(DEFAULT_PROTO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    out = tmp_path / "pkg" / "_proto"
    written = generate(protos, out)
    assert {p.relative_to(out).as_posix() for p in written} >= {
        "__init__.py",
        "_pool.py",
        "inference/grpc_service_pb2.py",
        "inference/grpc_service_pb2.pyi",
        "inference/grpc_service_pb2_grpc.py",
        "caloflow/v1/showers_pb2_grpc.py",
    }
    assert not ensure_protos(protos, out)
    (protos / "caloflow" / "v1" / "showers.proto").write_text(
        (protos / "caloflow" / "v1" / "showers.proto").read_text() + "\nmessage Extra {}\n"
    )
    assert sources_digest(protos) != (out / "SOURCES").read_text().strip()
    assert ensure_protos(protos, out)
    assert "Extra" in (out / "caloflow" / "v1" / "showers_pb2.pyi").read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["_proto"]  # no staging left behind
