"""Server reflection under both names clients ask for: `grpc.reflection.v1` (grpcurl and other current
tools try it first) and `grpc.reflection.v1alpha`.

grpcio-reflection implements v1alpha only. The v1 protocol is the same file under a new package: the
same messages, field numbers and method. So the one v1alpha servicer answers both names, and the v1
file, derived from the v1alpha one, goes into the descriptor pool so that a client can describe
`grpc.reflection.v1.ServerReflection` like any other listed service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Protocol

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

from trm_service.api.validation import RequestError, parse_message

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"


def register_v1_file(pool: descriptor_pool.DescriptorPool) -> None:
    """Add grpc/reflection/v1/reflection.proto to `pool` (once): the v1alpha file renamed, with v1's options."""
    try:
        pool.FindFileByName(V1_FILE)
        return
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    old_prefix, new_prefix = f".{file.package}.", f".{V1_PACKAGE}."
    file.name, file.package = V1_FILE, V1_PACKAGE
    for message in file.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = field.type_name.replace(old_prefix, new_prefix, 1)
    for service in file.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old_prefix, new_prefix, 1)
            method.output_type = method.output_type.replace(old_prefix, new_prefix, 1)
    file.options.java_package = "io.grpc.reflection.v1"
    file.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    file.options.ClearField("deprecated")
    pool.AddSerializedFile(file.SerializeToString())


class MethodRegistry(Protocol):
    """Where services register their methods: a server, or the server's method table
    (observability/grpc_refusals.py)."""

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None: ...


def enable_reflection(server: MethodRegistry, service_names: Iterable[str]) -> None:
    """Serve reflection v1 and v1alpha on `server`, listing `service_names` and both reflection services."""
    register_v1_file(descriptor_pool.Default())
    servicer = reflection.aio.ReflectionServicer((*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME))

    async def info(raw_requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
                   ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        """The servicer's stream on raw-bytes requests: a malformed one ends it INVALID_ARGUMENT (gRPC's
        deserializer made it UNKNOWN)."""
        async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            async for raw in raw_requests:
                try:
                    yield parse_message(reflection_pb2.ServerReflectionRequest, raw)
                except RequestError as error:
                    await context.abort(error.code, error.message)

        async for response in servicer.ServerReflectionInfo(requests(), context):
            yield response

    handler = grpc.stream_stream_rpc_method_handler(
        info, response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString
    )
    for name in (V1ALPHA_SERVICE_NAME, V1_SERVICE_NAME):
        server.add_registered_method_handlers(name, {"ServerReflectionInfo": handler})
