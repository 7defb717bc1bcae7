"""A server hosting many models: an unknown name's error lists some of them, so it still reaches the caller.

Every hosted name in one message made the trailer of a typo's NOT_FOUND larger than gRPC clients take (8 KiB
soft, 16 KiB hard): the caller saw RESOURCE_EXHAUSTED ("metadata size exceeds"), which it is told to retry,
and a ReasonBatch of many such entries outgrew the message limit and lost its good answers too.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_service_support import make_bundle
from trm.v1 import trm_pb2

from trm_service.caller_strings import LISTED_NAMES
from trm_service.testing import ServerProcess

MODELS = 150
NAME_CHARS = 125  # 150 such names: 19 KB, past the hard limit of a client's trailers


def _name(i: int) -> str:
    return f"{'m' * (NAME_CHARS - 4)}-{i:03d}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("many")
    source = make_bundle(tmp_path_factory.mktemp("source"), "text", name="source", N_sup=1)
    for i in range(MODELS):
        copy = shutil.copytree(source, root / f"b{i:03d}")
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["name"] = _name(i)
        (copy / "manifest.json").write_text(json.dumps(manifest))
    with ServerProcess([root]) as process:
        yield process


def _listed(message: str) -> list[str]:
    """The model names a message lists after its last ': '."""
    listed = message.rsplit(": ", 1)[1].split(" and ")[0]
    return listed.removesuffix(")").split(", ")


def test_an_unknown_name_is_not_found_whatever_the_number_of_models(stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Reason(trm_pb2.ReasonRequest(model="typo", text="hello"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details().endswith(f" and {MODELS - LISTED_NAMES} more (ListModels names them all)")
    assert len(_listed(caught.value.details())) == LISTED_NAMES


def test_the_names_most_like_a_typo_come_first(stub) -> None:
    typo = _name(97).replace("-097", "-o97")
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetModel(trm_pb2.GetModelRequest(name=typo), timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert _listed(caught.value.details())[0] == _name(97)


def test_a_missing_name_and_an_unknown_health_service_list_some_models(server, stub) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        stub.Reason(trm_pb2.ReasonRequest(text="hello"), timeout=30)
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{_name(LISTED_NAMES - 1)} and {MODELS - LISTED_NAMES} more" in missing.value.details()
    with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError) as unknown:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="nope"), timeout=30)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert f"and {MODELS - LISTED_NAMES} more" in unknown.value.details()


def test_a_batch_of_unknown_names_fails_only_those_entries(stub) -> None:
    good = [trm_pb2.ReasonRequest(model=_name(i), text="hello") for i in range(10)]
    bad = [trm_pb2.ReasonRequest(model=f"typo-{i}", text="hello") for i in range(246)]
    reply = stub.ReasonBatch(trm_pb2.ReasonBatchRequest(requests=good + bad), timeout=60)
    kinds = [result.WhichOneof("result") for result in reply.results]
    assert kinds == ["response"] * 10 + ["failure"] * 246
    assert {result.failure.code for result in reply.results[10:]} == {grpc.StatusCode.NOT_FOUND.value[0]}
