"""Request validation against a model's manifest and codec: defaults, ranges and the messages people see."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import Whitespace
from trm.v1 import trm_pb2

from trm_bundle.manifest import parse_manifest
from trm_service.api.validation import (
    RequestError,
    check_request_id,
    parse_message,
    validate_reason_request,
)
from trm_service.runtime.grid_codec import GridCodec
from trm_service.runtime.text_codec import TextCodec
from trm_service.scheduler.ticket import StepResult

SHA = "0" * 64
MAX_BUDGET_MS = 60_000


def _manifest(kind: str, **halting):
    data = {
        "schema_version": 1, "name": "m", "version": "1.0.0",
        "recursion": {"n": 2, "T": 2, "N_sup": 16, "state_shape": [17, 32]},
        "halting": {"threshold": 0.6, "min_steps": 2, **halting},
        "onnx": {"fp32": "model.onnx", "int8": None, "opset": 17},
        "files": {"model.onnx": SHA, "tokenizer.json": SHA},
        "metrics": {},
    }
    if kind == "text":
        data.update(task="text_classification", labels=["a", "b", "c", "d", "oos"],
                    input={"kind": "text", "max_tokens": 16, "max_chars": 20, "pad_id": 0,
                           "tokenizer": "tokenizer.json"},
                    out_of_scope={"label": "oos", "threshold": 0.4})
    else:
        data.update(task="grid", labels=[str(d) for d in range(10)],
                    input={"kind": "grid", "rows": 9, "cols": 9, "blank": "0.", "alphabet": "123456789",
                           "rules": "sudoku"})
    return parse_manifest(data)


def _tokenizer(max_tokens: int) -> Tokenizer:
    """A word-level tokenizer with BERT's normalisation that pads and truncates to max_tokens, as bundles'
    tokenizers do."""
    tokenizer = Tokenizer(WordLevel({"[PAD]": 0, "[UNK]": 1, "hi": 2, "hello": 3}, unk_token="[UNK]"))
    tokenizer.add_special_tokens(["[PAD]", "[UNK]"])
    tokenizer.normalizer = BertNormalizer()
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.enable_padding(length=max_tokens, pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_tokens)
    return tokenizer


TEXT, GRID = _manifest("text"), _manifest("grid")
TEXT_CODEC, GRID_CODEC = TextCodec(_tokenizer(16), TEXT), GridCodec(GRID)


def _validate(manifest, **fields):
    codec = TEXT_CODEC if manifest is TEXT else GRID_CODEC
    return validate_reason_request(trm_pb2.ReasonRequest(model="m", **fields), codec, manifest, MAX_BUDGET_MS)


def _top_labels(valid) -> int:
    step = StepResult(step=1, logits=np.zeros(5, dtype=np.float32), halt_probability=0.0, elapsed_ms=0.0)
    return len(valid.input.reader.read(step).answer.classification.top)


def test_an_empty_budget_takes_the_model_defaults():
    valid = _validate(TEXT, text="hello")
    assert (valid.budget.max_steps, valid.budget.min_steps) == (16, 2)
    assert valid.budget.halt_threshold == pytest.approx(0.6)
    assert valid.time_budget_ms == 0 and _top_labels(valid) == 3 and valid.input.logged_input == "hello"
    assert valid.input.tokens.tolist() == [3] + [0] * 15


def test_explicit_budget_values_are_kept_and_min_steps_defaults_below_max_steps():
    valid = _validate(TEXT, text="hi", top_k=5, budget=trm_pb2.Budget(
        max_steps=1, halt_threshold=1.0, time_budget_ms=250))
    assert (valid.budget.max_steps, valid.budget.min_steps) == (1, 1)
    assert valid.budget.halt_threshold == 1.0 and valid.time_budget_ms == 250 and _top_labels(valid) == 5


def test_grid_values():
    cells = "5" + "." * 79 + "0"
    valid = _validate(GRID, grid=trm_pb2.Grid(cells=cells))
    assert valid.input.tokens.tolist() == [5] + [0] * 80 and valid.input.logged_input == cells


ROW_CLASH = "55" + "0" * 79
COLUMN_CLASH = "3" + "0" * 8 + "3" + "0" * 71
BOX_CLASH = "7" + "0" * 9 + "7" + "0" * 70
BAD_CELL = "0" * 12 + "x" + "0" * 68


def _grid(cells: str) -> dict:
    return {"grid": trm_pb2.Grid(cells=cells)}


def _budget(**fields) -> dict:
    return {"text": "hi", "budget": trm_pb2.Budget(**fields)}


@pytest.mark.parametrize(
    ("manifest", "fields", "message"),
    [
        (TEXT, {}, "the request has no input: model 'm' takes a text"),
        (GRID, {}, "the request has no input: model 'm' takes a grid"),
        (TEXT, _grid("1" * 81), "model 'm' classifies text: set ReasonRequest.text"),
        (GRID, {"text": "hi"}, "model 'm' solves 9x9 grids: set ReasonRequest.grid"),
        (TEXT, {"text": ""}, "text is empty"),
        (TEXT, {"text": "  \n\t "}, "text is blank (white space only)"),
        (TEXT, {"text": "x" * 21}, "text has 21 characters, and its first 20 (ModelInfo.limits.max_text_chars) do not "
                                   "hold the 16 tokens model 'm' reads"),
        (TEXT, {"text": "\x00\u200b\ufffd\u200b"}, "text leaves no tokens after normalisation"),
        (TEXT, {"text": "[PAD] [PAD]"}, "and reads its own markers ([PAD]"),
        (TEXT, {"text": "\u0301\u0302"}, "drops control characters, zero-width characters, U+FFFD and accents"),
        (GRID, _grid("1" * 80), "grid.cells must have 81 symbols (9x9, row-major), got 80"),
        (GRID, _grid("1" * 82), "got 82"),
        (GRID, _grid(BAD_CELL), "grid.cells[12] (row 2, column 4) is 'x': use one of '123456789' for a "
                                "given and '0' or '.' for a blank"),
        (GRID, _grid(ROW_CLASH), "the givens break the sudoku rules: row 1 has two 5s"),
        (GRID, _grid(COLUMN_CLASH), "column 1 has two 3s"),
        (GRID, _grid(BOX_CLASH), "box 1 has two 7s"),
        (TEXT, _budget(max_steps=17), "budget.max_steps must be 1..16"),
        (TEXT, _budget(min_steps=17), "min_steps (17) must not exceed 16, the most steps model"),
        (TEXT, _budget(max_steps=3, min_steps=4), "min_steps (4) must not exceed max_steps (3)"),
        (TEXT, _budget(halt_threshold=1.5), "budget.halt_threshold must be in (0, 1]"),
        (TEXT, _budget(halt_threshold=-0.1), "budget.halt_threshold must be in (0, 1] (got -0.1); 0 uses"),
        (TEXT, _budget(halt_threshold=1.0000001), "budget.halt_threshold must be in (0, 1] (got 1.0000001)"),
        (TEXT, _budget(halt_threshold=float("nan")), "halt_threshold"),
        (TEXT, _budget(time_budget_ms=60_001), "budget.time_budget_ms must be at most 60000 (got 60001)"),
        (TEXT, {"text": "hi", "top_k": 6}, "top_k must be at most 5 (the number of labels of 'm'), got 6"),
        (GRID, {**_grid("0" * 81), "top_k": 3}, "model 'm' answers a whole grid, one symbol per cell: leave top_k "
                                                 "unset (0), got 3"),
    ],
)
def test_bad_requests_are_invalid_argument_with_an_actionable_message(manifest, fields, message):
    with pytest.raises(RequestError) as caught:
        _validate(manifest, **fields)
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.message


@pytest.mark.parametrize("text", ["hi \x00\u200b", "bonjour", "日本語", "\x00[UNK]"])
def test_text_that_leaves_a_token_is_accepted_even_when_no_word_is_in_the_vocabulary(text):
    assert _validate(TEXT, text=text).input.logged_input == text


def test_a_malformed_body_is_invalid_argument():
    with pytest.raises(RequestError) as caught:
        parse_message(trm_pb2.ReasonRequest, b"\x1a\x02\xff\xfe")  # field 3 (text) with invalid UTF-8
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid trm.v1.ReasonRequest" in caught.value.message


@pytest.mark.parametrize(("value", "problem"), [
    ("", "'' is empty"),
    ("x" * 129, "'" + "x" * 64 + "'… (129 characters) is too long"),
    ("tab\there", "'tab\\there' has '\\t' (U+0009) at position 4"),
    ("del\x7f", "'del\\x7f' has '\\x7f' (U+007F) at position 4"),
    ("caf\u00e9", "'café' has 'é' (U+00E9) at position 4"),
    (" lead", "' lead' starts or ends with a space"),
    ("trail ", "'trail ' starts or ends with a space"),
])
def test_request_ids_must_be_short_printable_ascii_without_surrounding_spaces(value, problem):
    with pytest.raises(RequestError) as caught:
        check_request_id(value)
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.message.startswith(f"metadata x-request-id {problem}: use 1-128 printable ASCII characters")
    assert check_request_id("req-42_ok") == "req-42_ok"
    assert check_request_id("two words") == "two words"
