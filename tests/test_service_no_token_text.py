"""Text that leaves no token after normalisation is refused by the shipped intent bundle, over gRPC and as an
LLM tool call (before, it was answered as a confident in-scope intent: `cancel`, halting confidence 0.91)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from trm.v1 import trm_pb2
from trm_client import TRMClient
from trm_client.tool_schema import tool_name
from trm_client.tools import ToolAdapter

from trm_service.testing import ServerProcess

INTENT = "intent-clinc150"
INTENT_BUNDLE = Path(__file__).resolve().parents[1] / "trm_service" / "models" / INTENT
NO_TOKEN_TEXTS = ["\x00\x00", "\u200b\u200b\u200b", "\ufffd", "\u200b\x00\ufffd\u200b", "\ufeff\u00ad\u0301"]
REFUSAL = "text leaves no tokens after normalisation"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess([INTENT_BUNDLE]) as process:
        yield process


@pytest.mark.parametrize("text", NO_TOKEN_TEXTS)
def test_text_that_leaves_no_token_is_invalid_argument(stub, text):
    with pytest.raises(grpc.RpcError) as caught:
        stub.Reason(trm_pb2.ReasonRequest(model=INTENT, text=text), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(REFUSAL)


def test_dropped_characters_around_words_do_not_change_the_answer(stub):
    clean = stub.Reason(trm_pb2.ReasonRequest(model=INTENT, text="play some jazz"), timeout=30)
    noisy = stub.Reason(trm_pb2.ReasonRequest(model=INTENT, text="\u200bplay some\x00 jazz\ufffd"), timeout=30)
    assert clean.answer.classification.label == noisy.answer.classification.label == "play_music"
    assert noisy.answer.classification.confidence == pytest.approx(clean.answer.classification.confidence)


def test_the_llm_tool_tells_the_agent_to_answer_itself(server):
    with TRMClient(server.target, timeout_s=30.0) as client:
        reply = json.loads(ToolAdapter(client).call_tool(tool_name(INTENT), {"text": "\u200b\x00\u200b"}))
    assert reply["defer_to_llm"] is True
    assert reply["error"]["code"] == "INVALID_ARGUMENT" and reply["error"]["message"].startswith(REFUSAL)
