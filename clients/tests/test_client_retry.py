"""Retries against real servers: a call outlives a server restart; without retries it fails typed."""

from __future__ import annotations

import threading

import grpc
import pytest
from sdk_test_support import TEXT_MODEL
from trm_client import NO_RETRY, AsyncTRMClient, RetryEvent, RetryPolicy, TRMClient, Unavailable

from trm_service.testing import ServerProcess

PATIENT = {"max_attempts": 200, "initial_backoff_s": 0.05, "max_backoff_s": 0.3}


def test_a_call_made_while_the_server_is_down_succeeds_once_it_is_back(bundles):
    retried = threading.Event()
    events: list[RetryEvent] = []

    def on_retry(event: RetryEvent) -> None:
        events.append(event)
        retried.set()

    first = ServerProcess([bundles["text"]]).start()
    port = first.port
    client = TRMClient(first.target, timeout_s=120.0, retry=RetryPolicy(**PATIENT, on_retry=on_retry))
    try:
        before = client.reason(TEXT_MODEL, "play jazz")
        first.stop()
        outcome: dict[str, object] = {}
        caller = threading.Thread(target=lambda: outcome.update(after=client.reason(TEXT_MODEL, "play jazz")))
        caller.start()
        assert retried.wait(60), "the call never retried while the server was down"
        with ServerProcess([bundles["text"]], port=port):
            caller.join(120)
            assert not caller.is_alive()
        assert outcome["after"].prediction == before.prediction
        assert {e.code for e in events} == {grpc.StatusCode.UNAVAILABLE}
        assert len({e.request_id for e in events}) == 1  # one logical call, one request id
    finally:
        client.close()
        first.stop()


def test_without_retries_a_down_server_raises_unavailable(bundles):
    with ServerProcess([bundles["text"]]) as process:
        target = process.target
    with TRMClient(target, retry=NO_RETRY) as client, pytest.raises(Unavailable) as caught:
        client.reason(TEXT_MODEL, "anyone there?", request_id="lonely")
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE
    assert caught.value.request_id == "lonely"


async def test_async_retries_give_up_after_max_attempts_with_unavailable(bundles):
    events: list[RetryEvent] = []
    with ServerProcess([bundles["text"]]) as process:
        target = process.target
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02, on_retry=events.append)
    async with AsyncTRMClient(target, retry=policy, timeout_s=30.0) as client:
        with pytest.raises(Unavailable):
            await client.models()
    assert [e.attempt for e in events] == [1, 2]
