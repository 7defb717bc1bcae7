"""The idle fast path through a real server: a call that finds the server idle runs its first step on the
event loop thread (counted in trm_steps_on_event_loop_total); calls sent together go to the model's thread,
and every call, refused ones included, leaves the server idle again when it ends."""

from __future__ import annotations

import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from test_service_support import TEXT_MODEL
from trm.v1 import trm_pb2, trm_pb2_grpc

from trm_service.api.occupancy import IDLE_GAP_S
from trm_service.testing import ServerProcess

CALLERS, CALLS_EACH = 8, 20
REQUEST = trm_pb2.ReasonRequest(model=TEXT_MODEL, text="play some jazz")


def steps_on_loop(server: ServerProcess) -> float:
    page = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    prefix = f'trm_steps_on_event_loop_total{{model="{TEXT_MODEL}"}} '
    return next(float(line.removeprefix(prefix)) for line in page.splitlines() if line.startswith(prefix))


def lone_call(stub: trm_pb2_grpc.ReasoningServiceStub, request: trm_pb2.ReasonRequest = REQUEST) -> None:
    time.sleep(IDLE_GAP_S * 50)  # the call before it has long ended
    try:
        stub.Reason(request, timeout=30)
    except grpc.RpcError as err:
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_lone_calls_step_on_the_loop_and_calls_sent_together_on_the_models_thread(text_bundle: Path) -> None:
    with ServerProcess([text_bundle]) as server, grpc.insecure_channel(server.target) as channel:
        stub = trm_pb2_grpc.ReasoningServiceStub(channel)
        for _ in range(3):  # the first call at a new length is slow in ONNX Runtime; the rule smooths over calls
            lone_call(stub)
        counted = steps_on_loop(server)
        assert counted >= 1  # the calls found the server idle (their steps are short)
        lone_call(stub)
        assert steps_on_loop(server) == counted + 1
        with ThreadPoolExecutor(CALLERS) as pool:  # callers that send their next call as soon as one returns
            list(pool.map(lambda _: [stub.Reason(REQUEST, timeout=30) for _ in range(CALLS_EACH)], range(CALLERS)))
        under_load = steps_on_loop(server) - counted - 1
        assert under_load <= CALLERS * CALLS_EACH // 10, under_load  # calls behind calls: the model's thread
        lone_call(stub, trm_pb2.ReasonRequest(model=TEXT_MODEL, text=" "))  # refused: INVALID_ARGUMENT
        before = steps_on_loop(server)
        lone_call(stub)
        assert steps_on_loop(server) == before + 1  # every call before it, refused ones too, has left
