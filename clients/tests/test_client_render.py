"""The CLI's one-line answers."""

from __future__ import annotations

from trm_client.render import answer_summary
from trm_client.results import Classification, LabelScore


def _answer(label: str, confidence: float, flagged: bool) -> Classification:
    return Classification(label, confidence, (LabelScore(label, confidence),), out_of_scope=flagged)


def test_a_flagged_answer_reads_as_a_deferral_not_only_as_out_of_scope():
    """QA: a model trained without an out-of-scope label printed 'unittest (out of scope)' for a right answer
    below its abstain threshold (half of an all-in-scope test set read so)."""
    assert answer_summary(_answer("unittest", 0.48, flagged=True)) == "unittest  (defer: out of scope or unsure)"
    assert answer_summary(_answer("unittest", 0.95, flagged=False)) == "unittest"
