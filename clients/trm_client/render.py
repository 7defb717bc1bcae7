"""Human-readable terminal output for the ``trm-client`` command."""

from __future__ import annotations

import re

from trm_client.headline import headline
from trm_client.model_info import ModelInfo, TaskType
from trm_client.results import Answer, Classification, GridSolution, ReasonResult, ReasonStep, WrittenText
from trm_client.tool_result import text_defer_reason

_FULL, _EMPTY = "█", "░"
_LISTED_LABELS = 20
_TEXT_DEFERS = {
    "incomplete": "incomplete: a step limit, time budget, deadline or the output limit cut it short",
    "empty": "empty: the model wrote nothing",
    "low_confidence": "unsure: below the model's calibrated confidence, likely wrong",
    "numbers_disagree": "unsure: writes a number the words do not say",
}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 and C1 controls but tab and newline


def printable(text: str) -> str:
    """`text` for a terminal: control characters written as escapes (`\\x1b`), so that a bundle's labels or
    description, or an answer, cannot clear the screen, recolour it or retitle the window (ESC, BEL, ...)."""
    return _CONTROL.sub(lambda found: repr(found.group())[1:-1], text)


def confidence_bar(value: float, width: int = 20) -> str:
    """A bar of ``width`` cells, filled in proportion to ``value`` in [0, 1]."""
    filled = round(max(0.0, min(1.0, value)) * width)
    return _FULL * filled + _EMPTY * (width - filled)


def models_table(infos: list[ModelInfo]) -> str:
    """One line per hosted model: name, version, task, output size, step limit, headline test metric."""
    name_width = max([24, *(len(info.name) for info in infos)])  # a user's long names and versions stay aligned
    version_width = max([10, *(len(info.version) for info in infos)])
    header = (f"{'MODEL':<{name_width}} {'VERSION':<{version_width}} {'TASK':<20} {'LABELS':>6} {'MAX STEPS':>9}  "
              "TEST METRIC")
    lines = [header]
    for info in infos:
        known_by = headline(info.metrics, info.served_step, len(info.labels))
        lines.append(
            f"{info.name:<{name_width}} {info.version:<{version_width}} {info.task.value:<20} {len(info.labels):>6} "
            f"{info.limits.max_steps:>9}  {known_by.text() if known_by else '-'}"
        )
    return "\n".join(lines)


def model_text(info: ModelInfo) -> str:
    """One model described for a person (`trm-client models MODEL`): what it is, its labels, limits and figure."""
    limits = info.limits
    reads = (f"a {limits.grid_rows}x{limits.grid_cols} grid" if limits.grid_rows
             else f"a text of up to {limits.max_text_chars:,} characters" if not limits.max_tokens
             else f"a text's first {limits.max_tokens} tokens (within its first {limits.max_text_chars:,} characters)")
    writes = f", writes up to {limits.max_output_tokens} characters" if limits.max_output_tokens else ""
    known_by = headline(info.metrics, info.served_step, len(info.labels))
    return "\n".join([
        f"model:       {info.name} {info.version} (loaded versions: {', '.join(info.versions) or info.version})",
        f"task:        {info.task.value}",
        *([f"description: {' '.join(info.description.split())}"] if info.description.strip() else []),
        f"{'symbols:' if info.task is TaskType.SEQUENCE else 'labels:':<13}{len(info.labels)}: "
        f"{info.listed_labels(_LISTED_LABELS)}",
        f"limits:      reads {reads}{writes}; up to {limits.max_steps} step{'s' * (limits.max_steps != 1)}; "
        f"time budgets up to {limits.max_time_budget_ms:,} ms",
        f"test metric: {known_by.text() if known_by else '-'}",
    ])


def answer_summary(answer: Answer) -> str:
    """A short one-line view of an answer."""
    if isinstance(answer, Classification):
        return f"{answer.label}  (defer)" if answer.out_of_scope else answer.label
    if isinstance(answer, WrittenText):
        return answer.text
    return f"grid {answer.rows}x{answer.cols}, verified={'yes' if answer.verified else 'no'}"


def batch_line_answer(answer: Answer) -> str:
    """An answer as a line of `reason-batch` gives it: a grid's cells row by row, as its input line was written,
    and whether the model verified them; else `answer_summary`."""
    if isinstance(answer, GridSolution):
        return f"{answer.cells}  verified={'yes' if answer.verified else 'no'}"
    return answer_summary(answer)


def live_line(step: ReasonStep, columns: int) -> str:
    """A streamed step as the live view shows it on a terminal of `columns`: a step before the last cut to one
    row, which the next step's clearing of its row then removes whole (a wrapped line left its rows behind)."""
    line = step_line(step)
    return line if step.final else line[: max(1, columns - 1)]


def step_line(step: ReasonStep) -> str:
    """One line for a streamed step: step, current answer, confidence bar, halting confidence (sequence models:
    the token refined, its step and top candidates, and the text so far)."""
    if isinstance(step.answer, WrittenText):
        return _token_step_line(step, step.answer)
    line = (
        f"step {step.step:>2}  {answer_summary(step.answer):<32} {step.confidence:5.3f} "
        f"{confidence_bar(step.confidence)}  halt {step.halt_confidence:4.2f}  {step.elapsed_ms:7.1f} ms"
    )
    if step.final and step.halt_reason is not None:
        line += f"  [{step.halt_reason.value}]"
    return line


def _token_step_line(step: ReasonStep, answer: WrittenText) -> str:
    candidates = " ".join(f"{c.label!r} {c.probability:.2f}" for c in answer.candidates)
    mark = "emit" if answer.token_emitted else "    "
    line = (f"step {step.step:>3}  token {answer.token_index:>2}.{answer.token_step}  {mark}  halt "
            f"{step.halt_confidence:4.2f}  [{candidates}]  {answer.text}")
    if step.final and step.halt_reason is not None:
        line += f"  [{step.halt_reason.value}; confidence {answer.confidence:.3f}"
        reason = text_defer_reason(step)
        line += f"; defer: {reason}]" if reason else "]"
    return line


def text_defer_note(result: ReasonResult) -> str | None:
    """Why not to rely on a written text, in words (`text_defer_reason`), or None."""
    reason = text_defer_reason(result)
    return _TEXT_DEFERS[reason] if reason else None


def grid_block(answer: GridSolution) -> str:
    """The grid's rows, one per line."""
    return "\n".join(" ".join(row) for row in answer.row_strings())


def result_text(result: ReasonResult) -> str:
    """A multi-line view of a final result."""
    answer = result.answer
    lines = [f"model:       {result.model} {result.model_version}", f"answer:      {answer_summary(answer)}"]
    if isinstance(answer, Classification) and answer.out_of_scope:
        # the server flags its out-of-scope label and, as much, a confidence below the model's calibrated
        # threshold: for a model trained without an out-of-scope label that is an abstention, not a scope
        lines.append("defer:       out of scope, or below the model's calibrated confidence")
    if isinstance(answer, WrittenText) and (note := text_defer_note(result)):
        lines.append(f"defer:       {note}")
    lines.append(f"confidence:  {result.confidence:.3f} {confidence_bar(result.confidence)}")
    if isinstance(answer, WrittenText):
        lines.append(f"tokens:      {answer.tokens}, {answer.mean_steps_per_token:.2f} refinement steps each")
    if isinstance(answer, Classification) and len(answer.top) > 1:
        lines.append("top:         " + ", ".join(f"{s.label} {s.probability:.3f}" for s in answer.top))
    lines += [
        f"steps:       {result.steps} ({result.halt_reason.value}, "
        f"halt confidence {result.halt_confidence:.2f})",
        f"latency:     {result.latency_ms:.1f} ms server, {result.round_trip_ms:.1f} ms round trip",
        f"request id:  {result.request_id}",
    ]
    if isinstance(answer, GridSolution):
        lines.append(grid_block(answer))
    return "\n".join(lines)
