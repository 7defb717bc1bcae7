"""Evaluation: run a step over encoded sets, calibrate the thresholds on validation, and report the figures.

Everything here works on a `StepFn` (tokens, y, z) -> (y, z, logits, halt_logit) in numpy, so the same
code measures the PyTorch model during training, the exported ONNX step at export, and a bundle alone
(`trm-train eval`). docs/BUNDLE.md defines every figure; trainer/metrics.py computes them from a trace.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from trainer import metrics
from trainer.data.files import counted
from trainer.model import TRM
from trainer.out_of_scope import DEFAULT_PRECISION, AbstainCalibration, calibrate_abstain_threshold
from trainer.prepare import eval_sets
from trainer.sequence.evaluate import bundle_scores
from trainer.tasks import EncodedSet
from trm_bundle.manifest import STEP_INPUTS, OutOfScope
from trm_bundle.probabilities import softmax
from trm_service.runtime.loader import LoadOptions, load_model
from trm_service.runtime.session import SessionSettings

StepFn = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, ...]]


def onnx_step_fn(model_path: str | Path, threads: int = 0) -> StepFn:
    """A StepFn backed by an ONNX Runtime session of a bundle's model.onnx."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])

    def step(tokens: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(session.run(None, dict(zip(STEP_INPUTS, (tokens, y, z), strict=True))))

    return step


def torch_step_fn(model: TRM) -> StepFn:
    """A StepFn running the PyTorch model in eval mode on its device."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def step(tokens: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
        model.eval()
        args = (torch.as_tensor(a, device=device) for a in (tokens, y, z))
        return tuple(t.float().cpu().numpy() for t in model.step(*args))

    return step


def run_recursion(
    step: StepFn, tokens: np.ndarray, state_shape: tuple[int, int], max_steps: int, batch_size: int = 256
) -> metrics.Trace:
    """Runs max_steps supervision steps on every example and records each step's answer."""
    preds, confs, halts = [], [], []
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start : start + batch_size]
        y = np.zeros((len(chunk), *state_shape), dtype=np.float32)
        z = np.zeros_like(y)
        chunk_preds, chunk_confs, chunk_halts = [], [], []
        for _ in range(max_steps):
            y, z, logits, halt_logit = step(chunk, y, z)
            probs = softmax(logits)
            chunk_preds.append(probs.argmax(-1))
            chunk_confs.append(probs.max(-1))
            chunk_halts.append(halt_logit)
        preds.append(np.stack(chunk_preds))
        confs.append(np.stack(chunk_confs))
        halts.append(np.stack(chunk_halts))
    return metrics.Trace(np.concatenate(preds, 1), np.concatenate(confs, 1), np.concatenate(halts, 1))


@dataclass(frozen=True)
class Thresholds:
    """What the manifest's halting and out-of-scope sections record, calibrated on validation."""

    halt: float
    out_of_scope: OutOfScope | None  # text models: the out-of-scope label's threshold, or an abstain threshold
    abstain: AbstainCalibration | None = None  # how the abstain threshold did on validation, when there is one


def calibrate(
    trace: metrics.Trace, targets: np.ndarray, labels: list[str], oos_label: str | None, task: str = "text",
    abstain_precision: float = DEFAULT_PRECISION,
) -> Thresholds:
    """From the validation rows' recursion `trace` (`run_recursion`) and `targets`: the cheapest halting threshold
    as accurate as the best fixed step count; then, for text, either the out-of-scope threshold (at that halting)
    that maximises validation accuracy with `oos_label` as a class, or without such a label the abstain threshold
    for `abstain_precision` (trainer/out_of_scope.py), unless it is 0 (never abstain)."""
    halt = metrics.calibrate_halting(trace, targets)
    if task != "text" or (oos_label is None and not abstain_precision):
        return Thresholds(halt, None)
    stop = metrics.halting_steps(trace.halt_logits, halt)
    if oos_label is not None:
        threshold = metrics.calibrate_out_of_scope(trace, targets, stop, labels.index(oos_label))
        return Thresholds(halt, OutOfScope(oos_label, threshold))
    predictions, confidence = trace.at(stop)
    abstain_calibration = calibrate_abstain_threshold(confidence, predictions == targets, abstain_precision)
    return Thresholds(halt, OutOfScope(None, min(abstain_calibration.threshold, 1.0)), abstain_calibration)


def evaluate_step(
    step: StepFn, state_shape: tuple[int, int], n_sup: int, sets: dict[str, EncodedSet],
    halt_threshold: float, labels: list[str], out_of_scope: OutOfScope | None,
) -> dict[str, Any]:
    """Metrics of a step function on each named set (the shape `trm-train eval` prints); a set that
    mixes source files also gets them per file (`by_source`)."""
    results: dict[str, Any] = {}
    for name, data in sets.items():
        trace = run_recursion(step, data.tokens, state_shape, n_sup)
        summary = metrics.summarize(trace, data.targets, halt_threshold)
        if data.targets.ndim == 1:  # a classifier: each label's figures, of the answers at the halting step
            answers, _ = trace.at(metrics.halting_steps(trace.halt_logits, halt_threshold))
            summary["per_label"] = metrics.per_label(answers, data.targets, labels)
        elif (blank := data.tokens == 0).any():  # a grid: the cells the puzzles leave blank, which copying misses
            summary["blank_cell_accuracy"] = float((trace.predictions[-1] == data.targets)[blank].mean())
        if out_of_scope is not None and out_of_scope.label is not None:
            oos = labels.index(out_of_scope.label)
            summary.update(metrics.intent_metrics(trace, data.targets, oos, halt_threshold, out_of_scope.threshold))
            in_scope = data.targets != oos
            summary["in_scope_anytime_accuracy"] = [
                round(float(a), 5) for a in (trace.predictions[:, in_scope] == data.targets[in_scope]).mean(1)
            ]
        elif out_of_scope is not None:
            summary.update(metrics.abstain_metrics(trace, data.targets, halt_threshold, out_of_scope.threshold))
        if data.sources is not None:
            summary["by_source"] = {}
            for source in dict.fromkeys(data.sources.tolist()):
                rows = np.flatnonzero(data.sources == source)
                summary["by_source"][source] = metrics.summarize(trace.take(rows), data.targets[rows], halt_threshold)
        results[name] = summary
    return results


def headline_metrics(results: dict[str, Any]) -> dict[str, float]:
    """Flat metric names for the manifest (and ModelInfo.metrics); docs/BUNDLE.md defines each."""
    flat: dict[str, float] = {}
    for name, summary in results.items():
        prefix = "test" if name == "test" else f"test_{name}"
        flat[f"{prefix}_accuracy"] = summary["accuracy"]
        flat[f"{prefix}_halting_accuracy"] = summary["halting"]["accuracy"]
        flat[f"{prefix}_halting_mean_steps"] = summary["halting"]["mean_steps"]
        flat[f"{prefix}_ece"] = summary["ece"]
        for key in ("in_scope_accuracy", "oos_recall", "cell_accuracy", "blank_cell_accuracy", "answered_fraction",
                    "answered_accuracy", "labels"):
            if key in summary:
                flat[f"{prefix}_{key}"] = summary[key]
        for source, part in summary.get("by_source", {}).items():
            flat[f"{prefix}_{source}_accuracy"] = part["accuracy"]
            flat[f"{prefix}_{source}_halting_accuracy"] = part["halting"]["accuracy"]
    return {k: round(float(v), 5) for k, v in flat.items()}


def label_coverage(metrics: dict[str, float], labels: int) -> str | None:
    """What a classifier's test figures leave out, from its manifest's `metrics` (`test_labels`) and its count of
    `labels`, e.g. "the test rows are of 3 of the 5 labels: these figures say nothing of the other 2"; None where
    they cover every label (or the metrics do not say)."""
    tested = int(metrics.get("test_labels", labels))
    if tested >= labels:
        return None
    return (f"the test rows are of {tested} of the {labels} labels: these figures say nothing of the other "
            f"{labels - tested} (a test file with rows of every label, --test FILE, would)")


MISSED_LABEL_ROWS = 3  # a label with this many test rows that the model never answers is named after the fit


def missed_labels(results: dict[str, Any]) -> str | None:
    """The labels of at least MISSED_LABEL_ROWS test rows that the model never answered on test (from a result set's
    `per_label`), e.g. "label 'lost_luggage' (20 test rows) was never the model's answer"; None where there is none."""
    figures = results.get("test", {}).get("per_label", {})
    missed = sorted(((f["rows"], label) for label, f in figures.items()
                     if f["recall"] == 0 and f["rows"] >= MISSED_LABEL_ROWS), reverse=True)
    if not missed:
        return None
    (rows, label), more = missed[0], len(missed) - 1
    others = f" (and {counted(more, 'more label')})" if more else ""
    return (f"label {label!r}{others} ({rows} test rows) was never the model's answer on test: its rows were "
            "answered as other labels (REPORT.md lists the labels found least often); more rows of it help")


def grid_result(metrics: dict[str, float], int8_served: bool, max_steps: int) -> str | None:
    """A grid fit's last line from its manifest's metrics, e.g. "42.00% of the test puzzles solved exactly (the int8
    step the server runs; 91.3% of their cells right); with learned halting 41.33% in 5.2 of 16 steps on average";
    None for a model of another task."""
    if "test_cell_accuracy" not in metrics:
        return None
    on = "int8_test" if int8_served and "int8_test_accuracy" in metrics else "test"
    step = " (the int8 step the server runs; " if on == "int8_test" else " ("
    halting = metrics.get(f"{on}_halting_accuracy", metrics["test_halting_accuracy"])
    blank = metrics.get(f"{on}_blank_cell_accuracy")
    blanks = "" if blank is None else f", {100 * blank:.1f}% of the blank ones"
    line = (f"{100 * metrics[f'{on}_accuracy']:.2f}% of the test puzzles solved exactly{step}"
            f"{100 * metrics[f'{on}_cell_accuracy']:.1f}% of their cells right{blanks}); with learned halting "
            f"{100 * halting:.2f}% in {metrics['test_halting_mean_steps']:.1f} of {max_steps} steps on average")
    if metrics[f"{on}_accuracy"] == 0:
        line += (": none solved yet; a grid model learns the rules over tens of minutes of training (the grid "
                 "preset's default budget is 90 min)")
    return line


def evaluate_bundle(
    bundle: Path, data: Path, split: str, limit: int = 0, int8: bool = False,
    columns: tuple[str | None, str | None] = (None, None),
) -> dict[str, Any]:
    """The metrics of a bundle's ONNX step on a dataset split (what `trm-train eval` prints); a user's text file
    is read by its text and label `columns`, each by default the one the bundle was trained from. A sequence
    bundle is scored on a file of source,target rows (`bundle_scores`). The bundle is loaded as the server loads
    it (its checks and warm-up): what the server refuses is not scored."""
    loaded = load_model(bundle, LoadOptions(SessionSettings(intra_op_threads=1), int8=int8)).bundle
    manifest = loaded.manifest
    if int8 and not manifest.onnx_int8:
        raise ValueError(f"{bundle} ships no int8 step (its REPORT.md says why): evaluate it without --int8")
    if manifest.task == "sequence":
        if data.is_dir():
            raise ValueError(f"{bundle} is a sequence model: give --data a file of source,target rows, not a folder")
        if any(columns):
            raise ValueError("a sequence file's columns are named source and target: leave out --text-column and "
                             "--label-column")
        return bundle_scores(loaded, data, limit)
    left_out: Counter[str] = Counter()
    sets = eval_sets(manifest, bundle, data, split, columns, left_out)
    if limit:
        sets = {name: data_set.sample(limit, seed=0) for name, data_set in sets.items()}
    model_file = manifest.onnx_int8 if int8 else manifest.onnx_fp32
    results = evaluate_step(
        onnx_step_fn(bundle / model_file), manifest.recursion.state_shape, manifest.recursion.N_sup, sets,
        manifest.halt_threshold, list(manifest.labels), manifest.out_of_scope,
    )
    scored = {"bundle": manifest.name, "version": manifest.version, "model_file": model_file,
              "split": split, "results": results}
    if left_out:  # rows the model cannot answer: labels it was not trained on
        scored["left_out"] = {"rows": sum(left_out.values()), "labels": dict(left_out)}
    return scored
