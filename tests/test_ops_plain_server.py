"""The benchmark's plain ONNX Runtime server (loadtests.plain_server) answers what the service answers:
both on 127.0.0.1 with the shipped text and Sudoku bundles, the same real test-split inputs sent to each
one at a time; plus its errors for requests it does not serve."""

from __future__ import annotations

import random
from collections.abc import Iterator

import grpc
import pytest
from trm.v1 import trm_pb2, trm_pb2_grpc

from loadtests.inputs import data_dir, load_inputs
from loadtests.local_server import plain_server, service
from loadtests.plain_server import HALTING_ONLY
from trm_bundle.manifest import load_bundle
from trm_service.config import DEFAULT_MODELS_DIR

SAMPLES = {"intent-clinc150": 150, "routing-20ng": 60, "sudoku": 16}
PROBABILITY_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def plain_stub() -> Iterator[trm_pb2_grpc.ReasoningServiceStub]:
    with plain_server(DEFAULT_MODELS_DIR) as (target, _pid), grpc.insecure_channel(target) as channel:
        yield trm_pb2_grpc.ReasoningServiceStub(channel)


def real_requests(model: str, count: int) -> list[trm_pb2.ReasonRequest]:
    """A seeded sample of the model's test split: texts cut to its max_chars as a client would; grids asking
    for the halting rule alone (the plain server has no verified stop)."""
    inputs = load_inputs(data_dir(), [model])[model]
    chosen = random.Random(7).sample(inputs.samples, count)
    if inputs.kind == "grid":
        return [trm_pb2.ReasonRequest(model=model, grid=trm_pb2.Grid(cells=cells), budget=HALTING_ONLY)
                for cells in chosen]  # fmt: skip
    max_chars = load_bundle(DEFAULT_MODELS_DIR / model).manifest.input.max_chars
    return [trm_pb2.ReasonRequest(model=model, text=text[:max_chars], top_k=5) for text in chosen]


@pytest.mark.parametrize("model", list(SAMPLES))
def test_plain_server_answers_like_the_service(model: str, plain_stub: trm_pb2_grpc.ReasoningServiceStub) -> None:
    requests = real_requests(model, SAMPLES[model])
    with service(DEFAULT_MODELS_DIR) as server, grpc.insecure_channel(server.target) as channel:
        ours = [trm_pb2_grpc.ReasoningServiceStub(channel).Reason(r, timeout=30) for r in requests]
    theirs = [plain_stub.Reason(r, timeout=30) for r in requests]

    for request, mine, plain in zip(requests, ours, theirs, strict=True):
        where = f"{model}: {(request.text or request.grid.cells)[:60]!r}"
        assert plain.halt_confidence == pytest.approx(mine.halt_confidence, abs=PROBABILITY_TOLERANCE), where
        assert (plain.steps, plain.halt_reason) == (mine.steps, mine.halt_reason), where
        assert (plain.model, plain.model_version) == (mine.model, mine.model_version)
        if request.HasField("grid"):
            g, h = mine.answer.grid, plain.answer.grid
            assert (h.rows, h.cols, h.cells, h.verified) == (g.rows, g.cols, g.cells, g.verified), where
            assert list(h.confidence) == pytest.approx(list(g.confidence), abs=PROBABILITY_TOLERANCE), where
            continue
        a, b = mine.answer.classification, plain.answer.classification
        assert b.label == a.label, where
        assert [s.label for s in b.top] == [s.label for s in a.top], where
        assert b.confidence == pytest.approx(a.confidence, abs=PROBABILITY_TOLERANCE), where
        for p, q in zip(b.top, a.top, strict=True):
            assert p.probability == pytest.approx(q.probability, abs=PROBABILITY_TOLERANCE), where
        assert b.out_of_scope == a.out_of_scope, where


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (trm_pb2.ReasonRequest(model="chess", text="e4"), grpc.StatusCode.NOT_FOUND),
        (trm_pb2.ReasonRequest(model="sudoku", grid=trm_pb2.Grid(cells="0" * 80)), grpc.StatusCode.INVALID_ARGUMENT),
        (trm_pb2.ReasonRequest(model="sudoku", grid=trm_pb2.Grid(cells="x" * 81)), grpc.StatusCode.INVALID_ARGUMENT),
        (trm_pb2.ReasonRequest(model="sudoku", text="0" * 81), grpc.StatusCode.INVALID_ARGUMENT),
        (trm_pb2.ReasonRequest(model="intent-clinc150", text="  "), grpc.StatusCode.INVALID_ARGUMENT),
        (trm_pb2.ReasonRequest(model="intent-clinc150", text="x" * 2001), grpc.StatusCode.INVALID_ARGUMENT),
        (trm_pb2.ReasonRequest(model="intent-clinc150", text="hi", top_k=1000), grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=["unknown-model", "short-grid", "grid-symbols", "text-for-grid", "blank-text", "too-long", "top-k"],
)
def test_plain_server_refuses_what_it_does_not_serve(
    request_: trm_pb2.ReasonRequest, code: grpc.StatusCode, plain_stub: trm_pb2_grpc.ReasoningServiceStub
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        plain_stub.Reason(request_, timeout=30)
    assert raised.value.code() == code
    assert plain_stub.Reason(trm_pb2.ReasonRequest(model="intent-clinc150", text="what is my balance"), timeout=30)
