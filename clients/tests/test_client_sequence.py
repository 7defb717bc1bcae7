"""Sequence models through the SDK, the CLI and the tool adapter, against a real server (random weights)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from sdk_test_support import TEXT_MODEL
from test_client_cli import trm_client
from test_client_docs import CLIENTS_README, json_examples
from test_client_examples import EXAMPLES, VOICE, run_example
from trm_client import AsyncTRMClient, Budget, HaltReason, TaskType, TRMClient, WrittenText
from trm_client.tools import ToolAdapter

from trainer.testing import make_random_sequence_bundle
from trm_service.testing import ServerProcess

MODEL = "dictation-test"
UNSURE_MODEL = "dictation-unsure"  # the same weights, every answer of which is below its unsure threshold
CHECKED_MODEL = "dictation-checked"  # the same weights, with the spoken-numbers check
SPOKEN = "def parse open paren path close paren colon"


@pytest.fixture(scope="module")
def sequence_server(tmp_path_factory: pytest.TempPathFactory, bundles: dict[str, Path]) -> Iterator[ServerProcess]:
    """The random sequence bundle next to the random intent bundle (for the voice pipeline's chain)."""
    path: Path = make_random_sequence_bundle(tmp_path_factory.mktemp("sequence"), name=MODEL)[0]
    unsure = make_random_sequence_bundle(tmp_path_factory.mktemp("sequence"), name=UNSURE_MODEL, unsure_below=0.99)[0]
    checked = make_random_sequence_bundle(tmp_path_factory.mktemp("sequence"), name=CHECKED_MODEL,
                                          checks=("spoken_numbers",))[0]
    with ServerProcess([path, unsure, checked, bundles["text"]]) as process:
        yield process


@pytest.fixture
def sequence_client(sequence_server: ServerProcess) -> Iterator[TRMClient]:
    with TRMClient(sequence_server.target, timeout_s=30.0) as client:
        yield client


def test_reason_returns_written_text_and_the_stream_ends_with_it(sequence_client):
    info = sequence_client.model(MODEL)
    assert info.task is TaskType.SEQUENCE and info.limits.max_output_tokens == 24
    result = sequence_client.reason(MODEL, SPOKEN)
    assert isinstance(result.answer, WrittenText) and result.prediction == result.answer.text
    assert result.steps >= result.answer.tokens > 0
    steps = list(sequence_client.reason_stream(MODEL, SPOKEN))
    assert [s.step for s in steps] == list(range(1, result.steps + 1))
    assert steps[-1].final and steps[-1].answer.text == result.answer.text
    assert steps[-1].halt_reason is result.halt_reason
    emitted = [s.answer.token_index for s in steps if s.answer.token_emitted]
    assert emitted == list(range(result.answer.tokens))


def test_a_step_budget_is_per_token(sequence_client):
    result = sequence_client.reason(MODEL, SPOKEN, budget=Budget(max_steps=1))
    assert result.steps == result.answer.tokens and result.answer.mean_steps_per_token == 1.0


def test_the_async_client_gets_the_same_text(sequence_server, sequence_client):
    async def ask() -> str:
        async with AsyncTRMClient(sequence_server.target, timeout_s=30.0) as client:
            return (await client.reason(MODEL, SPOKEN)).prediction

    assert asyncio.run(ask()) == sequence_client.reason(MODEL, SPOKEN).prediction


def test_the_cli_prints_the_text_and_streams_it_token_by_token(sequence_server, sequence_client):
    expected = sequence_client.reason(MODEL, SPOKEN)
    done = trm_client("reason", MODEL, SPOKEN, target=sequence_server.target)
    assert done.returncode == 0, done.stderr
    assert f"answer:      {expected.answer.text}" in done.stdout
    assert f"tokens:      {expected.answer.tokens}," in done.stdout
    streamed = trm_client("reason", MODEL, SPOKEN, "--stream", target=sequence_server.target)
    lines = streamed.stdout.splitlines()
    assert len(lines) == expected.steps and lines[0].split()[:4] == ["step", "1", "token", "0.1"]
    assert lines[-1].endswith(f"{expected.answer.text}  [{expected.halt_reason.value}; confidence "
                              f"{expected.answer.confidence:.3f}]")
    as_json = json.loads(trm_client("reason", MODEL, SPOKEN, "--json", target=sequence_server.target).stdout)
    assert as_json["prediction"] == expected.answer.text and as_json["answer"]["tokens"] == expected.answer.tokens


def test_the_tool_takes_words_and_returns_the_text(sequence_client):
    adapter = ToolAdapter(sequence_client)
    (tool,) = [t for t in adapter.tools() if t["function"]["name"] == "trm_dictation_test"]
    parameters = tool["function"]["parameters"]
    assert set(parameters["properties"]) == {"text", "max_steps"}
    Draft202012Validator(parameters).validate({"text": SPOKEN, "max_steps": 2})
    reply = json.loads(adapter.call_tool(tool["function"]["name"], {"text": SPOKEN}))
    direct = sequence_client.reason(MODEL, SPOKEN)
    assert reply["answer"] == direct.answer.text and reply["steps"] == direct.steps
    assert reply["defer_to_llm"] is (direct.halt_reason is not HaltReason.HALTED)
    (documented,) = [e for e in json_examples(CLIENTS_README) if e.get("model") == "code-dictation"]
    assert direct.halt_reason is HaltReason.HALTED and documented.keys() == reply.keys()


def test_an_unsure_text_is_deferred_by_the_tool_and_flagged_by_the_cli(sequence_server, sequence_client, tmp_path):
    """The server marks a text below the model's calibrated confidence unsure: the tool tells the LLM to answer
    itself (low_confidence), the CLI says so; the same text from the model without a threshold is not deferred."""
    adapter = ToolAdapter(sequence_client)
    sure = json.loads(adapter.call_tool("trm_dictation_test", {"text": SPOKEN}))
    unsure = json.loads(adapter.call_tool("trm_dictation_unsure", {"text": SPOKEN}))
    direct = sequence_client.reason(UNSURE_MODEL, SPOKEN)
    assert direct.answer.unsure and direct.answer.confidence < 0.99
    assert unsure["answer"] == sure["answer"] and unsure["confidence"] == round(direct.answer.confidence, 3)
    assert (unsure["defer_to_llm"], unsure["defer_reason"]) == (True, "low_confidence")
    assert sure["defer_to_llm"] is False and "defer_reason" not in sure
    done = trm_client("reason", UNSURE_MODEL, SPOKEN, target=sequence_server.target)
    assert done.returncode == 0 and "defer:       unsure: below the model's calibrated confidence" in done.stdout
    assert "defer:" not in trm_client("reason", MODEL, SPOKEN, target=sequence_server.target).stdout
    assert sequence_client.model(UNSURE_MODEL).unsure_below == pytest.approx(0.99)
    assert sequence_client.model(MODEL).unsure_below == 0.0
    # QA: the stream's last line and reason-batch's lines did not say so
    streamed = trm_client("reason", UNSURE_MODEL, SPOKEN, "--stream", target=sequence_server.target).stdout
    confidence = f"{direct.answer.confidence:.3f}"
    assert streamed.splitlines()[-1].endswith(f"[halted; confidence {confidence}; defer: low_confidence]")
    lines = tmp_path / "lines.txt"
    lines.write_text(f"{SPOKEN}\n")
    batch = trm_client("reason-batch", UNSURE_MODEL, str(lines), target=sequence_server.target).stdout
    assert batch == f"line 1: {direct.answer.text} ({direct.steps} steps, defer: low_confidence)\n"


def test_a_text_whose_numbers_the_words_do_not_say_is_deferred_by_the_tool_and_flagged_by_the_cli(
        sequence_server, sequence_client):
    """The spoken-numbers check: the SDK reads the flag and the model's checks, the tool defers the text with
    numbers_disagree, the CLI says why; a text that passes is not deferred."""
    assert sequence_client.model(CHECKED_MODEL).checks == ("spoken_numbers",)
    assert sequence_client.model(MODEL).checks == ()
    results = {words: sequence_client.reason(CHECKED_MODEL, f"x equals {words}")
               for words in ("one", "two three", "ten thousand four", "nineteen oh five", "seven seven seven")}
    failing = [words for words, result in results.items() if result.answer.numbers_disagree]
    passing = [words for words, result in results.items() if not result.answer.numbers_disagree]
    assert failing and passing, {words: result.answer.text for words, result in results.items()}
    adapter = ToolAdapter(sequence_client)
    deferred = json.loads(adapter.call_tool("trm_dictation_checked", {"text": f"x equals {failing[0]}"}))
    assert (deferred["defer_to_llm"], deferred["defer_reason"]) == (True, "numbers_disagree")
    assert results[failing[0]].answer.unsure and not results[passing[0]].answer.unsure
    kept = json.loads(adapter.call_tool("trm_dictation_checked", {"text": f"x equals {passing[0]}"}))
    assert kept.get("defer_reason") in (None, "incomplete", "empty")
    done = trm_client("reason", CHECKED_MODEL, f"x equals {failing[0]}", target=sequence_server.target)
    assert done.returncode == 0 and "defer:       unsure: writes a number the words do not say" in done.stdout


def test_the_voice_pipeline_chains_the_dictate_intent_to_the_dictation_model(sequence_server, sequence_client):
    """The random intent model's label for the utterance stands in for `dictate`; the chain itself is real, and
    the words reach the dictation model as it was trained on them (a recogniser's capitals and commas gone)."""
    utterance = f"Uh, type {SPOKEN.capitalize().replace(' ', ', ', 1)}."
    label = sequence_client.reason(TEXT_MODEL, utterance).prediction
    done = run_example(VOICE / "pipeline.py", "--target", sequence_server.target, "--model", TEXT_MODEL,
                       "--min-confidence", "0", "--json", "--dictation-model", MODEL, "--dictate-label", label,
                       stdin=f"{utterance}\nopen main dot py\n")
    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first["written"] == sequence_client.reason(MODEL, SPOKEN).prediction
    assert ("written" in second) is (second["intent"] == label)


def test_the_agent_loop_calls_a_sequence_tool_and_answers_with_its_text(sequence_server, sequence_client):
    done = run_example(EXAMPLES / "agent_loop.py", "--target", sequence_server.target, "--tool", "trm_dictation_test",
                       SPOKEN)
    assert done.returncode == 0, done.stderr
    tool_line = next(line for line in done.stdout.splitlines() if line.strip().startswith("tool:"))
    reply = json.loads(tool_line.split("tool:", 1)[1])
    assert reply["answer"] == sequence_client.reason(MODEL, SPOKEN).prediction
    assert reply["defer_to_llm"] is False  # this random model ends this answer itself
    assert f"[scripted stand-in] Answer: {reply['answer']} (confidence {reply['confidence']})." in done.stdout


def test_the_voice_pipeline_with_a_fixed_bar_falls_back_on_incomplete_text(sequence_server, sequence_client):
    """--min-confidence is a classifier's bar; a sequence model's text falls back when it is incomplete."""
    done = run_example(VOICE / "pipeline.py", "--target", sequence_server.target, "--model", MODEL,
                       "--min-confidence", "0.5", "--json", stdin=f"{SPOKEN}\nplay jazz\n")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    results = [sequence_client.reason(MODEL, text) for text in (SPOKEN, "play jazz")]
    assert [result.halt_reason for result in results] == [HaltReason.HALTED, HaltReason.MAX_STEPS]
    assert [record["intent"] for record in records] == [result.prediction for result in results]
    assert [record["fallback"] for record in records] == [None, "incomplete"]


def test_a_sequence_model_as_the_pipelines_model_reads_the_words_as_dictated(sequence_server, sequence_client):
    """QA: `--model code-dictation` sent a recogniser's text as it came ("Return self dot value." wrote
    `Return self.value.value`, no fallback), and a byte that was not UTF-8 failed the utterance (U+FFFD refused)."""
    said = f"Type {SPOKEN.capitalize().replace(' ', ', ', 1)}.\n{SPOKEN} \ufffd\n"
    done = run_example(VOICE / "pipeline.py", "--target", sequence_server.target, "--model", MODEL,
                       "--min-confidence", "0", "--json", stdin=said)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [record["intent"] for record in records] == [sequence_client.reason(MODEL, SPOKEN).prediction] * 2


def test_an_answer_cut_at_the_output_limit_under_load_is_incomplete(tmp_path: Path) -> None:
    """"play jazz" never ends in this random model: under the load cap its tokens are cut short, and the answer
    still stops at the output limit, which makes it MAX_STEPS (incomplete), not LOAD."""
    path: Path = make_random_sequence_bundle(tmp_path, name=MODEL)[0]
    overload = ["--max-batch-size", "1", "--max-queue", "16", "--load-wait-ms", "1"]
    with ServerProcess([path], extra_args=overload) as server, TRMClient(server.target, timeout_s=120) as client:
        budget = Budget(max_steps=3, halt_threshold=1.0)
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: client.reason(MODEL, "play jazz", budget=budget), range(6)))
        capped = server.sample_value("trm_halt_reasons_total", reason="HALT_REASON_LOAD")
    assert {result.halt_reason for result in results} == {HaltReason.MAX_STEPS}
    assert any(result.answer.mean_steps_per_token < 3 for result in results)  # some tokens were cut by the cap
    assert capped == 0
