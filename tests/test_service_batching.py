"""64 concurrent clients are really batched, and get exactly what they get one at a time."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from test_service_support import LONG_MODEL
from trm.v1 import trm_pb2, trm_pb2_grpc

from trm_service.testing import ServerProcess

CLIENTS = 64
STEPS = 40
WORDS = (
    "play", "jazz", "wake", "seven", "weather", "paris", "say", "thanks", "german", "alarm", "rain", "joke",
)


def _request(i: int) -> trm_pb2.ReasonRequest:
    text = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(1 + i % 5))
    budget = trm_pb2.Budget(max_steps=STEPS, halt_threshold=1.0)
    return trm_pb2.ReasonRequest(model=LONG_MODEL, text=f"{text} {i}", top_k=5, budget=budget)


def _summary(response: trm_pb2.ReasonResponse) -> tuple:
    top = response.answer.classification.top
    return response.steps, response.halt_reason, tuple(s.label for s in top)


def test_concurrent_clients_are_batched_and_match_one_at_a_time(long_bundle: Path):
    with ServerProcess([long_bundle]) as server:
        with grpc.insecure_channel(server.target) as channel:
            stub = trm_pb2_grpc.ReasoningServiceStub(channel)
            alone = [stub.Reason(_request(i), timeout=60) for i in range(CLIENTS)]
        single_steps = server.sample_value("trm_batch_size_count")
        assert server.sample_value("trm_batch_size_bucket", le="1.5") == single_steps == CLIENTS * STEPS

        start = threading.Barrier(CLIENTS)

        def client(i: int) -> trm_pb2.ReasonResponse:
            with grpc.insecure_channel(server.target) as own_channel:
                own_stub = trm_pb2_grpc.ReasoningServiceStub(own_channel)
                own_stub.ListModels(trm_pb2.ListModelsRequest(), timeout=60)  # connected before the race
                start.wait(timeout=60)
                return own_stub.Reason(_request(i), timeout=60)

        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            together = list(pool.map(client, range(CLIENTS)))

        multi_request_steps = server.sample_value("trm_batch_size_count") - server.sample_value(
            "trm_batch_size_bucket", le="1.5"
        )
        assert multi_request_steps > 0  # the batch-size histogram has observations above 1
        concurrent_steps = server.sample_value("trm_batch_size_count") - single_steps
        print(f"{CLIENTS} clients x {STEPS} steps ran as {concurrent_steps:.0f} batched steps")
        assert concurrent_steps <= CLIENTS * STEPS / 2  # steps held two requests or more on average
    for one, batched in zip(alone, together, strict=True):
        assert _summary(batched) == _summary(one)
        assert batched.halt_confidence == one.halt_confidence
        for a, b in zip(one.answer.classification.top, batched.answer.classification.top, strict=True):
            assert b.probability == a.probability
    assert len({_summary(r)[2] for r in alone}) > 1  # the inputs really differ
