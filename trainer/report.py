"""REPORT.md and anytime.png next to each bundle: how it was trained and what it scores."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

from trainer.baseline import DESCRIPTION, comparison
from trainer.data.files import counted
from trainer.evaluate import label_coverage
from trainer.out_of_scope import DEFAULT_PRECISION, no_precise_level
from trainer.reader import ReaderFit
from trainer.train import BEST_BY, best_evaluation
from trm_bundle.manifest import Manifest, Training

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_anytime(path: Path, results: dict[str, Any]) -> None:
    """Left: accuracy after each supervision step per set. Middle: accuracy against mean steps as the
    halting threshold sweeps (fixed step counts as crosses, the calibrated threshold circled). Right: the
    learned halting-step histogram."""
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4))
    for name, summary in results.items():
        curve = summary["anytime_accuracy"]
        color = left.plot(range(1, len(curve) + 1), [100 * a for a in curve], marker="o", label=name)[0].get_color()
        points = summary["halting_curve"]
        middle.plot([p["mean_steps"] for p in points], [100 * p["accuracy"] for p in points], marker=".",
                    color=color, label=f"{name}: learned halting")
        middle.scatter(range(1, len(curve) + 1), [100 * a for a in curve], marker="x", color=color)
        halt = summary["halting"]
        middle.scatter([halt["mean_steps"]], [100 * halt["accuracy"]], s=120, facecolors="none", edgecolors=color)
        hist = halt["step_histogram"]
        right.bar([s + 0.1 * len(right.patches) / max(1, len(hist)) for s in range(1, len(hist) + 1)],
                  hist, alpha=0.6, label=name)
    left.set(xlabel="supervision step", ylabel="accuracy (%)", title="Anytime accuracy")
    middle.set(xlabel="mean supervision steps", ylabel="accuracy (%)",
               title="Accuracy vs compute (thresholds swept; x: fixed steps)")
    right.set(xlabel="halting step", ylabel="examples", title="Learned halting")
    steps = max(len(summary["anytime_accuracy"]) for summary in results.values())
    for axes in (left, middle):
        axes.grid(alpha=0.3)
        low, high = axes.get_ylim()  # at least 2 points tall: a flat curve is not magnified into noise
        centre = (low + high) / 2
        axes.set_ylim(min(low, centre - 1), max(high, centre + 1))
    for axes in (left, middle, right):
        axes.set_xticks(range(1, steps + 1))
        axes.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _halting_curve_table(results: dict[str, Any]) -> str:
    """Accuracy and mean steps at each swept halting threshold, one column pair per set."""
    names = list(results)
    header = "| halting threshold | " + " | ".join(f"{n}: accuracy / mean steps" for n in names) + " |"
    rows = [header, "|---:|" + "---:|" * len(names)]
    for i, point in enumerate(results[names[0]]["halting_curve"]):
        cells = [f"{100 * results[n]['halting_curve'][i]['accuracy']:.2f}% / "
                 f"{results[n]['halting_curve'][i]['mean_steps']:.2f}" for n in names]
        rows.append(f"| {point['threshold']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _results_table(results: dict[str, Any]) -> str:
    """One row per set, then one per source file of a set that mixes files."""
    rows = ["| set | examples | accuracy (all steps) | best fixed steps | learned halting: accuracy / mean steps "
            "| ECE |", "|---|---|---|---|---|---|"]
    named = list(results.items())
    for name, s in results.items():
        named += [(f"{name}: {source}", part) for source, part in s.get("by_source", {}).items()]
    for name, s in named:
        best, halt = s["best_fixed"], s["halting"]
        rows.append(
            f"| {name} | {s['examples']:,} | {100 * s['accuracy']:.2f}% | {best['steps']} → "
            f"{100 * best['accuracy']:.2f}% | {100 * halt['accuracy']:.2f}% / {halt['mean_steps']:.2f} "
            f"(threshold {halt['threshold']}) | {s['ece']:.4f} |"
        )
    return "\n".join(rows)


def write_report(folder: Path, manifest: Manifest, evaluation: dict[str, Any]) -> dict[str, Path]:
    """Writes REPORT.md and anytime.png into folder; returns them as bundle files."""
    results = evaluation["results"]
    plot_path = folder / "anytime.png"
    plot_anytime(plot_path, results)
    training = manifest.require_training()
    recursion = manifest.recursion
    precision = training.config.get("abstain_precision", DEFAULT_PRECISION)  # bundles before it have the default
    anytime = "\n".join(
        f"- {name}: " + ", ".join(f"{100 * a:.1f}" for a in s["anytime_accuracy"]) for name, s in results.items()
    )
    coverage = label_coverage(manifest.metrics, len(manifest.labels))
    extra = [f"- {coverage}"] if coverage else []
    if trained_on := int(manifest.metrics.get("test_rows_trained_on", 0)):
        inputs = "is an input" if trained_on == 1 else "are inputs"
        why = ("its solution is a training puzzle's, from which the training stream draws puzzles"
               if manifest.task == "grid" else "the tokenizer reads a training row's words in it")
        extra.append(f"- {counted(trained_on, 'test row')} {inputs} the model trained on ({why}): the test figures "
                     "read high")
    for name, s in results.items():
        if "in_scope_accuracy" in s:
            recall = ("n/a (no out-of-scope rows in this set)" if math.isnan(s["oos_recall"])
                      else f"{100 * s['oos_recall']:.2f}%")
            extra.append(
                f"- {name}: in-scope accuracy {100 * s['in_scope_accuracy']:.2f}% (with out-of-scope "
                f"rejection {100 * s['in_scope_accuracy_with_rejection']:.2f}%), out-of-scope recall "
                f"{recall} at threshold {s['oos_threshold']}"
            )
        if "answered_fraction" in s:
            extra.append(answered_line(name, s, precision))
    if "baseline" in evaluation:
        extra.append(_baseline_line(manifest, evaluation["baseline"]))
    if "linear_reader" in evaluation:
        extra.append(_reader_line(ReaderFit(**evaluation["linear_reader"]), "ablation" in evaluation))
    parity = evaluation["parity"]
    trimmed = (
        f"\nOne step at each input's own length (padding trimmed, as the server batches) vs full length, "
        f"{counted(min(50, parity['examples']), 'example')}: max |diff| {parity['trimmed_step_max_abs_diff']:.2e}."
        if "trimmed_step_max_abs_diff" in parity else ""
    )
    unit = "classes" if manifest.task != "grid" else "cells"
    curve = (
        f"\nAccuracy against mean steps as the halting threshold sweeps (the calibrated threshold is "
        f"{manifest.halt_threshold}):\n\n{_halting_curve_table(results)}\n"
        if recursion.N_sup > 1 else ""
    )
    served_answers = "".join(  # the shipped int8 step's share answered: what the server's answers do
        "\n" + answered_line(f"{name} (int8, as served)", figures, precision)
        for name, figures in evaluation["results_int8"].items() if "answered_fraction" in figures
    ) if evaluation["int8_shipped"] else ""
    weights_line = _weights_line(training.config, evaluation.get("training_history", []))
    text = f"""# {manifest.name} {manifest.version}

{manifest.description or 'No description given (`--set description="..."` sets one).'}

## Results (test split; fp32 measured on the exported weights, whose ONNX parity is below)

{_results_table(results)}

{chr(10).join(extra)}
{_labels_found_least(evaluation)}
Anytime accuracy (%) after each supervision step:
{anytime}

![anytime accuracy, accuracy against mean steps, halting histogram](anytime.png)
{curve}
int8 variant: accuracy loss {_int8_losses(evaluation)};
{evaluation['int8_decision']}.{served_answers}

ONNX parity on {counted(parity['examples'], 'test example')}: one step max |diff| {parity['step_max_abs_diff']:.2e};
final answers agree on {100 * parity['final_agreement']:.2f}% ({unit}).{trimmed}

{_ablation_section(manifest, evaluation)}## Training

- command: `{training.command}`
- wall time: {training.wall_time_s:.0f} s of the command that wrote this bundle
  (the training loop {training.train_time_s:.0f} s and {training.optimizer_steps} optimizer steps over every
  command that trained these weights, a resumed run's earlier ones included) on {training.device}
{_rows_line(evaluation)}{_soup_line(training.config)}{weights_line}- parameters: {_parameters_text(training)}
- recursion: {_recursion_text(recursion.n, recursion.T, recursion.N_sup)}
- {_halting_line(manifest.halt_threshold, recursion.N_sup)}

Full configuration:

```json
{json.dumps(training.config, indent=1)}
```
"""
    report_path = folder / "REPORT.md"
    report_path.write_text(text)
    return {"REPORT.md": report_path, "anytime.png": plot_path}


def _halting_line(threshold: float, steps: int) -> str:
    """How REPORT.md gives the halting threshold: calibrated on validation, but for a one-step model, where it
    decides nothing."""
    if steps == 1:
        return f"halting threshold: {threshold} (one supervision step: nothing to halt, not calibrated)"
    return f"halting threshold (calibrated on validation): {threshold}"


def answered_line(name: str, figures: dict[str, Any], precision: float) -> str:
    """What an abstain threshold calibrated for `precision` does on a result set (its `answered_fraction`,
    `answered_accuracy` and `abstain_threshold`), as REPORT.md says it."""
    threshold = figures["abstain_threshold"]
    if figures["answered_fraction"] == 0:
        return (f"- {name}: answers none of the inputs: {no_precise_level(precision)}, so it abstains on every input "
                f"(`out_of_scope`, `defer_to_llm`; threshold {threshold:.4f})")
    return (f"- {name}: answers {100 * figures['answered_fraction']:.2f}% of inputs, "
            f"{100 * figures['answered_accuracy']:.2f}% of them right; below confidence {threshold:.4f} it abstains "
            f"(`out_of_scope`, `defer_to_llm`; the threshold is calibrated on validation for "
            f"{100 * precision:.0f}% precision)")


LEAST_FOUND_LABELS = 10  # the labels REPORT.md lists, those the model answered least often for their own rows


def _labels_found_least(evaluation: dict[str, Any]) -> str:
    """A classifier's labels of the lowest recall on test, as the server answers (the int8 step where it is
    shipped), with their rows and precision; "" for a grid model or a bundle before the figures."""
    served = evaluation["results_int8"] if evaluation["int8_shipped"] else evaluation["results"]
    figures = served.get("test", {}).get("per_label")
    if not figures or len(figures) < 2:
        return ""
    least = sorted(figures.items(), key=lambda item: (item[1]["recall"], -item[1]["rows"], item[0]))
    shown = least[:LEAST_FOUND_LABELS]
    rows = "\n".join(f"| {printable_label(label)} | {f['rows']:,} | {_percent(f['recall'])} | "
                     f"{_percent(f['precision'])} |" for label, f in shown)
    which = "every label" if len(shown) == len(figures) else f"the {len(shown)} of {len(figures)} found least often"
    return (f"\nLabels on test ({which}; recall: its rows answered with it; precision: its answers right; the "
            f"{'int8' if evaluation['int8_shipped'] else 'fp32'} step, as served):\n\n"
            f"| label | test rows | recall | precision |\n|---|---:|---:|---:|\n{rows}\n")


def _percent(share: float | None) -> str:
    return "never answered" if share is None else f"{100 * share:.1f}%"


def printable_label(label: str) -> str:
    """A label in a Markdown table cell: its pipes escaped, invisible characters shown as escapes."""
    shown = "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in label)
    return shown.replace("|", "\\|")


def _int8_losses(evaluation: dict[str, Any]) -> str:
    """The int8 step's loss on test and, where the export chose on it, on validation (before 2026-12-05 the
    choice was made on the test loss)."""
    test = f"{100 * evaluation['int8_accuracy_loss']:.2f} points on test"
    if "int8_validation_accuracy_loss" not in evaluation:
        return f"{test} (which chose)"
    return f"{100 * evaluation['int8_validation_accuracy_loss']:.2f} points on validation (which chose), {test}"


def _reader_line(fit: ReaderFit, ablation: bool) -> str:
    """Whether the step mixes in a linear reader (trainer/reader.py), and what validation said."""
    effect = "the step is the TRM's alone"
    if fit.mixed:
        effect = "every figure of this bundle is of the mixed answer"
        effect += " (the ablation below was measured without a reader)" if ablation else ""
    return f"\nThe {fit.summary()}; {effect}."


def _baseline_line(manifest: Manifest, baseline: dict[str, Any]) -> str:
    """The built-in baseline next to the TRM as served (trainer/baseline.py)."""
    versus = comparison(manifest.metrics, int8_served=manifest.onnx_int8 is not None,
                        max_steps=manifest.recursion.N_sup)
    return (f"\nBuilt-in baseline, trained on the same training split and never shipped ({DESCRIPTION}, "
            f"{baseline['wall_time_s']:.0f} s): **{versus}**.")


def _parameters_text(training: Training) -> str:
    """The bundle's weights, with the linear reader's table (reader_rows x num_outputs) named where it has one."""
    reader = training.model_config.get("reader_rows", 0) * training.model_config.get("num_outputs", 0)
    return f"{training.parameters:,}" + (f" (of which {reader:,} in the linear reader's table)" if reader else "")


def _weights_line(config: dict[str, Any], history: list[dict[str, float]]) -> str:
    """Which EMA weights a one-model bundle ships (`Trainer.shipped_model`), e.g. "the EMA weights of step 396, the
    best of 5 evaluations on validation (...)"; empty for a soup, whose line says."""
    if config.get("soup"):
        return ""
    best = best_evaluation(history) if config.get("keep_best") else None
    if best is None:
        return "- weights: the EMA weights the training ended with\n"
    last = history[-1]
    later = "" if best is last else f"; the last evaluation's, step {last['step']:,.0f}, {100 * last[BEST_BY]:.2f}%"
    stored = ("; scored with the token table in fp32, before it was stored as int8 rows: the results above are the "
              "shipped weights'" if config.get("model", {}).get("embedding_storage") == "int8" else "")
    return (f"- weights: the EMA weights of step {best['step']:,.0f}, the best of "
            f"{counted(len(history), 'evaluation')} on validation ({100 * best[BEST_BY]:.2f}% in their final "
            f"answers{later}{stored})\n")


def _rows_line(evaluation: dict[str, Any]) -> str:
    """A text model's rows: trained on, validated (the weights and thresholds chosen) and tested on."""
    baseline = evaluation.get("baseline")
    if baseline is None or "validation_rows" not in evaluation:
        return ""
    return (f"- data: {counted(baseline['train_rows'], 'training row')}, "
            f"{counted(evaluation['validation_rows'], 'validation row')}, "
            f"{counted(baseline['test_rows'], 'test row')}\n")


def _soup_line(config: dict[str, Any]) -> str:
    """The soup's ingredients, when the weights are one (trainer/soup.py)."""
    soup = config.get("soup") or []
    if not soup:
        return ""
    overrides = "; ".join(", ".join(f"{k}={v}" for k, v in entry.items()) or "the config as is" for entry in soup)
    branch_step = config.get("soup_branch_step", 0)
    start = (f"branched at step {branch_step} from one shared trunk" if branch_step
             else "trained from the same initial weights")
    summed = "their sums, the trunk's counted once" if branch_step else "their sums"
    return (f"- weight soup: the mean of {len(soup)} models {start} ({overrides}); "
            f"steps and training-loop time are {summed}\n")


def _ablation_section(manifest: Manifest, evaluation: dict[str, Any]) -> str:
    """What recursion buys: this bundle next to a same-size model with less recursion, if one was given."""
    ablation = evaluation.get("ablation")
    if ablation is None:
        return ""
    training, ours = manifest.require_training(), manifest.recursion
    theirs = ablation["recursion"]
    rows = []
    for key, value in ablation["accuracy"].items():
        mine = manifest.metrics.get(key)
        if mine is not None:
            rows.append(f"| {key} | {100 * mine:.2f}% | {100 * value:.2f}% |")
    calls = (ours.n + 1) * ours.T, (theirs["n"] + 1) * theirs["T"]
    return f"""## What recursion buys: same-size ablation

| | this bundle | ablation |
|---|---:|---:|
| recursion | {_recursion_text(ours.n, ours.T, ours.N_sup)} | {_recursion_text(**theirs)} |
| calls of f per supervision step | {calls[0]} | {calls[1]} |
| parameters | {training.parameters:,} | {ablation['parameters']:,} |
| training | {training.optimizer_steps} steps, {training.train_time_s:.0f} s on \
{training.device} | {ablation['optimizer_steps']} steps, {ablation['train_time_s']:.0f} s on \
{ablation['device']} |
{chr(10).join(rows)}

Ablation command: `{ablation['command']}`

"""


def _recursion_text(n: int, T: int, N_sup: int) -> str:
    return f"n={n}, T={T}, N_sup={N_sup}"
