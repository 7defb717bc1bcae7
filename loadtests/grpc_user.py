"""A Locust User that speaks gRPC, following Locust's pattern for non-HTTP protocols: time each
call and fire the `request` event; a non-OK call is a failure named after its gRPC status
(e.g. RESOURCE_EXHAUSTED).

gRPC must be made gevent-cooperative (grpc.experimental.gevent.init_gevent()) before any channel exists;
the locustfile does that at import.
"""

from __future__ import annotations

import time

import grpc
from locust import User
from trm.v1 import trm_pb2, trm_pb2_grpc

from loadtests.entry_names import STREAM_COMPLETE, STREAM_FIRST_STEP, UNARY


class ReasoningServiceUser(User):
    """Base user holding one channel to `host` ("127.0.0.1:PORT") and timing trm.v1 calls."""

    abstract = True
    call_timeout_s: float = 30.0

    def __init__(self, environment) -> None:
        super().__init__(environment)
        self.channel = grpc.insecure_channel(self.host)
        self.stub = trm_pb2_grpc.ReasoningServiceStub(self.channel)

    def on_stop(self) -> None:
        self.channel.close()

    def _record(self, request_type: str, name: str, started: float, length: int, failure: str | None) -> None:
        self.environment.events.request.fire(
            request_type=request_type,
            name=name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=length,
            exception=failure,  # Locust groups failures by this text: the gRPC status name
            context={},
        )

    def reason(self, request: trm_pb2.ReasonRequest) -> None:
        """One unary Reason call, recorded as type "Reason", named after the model."""
        started = time.perf_counter()
        try:
            reply = self.stub.Reason(request, timeout=self.call_timeout_s)
        except grpc.RpcError as err:
            self._record(UNARY, request.model, started, 0, err.code().name)
            return
        self._record(UNARY, request.model, started, reply.ByteSize(), None)

    def reason_stream(self, request: trm_pb2.ReasonRequest) -> None:
        """One ReasonStream call, recorded twice: time to the first step and time to the final step."""
        started = time.perf_counter()
        received = 0
        try:
            for step in self.stub.ReasonStream(request, timeout=self.call_timeout_s):
                if received == 0:
                    self._record(STREAM_FIRST_STEP, request.model, started, step.ByteSize(), None)
                received += step.ByteSize()
        except grpc.RpcError as err:
            failure = err.code().name
            if received == 0:
                self._record(STREAM_FIRST_STEP, request.model, started, 0, failure)
            self._record(STREAM_COMPLETE, request.model, started, received, failure)
            return
        self._record(STREAM_COMPLETE, request.model, started, received, None)
