"""The CLI's one-line answers."""

from __future__ import annotations

from trm_client import Budget, InputLimits, ModelInfo, TaskType
from trm_client.render import answer_summary, model_text, models_table, step_line
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


def test_the_models_table_stays_aligned_for_long_names_and_versions() -> None:
    """A version like 1.0.0+build7 (or a name past 24 characters) pushed the columns after it to the right."""
    limits = InputLimits(max_text_chars=100, max_tokens=16, grid_rows=0, grid_cols=0, max_steps=4, max_time_budget_ms=0)
    infos = [ModelInfo(name, version, TaskType.TEXT_CLASSIFICATION, "", ("a", "b"), limits, Budget())
             for name, version in (("intent", "1.0.0"), ("a-user-model-of-a-long-name-x", "1.0.0+build7"))]
    header, *rows = models_table(infos).splitlines()
    assert len({line.index(" text_classification") for line in rows}) == 1
    assert header.index("TASK") == rows[0].index("text_classification")


def test_a_model_of_one_step_reads_up_to_1_step() -> None:
    """Probe: `trm-client models intent-clinc150` printed "up to 1 steps"."""
    for steps, said in ((1, "up to 1 step;"), (8, "up to 8 steps;")):
        limits = InputLimits(max_text_chars=100, max_tokens=16, grid_rows=0, grid_cols=0, max_steps=steps,
                             max_time_budget_ms=0)
        info = ModelInfo("intent", "1.0.0", TaskType.TEXT_CLASSIFICATION, "", ("a", "b"), limits, Budget())
        assert said in model_text(info)
