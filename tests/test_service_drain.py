"""SIGTERM drains: health turns NOT_SERVING, accepted requests finish, nothing accepted is lost."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_service_support import LONG_MODEL, TEXT_MODEL, LoadClient, wait_for
from trm.v1 import trm_pb2, trm_pb2_grpc

from trm_service.testing import ServerProcess

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _long_request(steps: int) -> trm_pb2.ReasonRequest:
    return trm_pb2.ReasonRequest(
        model=LONG_MODEL, text="long thought", budget=trm_pb2.Budget(max_steps=steps, halt_threshold=1.0)
    )


def _stepping_streams(channel: grpc.Channel, steps: int, count: int) -> list:
    """`count` ReasonStream calls of `steps` steps each, accepted and stepping (each has sent its first step)."""
    stub = trm_pb2_grpc.ReasoningServiceStub(channel)
    streams = [stub.ReasonStream(_long_request(steps), timeout=300) for _ in range(count)]
    for stream in streams:
        next(stream)
    return streams


def _health(channel: grpc.Channel, service: str = "") -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    return health_pb2_grpc.HealthStub(channel).Check(request, timeout=10).status


def test_sigterm_under_load_loses_no_accepted_request(long_bundle: Path, text_bundle: Path):
    drain = ["--drain-delay", "1.5", "--grace-period", "60"]
    server = ServerProcess([long_bundle, text_bundle], extra_args=drain)
    with server, grpc.insecure_channel(server.target) as channel:
        assert _health(channel) == SERVING and _health(channel, LONG_MODEL) == SERVING
        streams = _stepping_streams(channel, 1500, 6)
        with LoadClient(server.target, trm_pb2.ReasonRequest(model=TEXT_MODEL, text="quick one")) as load:
            wait_for(lambda: load.count(grpc.StatusCode.OK) >= 5)
            server.send_signal(signal.SIGTERM)
            wait_for(lambda: _health(channel) == NOT_SERVING)  # observed while the server still answers
            assert _health(channel, LONG_MODEL) == NOT_SERVING
            finals = [list(stream)[-1] for stream in streams]
            wait_for(lambda: server.returncode is not None)
        assert server.returncode == 0
    assert all(f.final and (f.step, f.halt_reason) == (1500, trm_pb2.HALT_REASON_MAX_STEPS) for f in finals)
    # UNAVAILABLE at the door; CANCELLED only from gRPC core's own race, a call that reached the transport
    # as the listener closed and never reached the service (checked below: it was never logged as accepted)
    assert set(load.outcomes.values()) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    logged = {r["request_id"]: r["status"] for r in server.log_records() if r.get("event") == "request"}
    for request_id, code in load.outcomes.items():
        if code == grpc.StatusCode.OK:
            assert logged[request_id] == "OK"
        else:
            assert request_id not in logged  # refused at the door, never accepted
    assert load.count(grpc.StatusCode.UNAVAILABLE) > 0  # the load really ran into the shutdown
    assert "CANCELLED" not in logged.values() and "INTERNAL" not in logged.values()


def test_requests_outliving_the_grace_period_get_their_anytime_answer(long_bundle: Path):
    server = ServerProcess([long_bundle], extra_args=["--grace-period", "1.5"])
    with server, grpc.insecure_channel(server.target) as channel:
        streams = _stepping_streams(channel, 20_000, 3)
        server.send_signal(signal.SIGTERM)
        finals = [list(stream)[-1] for stream in streams]
        assert server.wait(60) == 0
    for final in finals:
        assert final.final and final.halt_reason == trm_pb2.HALT_REASON_SHUTDOWN and 1 < final.step < 20000
        assert final.answer.classification.label


def test_a_version_retired_by_a_reload_still_gets_its_anytime_answers_at_shutdown(
    long_bundle: Path, text_bundle: Path, tmp_path: Path
):
    models = tmp_path / "models"
    shutil.copytree(long_bundle, models / "long")
    shutil.copytree(text_bundle, models / "text")  # stays: a folder left empty keeps its models (an unmounted volume)
    server = ServerProcess([models], extra_args=["--grace-period", "1.5"])
    with server, grpc.insecure_channel(server.target) as channel:
        stream = trm_pb2_grpc.ReasoningServiceStub(channel).ReasonStream(_long_request(20000), timeout=120)
        next(stream)
        shutil.rmtree(models / "long")  # the running request's version is retired, and drains
        server.send_signal(signal.SIGHUP)
        wait_for(lambda: any(r.get("event") == "models_reloaded" and r["retired"] for r in server.log_records()))
        server.send_signal(signal.SIGTERM)
        final = list(stream)[-1]
        assert server.wait(60) == 0
    assert final.final and final.halt_reason == trm_pb2.HALT_REASON_SHUTDOWN and 1 < final.step < 20000


def test_a_second_sigterm_cuts_the_drain_short_and_still_answers_every_request(long_bundle: Path):
    """An operator who cannot wait out the grace period: every request in flight gets its answer so far at once."""
    server = ServerProcess([long_bundle], extra_args=["--grace-period", "120", "--drain-delay", "30"])
    with server, grpc.insecure_channel(server.target) as channel:
        streams = _stepping_streams(channel, 20_000, 3)
        server.send_signal(signal.SIGTERM)
        wait_for(lambda: _health(channel) == NOT_SERVING)  # draining, and the delay of 30 s has begun
        server.send_signal(signal.SIGTERM)
        finals = [list(stream)[-1] for stream in streams]
        assert server.wait(30) == 0  # neither the drain delay nor the grace period waited out
    for final in finals:
        assert final.final and final.halt_reason == trm_pb2.HALT_REASON_SHUTDOWN and final.step < 20_000
    assert any(r.get("event") == "drain_cut_short" for r in server.log_records())


def test_an_open_health_watch_is_told_not_serving_then_ended_and_does_not_hold_the_stop(long_bundle: Path):
    """gRPC's client-side health checking keeps a Watch open on every connection; the stop waited for it for the
    whole grace period, whatever the signals."""
    server = ServerProcess([long_bundle], extra_args=["--grace-period", "120", "--drain-delay", "1"])
    with server, grpc.insecure_channel(server.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=300)
        assert next(watch).status == SERVING
        server.send_signal(signal.SIGTERM)
        assert next(watch).status == NOT_SERVING  # during the drain delay, as load balancers read it
        with pytest.raises(grpc.RpcError) as ended:
            next(watch)
        assert (ended.value.code(), ended.value.details()) == (grpc.StatusCode.UNAVAILABLE, "the server is stopping")
        assert server.wait(30) == 0  # not the 120 s of the grace period
