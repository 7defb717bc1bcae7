"""The health service's answers to a caller's mistakes, on a real server (docs/API.md, "Health")."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_service_support import TEXT_MODEL, run_healthcheck

from trm_service.testing import ServerProcess

CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"


@pytest.fixture(scope="module")
def channel(text_bundle: Path) -> Iterator[grpc.Channel]:
    with ServerProcess([text_bundle]) as server, grpc.insecure_channel(server.target) as channel:
        yield channel


def test_an_unknown_name_is_not_found_with_the_names_there_are(channel: grpc.Channel):
    """QA: NOT_FOUND came with an empty message."""
    health = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as failed:
        health.Check(health_pb2.HealthCheckRequest(service="intent"), timeout=30)
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    assert failed.value.details() == ("no health status for 'intent': ask for '' (the server), "
                                      f"'trm.v1.ReasoningService' or a model: {TEXT_MODEL}")
    assert health.Check(health_pb2.HealthCheckRequest(service=TEXT_MODEL), timeout=30).status == \
        health_pb2.HealthCheckResponse.SERVING


def test_watching_an_unknown_name_streams_service_unknown(channel: grpc.Channel):
    """The standard's answer (a model may appear on a reload), as docs/API.md says."""
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="intent"), timeout=30)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    watch.cancel()


def test_a_malformed_request_is_invalid_argument(channel: grpc.Channel):
    """QA: gRPC's deserializer made it UNKNOWN ("Unexpected <class 'DecodeError'>"), a user's mistake."""
    garbage = b"\xff\xff\xff"
    with pytest.raises(grpc.RpcError) as check:
        channel.unary_unary(CHECK)(garbage, timeout=30)  # raw bytes both ways
    with pytest.raises(grpc.RpcError) as watch:
        next(channel.unary_stream(WATCH)(garbage, timeout=30))
    for failed in (check, watch):
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "the request body is not a valid grpc.health.v1.HealthCheckRequest" in failed.value.details()


def test_the_container_health_probe_passes_by_a_proxy_the_environment_names(text_bundle: Path):
    """QA: a container whose environment names an HTTP proxy (Docker's proxy settings pass http_proxy to every
    container) probed its own server through that proxy, which cannot reach its loopback: unhealthy while serving."""
    proxied = {key: value for key, value in os.environ.items() if key.lower() not in ("no_proxy", "no_grpc_proxy")}
    proxied |= {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}  # refuses every connection
    with ServerProcess([text_bundle]) as server:
        probed = run_healthcheck(server.target, env=proxied)
    assert (probed.returncode, probed.stdout.strip()) == (0, "SERVING"), probed.stderr
