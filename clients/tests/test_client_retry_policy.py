"""The retry policy: which codes are retried, how the jittered backoff grows, and the deadline cap."""

import random

import grpc
import pytest
from trm_client.retry import Deadline, RetryPolicy


def test_only_unavailable_is_retried_by_default():
    policy = RetryPolicy()
    no_deadline = Deadline(None)
    assert policy.next_delay(grpc.StatusCode.UNAVAILABLE, 1, no_deadline) is not None
    for code in (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INTERNAL,
    ):
        assert policy.next_delay(code, 1, no_deadline) is None


def test_resource_exhausted_is_retried_when_the_caller_asks():
    policy = RetryPolicy(
        retry_on=frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
    )
    assert policy.next_delay(grpc.StatusCode.RESOURCE_EXHAUSTED, 1, Deadline(None)) is not None


def test_codes_that_cannot_succeed_on_a_retry_are_refused():
    with pytest.raises(ValueError, match="INVALID_ARGUMENT"):
        RetryPolicy(retry_on=frozenset({grpc.StatusCode.INVALID_ARGUMENT}))


def test_attempts_stop_at_max_attempts():
    policy = RetryPolicy(max_attempts=3)
    assert policy.next_delay(grpc.StatusCode.UNAVAILABLE, 2, Deadline(None)) is not None
    assert policy.next_delay(grpc.StatusCode.UNAVAILABLE, 3, Deadline(None)) is None


def test_backoff_is_jittered_within_half_to_full_of_an_exponential_ceiling():
    policy = RetryPolicy(initial_backoff_s=0.1, multiplier=2.0, max_backoff_s=0.5)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (9, 0.5)]:
        delays = [policy.backoff_s(attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered, not constant


def test_no_retry_when_the_wait_would_outlast_the_deadline():
    policy = RetryPolicy(initial_backoff_s=5.0, max_backoff_s=5.0)
    assert policy.next_delay(grpc.StatusCode.UNAVAILABLE, 1, Deadline(1.0)) is None
