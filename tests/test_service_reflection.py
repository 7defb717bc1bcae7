"""Server reflection v1 (tried first by grpcurl and other current tools) and v1alpha, on a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from trm_service.testing import ServerProcess

V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
SERVICES = {
    "trm.v1.ReasoningService", "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection",
}


@pytest.fixture(scope="module")
def channel(text_bundle: Path) -> Iterator[grpc.Channel]:
    with ServerProcess([text_bundle]) as server, grpc.insecure_channel(server.target) as channel:
        yield channel


def _ask(channel: grpc.Channel, path: str, request_type: type, response_type: type, requests: list) -> list:
    """One reflection stream: send `requests`, return the answers."""
    info = channel.stream_stream(
        path, request_serializer=request_type.SerializeToString, response_deserializer=response_type.FromString
    )
    return list(info(iter(requests), timeout=30))


def _files(response) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    files = {}
    for serialized in response.file_descriptor_response.file_descriptor_proto:
        file = descriptor_pb2.FileDescriptorProto.FromString(serialized)
        files[file.name] = file
    return files


@pytest.mark.parametrize("path", [V1, V1ALPHA], ids=["v1", "v1alpha"])
def test_both_versions_list_the_services_and_describe_the_api(channel, path) -> None:
    # v1 and v1alpha messages are the same on the wire (one proto file under two package names).
    Request = reflection_pb2.ServerReflectionRequest
    listed, described, unknown = _ask(channel, path, Request, reflection_pb2.ServerReflectionResponse, [
        Request(list_services=""),
        Request(file_containing_symbol="trm.v1.ReasoningService"),
        Request(file_containing_symbol="trm.v1.NoSuchService"),
    ])
    assert {s.name for s in listed.list_services_response.service} == SERVICES
    (trm,) = [f for f in _files(described).values() if f.package == "trm.v1"]
    (service,) = trm.service
    assert {m.name for m in service.method} == {"Reason", "ReasonStream", "ReasonBatch", "ListModels", "GetModel"}
    assert unknown.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_a_v1_client_can_describe_v1_itself_and_use_that_description(channel) -> None:
    """What grpcurl does: fetch the v1 file, build its message types, and speak v1 with them."""
    Request = reflection_pb2.ServerReflectionRequest
    (answer,) = _ask(channel, V1, Request, reflection_pb2.ServerReflectionResponse,
                     [Request(file_containing_symbol="grpc.reflection.v1.ServerReflection")])
    (v1_file,) = _files(answer).values()
    assert (v1_file.name, v1_file.package) == ("grpc/reflection/v1/reflection.proto", "grpc.reflection.v1")
    (method,) = v1_file.service[0].method
    assert (method.name, method.client_streaming, method.server_streaming) == ("ServerReflectionInfo", True, True)
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    assert method.output_type == ".grpc.reflection.v1.ServerReflectionResponse"

    pool = descriptor_pool.DescriptorPool()
    pool.Add(v1_file)
    V1Request, V1Response = (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"grpc.reflection.v1.{name}"))
        for name in ("ServerReflectionRequest", "ServerReflectionResponse")
    )
    listed, described = _ask(channel, V1, V1Request, V1Response, [
        V1Request(list_services=""), V1Request(file_containing_symbol="grpc.health.v1.Health"),
    ])
    assert {s.name for s in listed.list_services_response.service} == SERVICES
    assert listed.original_request.list_services == ""
    assert {f.package for f in _files(described).values()} == {"grpc.health.v1"}


def test_grpcio_reflections_own_client_resolves_the_api_over_v1alpha(channel) -> None:
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    service = pool.FindServiceByName("trm.v1.ReasoningService")
    assert service.methods_by_name["Reason"].input_type.full_name == "trm.v1.ReasonRequest"
    assert pool.FindMessageTypeByName("trm.v1.ReasonRequest").fields_by_name["text"].number > 0


@pytest.mark.parametrize("path", [V1, V1ALPHA])
def test_a_malformed_request_is_invalid_argument(channel: grpc.Channel, path: str):
    """QA: gRPC's deserializer made it UNKNOWN ("Unexpected <class 'DecodeError'>"), a user's mistake."""
    info = channel.stream_stream(path)  # raw bytes both ways
    with pytest.raises(grpc.RpcError) as failed:
        list(info(iter([b"\xff\xff\xff"]), timeout=30))
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the request body is not a valid grpc.reflection.v1alpha.ServerReflectionRequest" in failed.value.details()
