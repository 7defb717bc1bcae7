"""The built-in baseline every text fit is compared with: a linear SVM on TF-IDF word 1-2-grams and
character 2-5-grams (the features of trainer/tfidf_teacher.py), trained on the training split and
scored on the test split. It is reported next to the TRM, never shipped.

`python -m trainer.baseline TRAIN [TEST]` prints its figures for a user's text,label file, trained and scored
on the rows `trm-train fit` gives it: TRAIN less its validation hold-out, and TEST (without TEST: a seeded,
stratified 10% of TRAIN held out for test, as much again for validation).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.pipeline import Pipeline

from trainer.arguments import whole_number
from trainer.data.text import LABEL_COLUMN, TEXT_COLUMN
from trainer.tfidf_teacher import fit_ngram_vectorizer, ngram_svm

DESCRIPTION = "linear baseline (TF-IDF word 1-2-grams + character 2-5-grams, LinearSVC)"


@dataclass(frozen=True)
class BaselineResult:
    """The baseline's figures on a test split; the out-of-scope figures only when it has such a label."""

    accuracy: float  # every test row, the out-of-scope label a class like the others
    in_scope_accuracy: float | None  # rows whose label is not the out-of-scope label
    oos_recall: float | None  # out-of-scope rows predicted as out of scope
    train_rows: int
    test_rows: int
    wall_time_s: float  # fitting and scoring

    def metrics(self) -> dict[str, float]:
        """The manifest's `baseline_test_*` metrics (docs/BUNDLE.md)."""
        figures = {"accuracy": self.accuracy, "in_scope_accuracy": self.in_scope_accuracy,
                   "oos_recall": self.oos_recall}
        return {f"baseline_test_{key}": round(value, 5) for key, value in figures.items() if value is not None}

    def summary(self) -> str:
        """One line for a console or a report, e.g. "linear baseline 92.7%"."""
        figures = f"accuracy {100 * self.accuracy:.2f}%"
        if self.in_scope_accuracy is not None:
            figures += f", in-scope {100 * self.in_scope_accuracy:.2f}%, out-of-scope recall "
            figures += "n/a" if self.oos_recall is None else f"{100 * self.oos_recall:.2f}%"
        return f"{DESCRIPTION}: {figures} ({self.train_rows:,} training rows, {self.wall_time_s:.0f} s)"


def comparison(metrics: dict[str, float], int8_served: bool = False, max_steps: int = 1) -> str | None:
    """The TRM next to the baseline in one line, from a manifest's metrics, e.g. "TRM 93.10% (the int8 step the
    server runs), linear baseline 92.70% (in-scope test accuracy): the TRM is ahead by 0.40 points; out-of-scope
    recall 28.6% against 21.1%" (the recall where both have an out-of-scope label); None without a baseline.
    With `int8_served` (the bundle ships model.int8.onnx, which the server runs by default) the TRM's figures are
    the int8 step's, where the metrics hold them. Where the baseline wins, the advice names what the TRM still
    brings: anytime steps and halting only for a model of `max_steps` (recursion.N_sup) above one."""
    key = "in_scope_accuracy" if "baseline_test_in_scope_accuracy" in metrics else "accuracy"
    if f"baseline_test_{key}" not in metrics or f"test_{key}" not in metrics:
        return None
    trm_set = "int8_test" if int8_served and f"int8_test_{key}" in metrics else "test"
    trm, baseline = 100 * metrics[f"{trm_set}_{key}"], 100 * metrics[f"baseline_test_{key}"]
    gap = trm - baseline
    lacks = ("(anytime steps, halting, one server for every model)" if max_steps > 1 else
             "(one server for every model, a calibrated confidence); this model runs one step, so it has no anytime "
             "steps to offer; more data or the other text preset (--preset) may close the gap")
    verdict = (f"the TRM is ahead by {gap:.2f} points" if gap > 0 else
               f"the baseline wins by {-gap:.2f} points: serve the TRM only for what the baseline lacks {lacks}"
               if gap < 0 else "a tie")
    measure = "in-scope test accuracy" if key == "in_scope_accuracy" else "test accuracy"
    step = " (the int8 step the server runs)" if trm_set == "int8_test" else ""
    line = f"TRM {trm:.2f}%{step}, linear baseline {baseline:.2f}% ({measure}): {verdict}"
    if key == "in_scope_accuracy" and f"{trm_set}_oos_recall" in metrics and "baseline_test_oos_recall" in metrics:
        line += (f"; out-of-scope recall {100 * metrics[f'{trm_set}_oos_recall']:.1f}% against "
                 f"{100 * metrics['baseline_test_oos_recall']:.1f}%")
    return line


def fit_linear_baseline(texts: Sequence[str], labels: Sequence[str], seed: int = 0) -> Pipeline:
    """The baseline fit on `texts` and their `labels` (deterministic for a seed)."""
    vectorizer, features = fit_ngram_vectorizer(list(texts))
    return Pipeline([("features", vectorizer), ("svm", ngram_svm(seed).fit(features, list(labels)))])


def score_linear_baseline(
    train_texts: Sequence[str], train_labels: Sequence[str], test_texts: Sequence[str],
    test_labels: Sequence[str], oos_label: str | None = None, seed: int = 0,
) -> BaselineResult:
    """Fits the baseline on the training split and scores it on the test split; with `oos_label`, also
    its in-scope accuracy and out-of-scope recall (the out-of-scope label predicted as a class)."""
    started = time.monotonic()
    predicted = fit_linear_baseline(train_texts, train_labels, seed).predict(list(test_texts))
    truth = np.asarray(test_labels, dtype=object)
    correct = predicted == truth
    in_scope_accuracy = oos_recall = None
    if oos_label is not None:
        out_of_scope = truth == oos_label
        in_scope_accuracy = float(correct[~out_of_scope].mean()) if (~out_of_scope).any() else None
        oos_recall = float(correct[out_of_scope].mean()) if out_of_scope.any() else None
    return BaselineResult(
        accuracy=float(correct.mean()), in_scope_accuracy=in_scope_accuracy, oos_recall=oos_recall,
        train_rows=len(train_texts), test_rows=len(test_texts), wall_time_s=time.monotonic() - started,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.baseline", description=__doc__)
    parser.add_argument("train", help="training CSV/TSV/JSONL/JSON (text,label)")
    parser.add_argument("test", nargs="?",
                        help="test CSV/TSV/JSONL/JSON (default: the seeded 10%% of TRAIN that trm-train fit tests on)")
    parser.add_argument("--seed", type=whole_number, default=0)
    parser.add_argument("--text-column", default=TEXT_COLUMN, metavar="NAME", help="the texts' column or field")
    parser.add_argument("--label-column", default=LABEL_COLUMN, metavar="NAME", help="the labels' column or field")
    parser.add_argument("--oos-label", metavar="LABEL", help="the out-of-scope label, as the fit's flag (default: a "
                        "label named oos, out_of_scope or none)")
    args = parser.parse_args(argv)
    from trainer.config import TrainConfig  # the fit's own split, checks and messages (and torch: imported here)
    from trainer.prepare import resolve_out_of_scope_label, text_splits

    config = TrainConfig(name="baseline", task="text", data=args.train, test_data=args.test, seed=args.seed,
                         text_column=args.text_column, label_column=args.label_column)
    try:
        train, _, test = text_splits(config)
        oos_label = resolve_out_of_scope_label(args.oos_label, sorted(set(train.labels)))
    except ValueError as error:  # DataError among them, and two labels that both name "out of scope"
        print(f"python -m trainer.baseline: data error: {error}", file=sys.stderr)
        return 2
    result = score_linear_baseline(train.texts, train.labels, test.texts, test.labels, oos_label, args.seed)
    print(result.summary())
    print(json.dumps({"out_of_scope_label": oos_label, **asdict(result)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
