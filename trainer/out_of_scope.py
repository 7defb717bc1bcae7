"""Out of scope by default: find a file's out-of-scope label, or, without one, calibrate the confidence
below which a model abstains (the server's `defer_to_llm`).

Both follow trainer/evaluate.py's `out_of_scope_mask`: an example is rejected when the out-of-scope
label wins or its top probability is below the threshold (`confidence < threshold`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

OUT_OF_SCOPE_NAMES = ("oos", "out_of_scope", "none")  # matched case-insensitively
DEFAULT_PRECISION = 0.95
FEW_ANSWERED = 0.5  # a fit whose abstain threshold answers less of its test set says why and what helps
LOWER_PRECISIONS = (0.9, 0.8)  # what they would answer on validation, told beside a threshold that answers little
LABELS_DISAGREE_GAP = 0.1  # test accuracy this far above validation's: the training file's labels may be wrong
FEW_CALIBRATION_ANSWERS = 200  # a threshold set on fewer answered validation rows is told with its precision's range


def no_precise_level(precision: float) -> str:
    """Why an abstain threshold answers nothing, as the fit and REPORT.md say it."""
    return f"no confidence level was {100 * precision:.0f}% precise on validation"


def find_out_of_scope_label(labels: Iterable[str]) -> str | None:
    """The label named oos, out_of_scope or none (any case), or None when there is none.

    Two such labels (say `oos` and `None`) are ambiguous: a ValueError asks for --oos-label."""
    found = sorted({label for label in labels if label.strip().lower() in OUT_OF_SCOPE_NAMES})
    if len(found) > 1:
        raise ValueError(
            f"labels {', '.join(repr(label) for label in found)} could each be the out-of-scope label; "
            "name the one to use with --oos-label"
        )
    return found[0] if found else None


@dataclass(frozen=True)
class AbstainCalibration:
    """A confidence threshold and what it does on the examples it was calibrated on."""

    threshold: float  # answer when the top probability is >= threshold, else abstain
    target_precision: float
    precision: float  # accuracy of the answered examples (nan when none is answered)
    coverage: float  # fraction of examples answered
    accuracy: float  # the top answer's accuracy on every example
    coverage_at_lower: tuple[tuple[float, float], ...] = ()  # (precision, coverage) for LOWER_PRECISIONS below target
    rows: int = 0  # the examples it was calibrated on

    def precision_range(self) -> tuple[int, float, float] | None:
        """The answered examples' count and the 95% (Wilson) interval of the precision that new inputs may see,
        where fewer than FEW_CALIBRATION_ANSWERS were answered (None otherwise, or where none was)."""
        answered = round(self.coverage * self.rows)
        if not 0 < answered < FEW_CALIBRATION_ANSWERS:
            return None
        interval = binomtest(round(self.precision * answered), answered).proportion_ci(method="wilson")
        return answered, float(interval.low), float(interval.high)

    @classmethod
    def from_json(cls, fields: dict | None) -> AbstainCalibration | None:
        """One from its record in a bundle's evaluation.json (None where there is none)."""
        if fields is None:
            return None
        return cls(**{**fields, "coverage_at_lower": tuple(map(tuple, fields.get("coverage_at_lower", ())))})

    def summary(self) -> str:
        if self.coverage == 0:
            return (f"abstain threshold: no confidence level reaches {100 * self.target_precision:.0f}% "
                    "precision on validation, so the model abstains on every input")
        return (f"abstain threshold {self.threshold:.4f}: {100 * self.precision:.1f}% precision on the "
                f"{100 * self.coverage:.1f}% of validation inputs it answers "
                f"(target {100 * self.target_precision:.0f}%)")


def calibrate_abstain_threshold(
    confidence: np.ndarray, correct: np.ndarray, target_precision: float = DEFAULT_PRECISION
) -> AbstainCalibration:
    """The lowest threshold on the top probability at which the answered validation examples are at
    least `target_precision` correct: the most inputs answered at that precision.

    `confidence` is each example's top probability, `correct` whether its prediction is right. Examples
    with equal confidence are answered or abstained together. When even the most confident examples
    fall short, the threshold lies above every confidence seen and the coverage is 0.
    """
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=bool).ravel()
    if confidence.shape != correct.shape or confidence.size == 0:
        raise ValueError(f"need one correctness flag per confidence, got {confidence.size} and {correct.size}")
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1], got {target_precision}")
    order = np.argsort(-confidence, kind="stable")
    ranked = confidence[order]
    precision = np.cumsum(correct[order]) / np.arange(1, len(ranked) + 1)
    # answering the top k is only possible where the k-th confidence differs from the (k+1)-th
    boundary = np.append(ranked[1:] != ranked[:-1], True)

    def last_reaching(target: float) -> int | None:
        reachable = np.flatnonzero(boundary & (precision >= target))
        return int(reachable[-1]) if reachable.size else None

    lower = tuple((target, 0.0 if (k := last_reaching(target)) is None else (k + 1) / len(ranked))
                  for target in LOWER_PRECISIONS if target < target_precision)
    accuracy = float(correct.mean())
    last = last_reaching(target_precision)
    if last is None:
        return AbstainCalibration(float(np.nextafter(ranked[0], np.inf)), target_precision, float("nan"), 0.0,
                                  accuracy, lower, len(ranked))
    return AbstainCalibration(float(ranked[last]), target_precision, float(precision[last]),
                              (last + 1) / len(ranked), accuracy, lower, len(ranked))


def deferral_note(metrics: dict[str, float], threshold: float, precision: float,
                  int8_served: bool = False, validation: AbstainCalibration | None = None) -> str | None:
    """What `trm-train fit` says after training when its abstain threshold (calibrated for `precision`) defers some
    of the test inputs (from the manifest's metrics: the int8 step's with `int8_served`, where they hold them): how
    many and how right the rest are, and, when it answers less than FEW_ANSWERED of them, why and what helps (with
    the `validation` calibration: what lower precisions would answer there, and whether the training file's labels
    seem to disagree with the test file's); None when it answers all."""
    served = "int8_test" if int8_served and "int8_test_answered_fraction" in metrics else "test"
    answered = metrics.get(f"{served}_answered_fraction")
    if answered is None or answered >= 1:
        return None
    uncertain = ""
    if validation is not None and (bounds := validation.precision_range()):
        count, low, high = bounds
        uncertain = (f" (its threshold was set on {count} validation answers, {100 * validation.precision:.0f}% right, "
                     f"which bound new inputs' only to {100 * low:.0f}-{100 * high:.0f}%: more rows narrow it)")
    if answered >= FEW_ANSWERED:
        return (f"note: the model defers {100 * (1 - answered):.1f}% of the test inputs (confidence below "
                f"{threshold:.3f}: `out_of_scope`, the tools' `defer_to_llm`) and answers the rest, "
                f"{100 * metrics[f'{served}_answered_accuracy']:.1f}% of them right{uncertain}; the accuracy above is "
                "its top answer's on every input")
    if answered == 0 and (validation is None or validation.coverage == 0):
        why = no_precise_level(precision)
    else:
        reached = precision if validation is None else validation.precision
        why = (f"it answers only {100 * answered:.1f}% of them, those of confidence {threshold:.3f} or more, the level "
               f"at which its answers were {100 * reached:.0f}% right on validation{uncertain}")
    test_accuracy = metrics[f"{served}_accuracy"]
    lower = "".join(f"; {target:g} answers {100 * coverage:.1f}% of validation"
                    for target, coverage in (validation.coverage_at_lower if validation else ())
                    if coverage > validation.coverage)
    ask = f"a lower --abstain-precision (now {precision:g}{lower}; 0 never defers)"
    if validation is not None and validation.coverage == 1:  # no lower precision can answer more of validation
        helps = (f"Every validation row was answered, so its threshold is the lowest confidence seen there and a lower "
                 f"--abstain-precision (now {precision:g}) changes nothing: validation rows like the test file's "
                 f"({validation.rows} now, drawn from the training file) would place it lower; --abstain-precision 0 "
                 "never defers")
    elif validation is not None and test_accuracy - validation.accuracy >= LABELS_DISAGREE_GAP:
        helps = (f"Its top answer was right for {100 * validation.accuracy:.1f}% of the validation rows, far fewer: "
                 "the training file's labels may disagree with the test file's (rows labelled wrongly, or alike "
                 f"texts labelled differently), and the threshold is measured against them; check the labels, or "
                 f"ask for {ask}")
    else:
        helps = f"More examples per label, or labels that are easier to tell apart, let it answer more; so does {ask}"
    return (f"note: the model defers {'every' if answered == 0 else 'most'} test input (`out_of_scope`, the tools' "
            f"`defer_to_llm`): {why}; its top answer is right for {100 * test_accuracy:.1f}% of the test inputs. "
            f"{helps}, its answers less often right: the same command with it exports this run again")
