"""The CLI's one-line answers."""

from __future__ import annotations

from trm_client.render import answer_summary, step_line
from trm_client.results import Classification, HaltReason, LabelScore, ReasonStep


def _answer(label: str, confidence: float, flagged: bool) -> Classification:
    return Classification(label, confidence, (LabelScore(label, confidence),), out_of_scope=flagged)


def test_a_flagged_answer_reads_as_a_deferral_not_only_as_out_of_scope():
    """QA: a model trained without an out-of-scope label printed 'unittest (out of scope)' for a right answer
    below its abstain threshold (half of an all-in-scope test set read so)."""
    assert answer_summary(_answer("unittest", 0.48, flagged=True)) == "unittest  (defer)"
    assert answer_summary(_answer("unittest", 0.95, flagged=False)) == "unittest"


def test_a_deferral_keeps_the_step_lines_columns():
    """QA: "(defer: out of scope or unsure)" overflowed the 32-character answer column of streamed steps."""
    lines = [step_line(ReasonStep(step=1, answer=_answer(label, 0.1, flagged), halt_confidence=1.0, change=0.0,
                                  elapsed_ms=1.0, final=True, halt_reason=HaltReason.HALTED, request_id="r",
                                  model_version="1.0.0"))
             for label, flagged in (("accept_reservations", True), ("alarm", False))]
    assert lines[0].index(" 0.100 ") == lines[1].index(" 0.100 ")
