"""When and how long to wait before retrying a failed call: exponential backoff with jitter."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from trm_client.errors import DeadlineExceeded, from_rpc_error


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen: the attempt that failed, its status and the wait before the next."""

    attempt: int
    code: grpc.StatusCode
    details: str
    delay_s: float
    request_id: str


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for one logical call; every attempt shares the call's deadline and request id.

    By default only UNAVAILABLE is retried: the server was unreachable, so nothing ran. Add
    RESOURCE_EXHAUSTED to ``retry_on`` to wait out a full queue (a request over a message size limit, also
    RESOURCE_EXHAUSTED, fails at once); INVALID_ARGUMENT, NOT_FOUND and DEADLINE_EXCEEDED can never succeed on
    a retry and are refused, nor can an UNAVAILABLE where the client refused the server's TLS certificate or met a
    server without TLS.

    The wait before attempt n+1 is drawn uniformly from [b/2, b] with
    b = min(max_backoff_s, initial_backoff_s * multiplier**(n-1)) ("equal jitter"): replicas restarting
    together are not hit in lockstep, and the waits still grow.
    """

    max_attempts: int = 6
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    retry_on: frozenset[grpc.StatusCode] = frozenset({grpc.StatusCode.UNAVAILABLE})
    on_retry: Callable[[RetryEvent], None] | None = field(default=None, compare=False)

    _NEVER_RETRIED = frozenset(
        {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.DEADLINE_EXCEEDED}
    )

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        refused = self.retry_on & self._NEVER_RETRIED
        if refused:
            raise ValueError(f"these codes cannot succeed on a retry: {sorted(c.name for c in refused)}")

    def backoff_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """The jittered wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return (rng or random).uniform(ceiling / 2, ceiling)

    def next_delay(self, code: grpc.StatusCode, attempt: int, deadline: Deadline) -> float | None:
        """The wait before retrying, or None when the call must fail now (code, attempts or deadline)."""
        if code not in self.retry_on or attempt >= self.max_attempts:
            return None
        delay = self.backoff_s(attempt)
        return delay if deadline.allows(delay) else None


NO_RETRY = RetryPolicy(max_attempts=1)
"""A policy that never retries."""


NO_DEADLINE_FROM_S = 1e9
"""A timeout of this many seconds (about 31 years) or more, infinity included, is no deadline: gRPC's own
deadline arithmetic fails a call at once from about 3e9 seconds."""


def checked_timeout(timeout_s: float | None) -> float | None:
    """`timeout_s` if it is a number of seconds (<= 0: a deadline already passed), None for no deadline (None
    or NO_DEADLINE_FROM_S and more); else TypeError or ValueError."""
    if timeout_s is None:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise TypeError(f"timeout_s must be a number of seconds, got {type(timeout_s).__name__}")
    if timeout_s != timeout_s:
        raise ValueError("timeout_s must be a number of seconds, got nan")
    return None if timeout_s >= NO_DEADLINE_FROM_S else timeout_s


def default_timeout(timeout_s: float | None) -> float | None:
    """A client's default deadline: a number of seconds above 0 (else every call would fail at once), or None."""
    if checked_timeout(timeout_s) is not None and timeout_s <= 0:
        raise ValueError(f"the client's timeout_s must be above 0 seconds, got {timeout_s}: every call would fail")
    return timeout_s


class Deadline:
    """The absolute deadline of one logical call, shared by all of its attempts."""

    def __init__(self, timeout_s: float | None) -> None:
        timeout_s = checked_timeout(timeout_s)
        self._expires_at = None if timeout_s is None else time.monotonic() + timeout_s

    def remaining(self) -> float | None:
        """Seconds left (possibly <= 0), or None when the call has no deadline."""
        return None if self._expires_at is None else self._expires_at - time.monotonic()

    def attempt_timeout(self, request_id: str) -> float | None:
        """The timeout to send the next attempt with; raises DeadlineExceeded, without sending it, when the
        deadline has passed (gRPC would race a deadline below its timer's resolution against the answer)."""
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline passed before it was sent",
                                   request_id)
        return remaining

    def allows(self, delay_s: float) -> bool:
        """Whether there is still time for another attempt after waiting ``delay_s``."""
        remaining = self.remaining()
        return remaining is None or remaining > delay_s


def plan_retry(
    policy: RetryPolicy, error: grpc.RpcError, attempt: int, deadline: Deadline, request_id: str
) -> float:
    """The wait before retrying a failed attempt, after telling ``policy.on_retry``.

    Raises:
        TRMError: the typed error for ``error`` when the call must fail now.
    """
    typed = from_rpc_error(error, request_id)
    never_passes = typed.over_message_limit or typed.certificate_refused or typed.server_speaks_plaintext
    delay = None if never_passes else policy.next_delay(typed.code, attempt, deadline)
    if delay is None:
        raise typed from error
    if policy.on_retry is not None:
        policy.on_retry(RetryEvent(attempt, typed.code, typed.details, delay, request_id))
    return delay
