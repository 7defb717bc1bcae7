"""One client over two real server processes: traffic reaches both, and losing one loses no call.

Both servers host the same model name with different versions, so every answer says which replica
served it (ReasonResponse.model_version).
"""

from __future__ import annotations

import signal

import pytest
from sdk_test_support import TEXT_MODEL
from trm_client import AsyncTRMClient, RetryPolicy, TRMClient

from trainer.testing import make_random_bundle
from trm_service.testing import ServerProcess

MAX_CALLS = 200


@pytest.fixture
def replicas(tmp_path):
    """Two servers: one hosting version 1.0.0 of the model, the other 2.0.0."""
    first = make_random_bundle(tmp_path / "a", "text", name=TEXT_MODEL, version="1.0.0", seed=1)
    second = make_random_bundle(tmp_path / "b", "text", name=TEXT_MODEL, version="2.0.0", seed=1)
    with ServerProcess([first]) as one, ServerProcess([second]) as two:
        yield {"1.0.0": one, "2.0.0": two}


def versions_until_both_seen(client: TRMClient) -> list[str]:
    seen: list[str] = []
    while len(set(seen)) < 2 and len(seen) < MAX_CALLS:
        seen.append(client.reason(TEXT_MODEL, "play jazz").model_version)
    return seen


def test_calls_reach_both_replicas_and_survive_killing_one(replicas):
    patient = RetryPolicy(max_attempts=20, initial_backoff_s=0.05, max_backoff_s=0.5)
    targets = [replicas["1.0.0"].target, replicas["2.0.0"].target]
    with TRMClient(targets, retry=patient, timeout_s=60.0) as client:
        assert set(versions_until_both_seen(client)) == {"1.0.0", "2.0.0"}
        replicas["1.0.0"].stop(signal.SIGKILL)
        after = [client.reason(TEXT_MODEL, f"call {i}").model_version for i in range(20)]
    assert after == ["2.0.0"] * 20


async def test_async_client_spreads_over_a_comma_separated_target(replicas):
    target = f"{replicas['1.0.0'].target},{replicas['2.0.0'].target}"
    seen: set[str] = set()
    async with AsyncTRMClient(target, timeout_s=60.0) as client:
        for _ in range(MAX_CALLS):
            seen.add((await client.reason(TEXT_MODEL, "play jazz")).model_version)
            if len(seen) == 2:
                break
    assert seen == {"1.0.0", "2.0.0"}
