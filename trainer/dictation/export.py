"""The code-dictation bundle of a training run: its graphs, REPORT.md, anytime.png and evaluation.json.

    python -m trainer.dictation.export --run-dir RUN --bundle-dir trm_service/models/code-dictation

Reads RUN/checkpoint.pt (the EMA weights) and RUN/metrics.json (written by ``trainer.dictation.fit``, whose
--bundle-dir calls this at the end of a run), scores what the manifest records from them, and writes the
bundle through trm_bundle (it is loaded back before it replaces an earlier one).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainer.checkpoint_file import read_checkpoint
from trainer.dictation.examples import MAX_GENERATED_DIGITS, SHORT_NAME_CHARS
from trainer.dictation.verbalize import MAX_CARDINAL_DIGITS
from trainer.sequence.bundle import sequence_manifest, write_sequence_bundle
from trainer.sequence.evaluate import calibration_reason, halting_name, point_halting, sequence_metrics
from trainer.sequence.model import SequenceConfig
from trainer.sequence.report import adaptive_compute_lines, example_lines, plot_anytime
from trainer.sequence.train import CHECKPOINT, model_from_state
from trm_bundle.manifest import Bundle, Training
from trm_bundle.spoken_numbers import SPOKEN_NUMBERS
from trm_bundle.spoken_words import SPOKEN_WORDS

NAME = "code-dictation"
# 1.4.2: 1.4.1's weights, reading a speech recogniser's text as spoken words (input.normalize; 2026-12-07); 1.4.1:
# 1.4.0's weights re-exported, every row the same bits in any batch (2026-12-05); 1.4.0: trained on to
# lines of up to 120 characters; 1.3.1: the spoken-numbers check; 1.3.0: and short names said
# alone; 1.2.0: whole numbers of every size; 1.1.0: names (2026-12-04)
VERSION = "1.4.2"
CHECKS = (SPOKEN_NUMBERS,)  # every finished answer's numbers against the words
DESCRIPTION = ("Dictated Python to code: spoken words in, one line of code out, written one character at a "
               "time, each refined until its halting head settles it")


def headline_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The manifest's figures (docs/BUNDLE.md, Metrics) from a run's metrics.json."""
    short, longer = metrics["test_short"], metrics["test_longer"]
    return {
        **sequence_metrics(short, metrics["fixed_steps"]),
        "test_novel_exact": short["novel"]["exact_match"],
        "test_long_exact": longer["exact_match"], "test_long_cer": longer["cer"],
        "numbers_exact": metrics["numbers"]["model"], "numbers_alpha2digit_exact": metrics["numbers"]["alpha2digit"],
        **({"names_exact": metrics["names"]["exact_match"]} if "names" in metrics else {}),
        **({"short_names_exact": metrics["short_names"]["exact_match"]} if "short_names" in metrics else {}),
        **({"numbers_generated_exact": metrics["numbers_generated"]["model"]}
           if "numbers_generated" in metrics else {}),
    }


def model_line(cfg: SequenceConfig) -> str:
    """The REPORT's line on the refined network and what a character's later steps read."""
    kept = "first step" if cfg.cache_steps == 1 else f"first {cfg.cache_steps} steps"
    line = (f"- Model: f of {cfg.num_layers} layers (hidden size {cfg.hidden_size}), up to {cfg.N_sup} refinement "
            f"steps per character; the prefix cache keeps each emitted character's entries of its {kept}")
    if cfg.cache_steps < cfg.N_sup:
        line += f", so later steps refine a character alone, over the prefix as it was at step {cfg.cache_steps}"
    return line + "."


def fit_command(args: dict[str, str]) -> str:
    """The `trainer.dictation.fit` command of a run's recorded arguments (those it was given a value for)."""
    return "python -m trainer.dictation.fit " + " ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in args.items()
        if key != "bundle_dir" and value not in (None, "None"))


def earlier_runs(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs a run continued from (`trainer.dictation.fit --continue-from`), the latest first."""
    runs, parent = [], metrics.get("continued_from")
    while parent is not None:
        runs.append(parent)
        parent = parent.get("continued_from")
    return runs


def continued_from_lines(metrics: dict[str, Any]) -> list[str]:
    """REPORT.md's lines on the runs a run continued from, the latest first, so that every command of the recipe is
    on record."""
    return [f"- {'That run continued' if index else 'Continued'} from the run of `{run['command']}` ({run['steps']} "
            f"optimizer steps, {run['wall_time_s'] / 60:.1f} min in all), whose checkpoint it started from."
            for index, run in enumerate(earlier_runs(metrics))]


def runs_of(metrics: dict[str, Any]) -> int:
    """How many runs trained the weights: this one and those it continued from."""
    return 1 + len(earlier_runs(metrics))


def report_markdown(metrics: dict[str, Any], training: Training, parameters: int) -> str:
    """REPORT.md: the command, the wall time, and every figure with its data."""
    short, longer, calibration = metrics["test_short"], metrics["test_longer"], metrics["calibration"]
    steps, runs = short["steps"], runs_of(metrics)
    lines = [
        f"# {NAME} {VERSION}", "", DESCRIPTION + ".", "",
        "## Training", "",
        f"- Command: `{training.command}`",
        *([f"- Scored again with: `{metrics['scored_with']}`"] if "scored_with" in metrics else []),
        *continued_from_lines(metrics),
        f"- Wall time: {training.wall_time_s / 60:.1f} min in all ({training.train_time_s / 60:.1f} min of "
        f"training steps{f' in all {runs} runs together' if runs > 1 else ''}, then scoring and calibration), "
        f"{training.optimizer_steps} optimizer steps, {metrics['training']['lines_seen']:,} lines seen, "
        f"{parameters:,} parameters, CPU.",
        model_line(SequenceConfig(**training.model_config)),
        "- Data: the one-line statements of this interpreter's standard library, split by file (80/10/10, "
        "seeded); the spoken forms come from `trainer/dictation/verbalize.py`. Test files are never trained on.",
        "",
        "## Test split (held-out files)", "",
        "| set | lines | exact match | character error rate | mean steps per token |",
        "|---|---:|---:|---:|---:|",
        f"| lines of at most 40 characters (the bar) | {short['count']:.0f} | {100 * short['exact_match']:.2f}% | "
        f"{100 * short['cer']:.2f}% | {steps['mean_steps']:.2f} |",
        f"| of those, lines never seen in a training file | {short['novel']['count']:.0f} | "
        f"{100 * short['novel']['exact_match']:.2f}% | {100 * short['novel']['cer']:.2f}% | |",
        f"| longer lines | {longer['count']:.0f} | {100 * longer['exact_match']:.2f}% | {100 * longer['cer']:.2f}% "
        f"| {longer['steps']['mean_steps']:.2f} |",
        "",
        f"Number-only phrases (every number literal of the test files, said alone; {metrics['numbers']['count']}): "
        f"model {100 * metrics['numbers']['model']:.1f}% exact, text2num `alpha2digit` "
        f"{100 * metrics['numbers']['alpha2digit']:.1f}%; without recognition confusions "
        f"{100 * metrics['numbers_clean']['model']:.1f}% and {100 * metrics['numbers_clean']['alpha2digit']:.1f}%.",
        "",
        *([generated_numbers_line(metrics["numbers_generated"]), ""] if "numbers_generated" in metrics else []),
        *([names_line(metrics["names"]), ""] if "names" in metrics else []),
        *([short_names_line(metrics["short_names"]), ""] if "short_names" in metrics else []),
        f"The halting rule, {halting_name(calibration)}, "
        f"was chosen on {calibration['lines']} validation lines: {calibration_reason(calibration)}. "
        "Test figures below use it.", "",
        *adaptive_compute_lines(short, metrics["fixed_steps"], metrics["halting_curve"]),
        *(unsure_lines(metrics) if "unsure" in metrics else []),
        *(spoken_numbers_lines(metrics["spoken_numbers_check"]) if "spoken_numbers_check" in metrics else []),
        *example_lines(short),
    ]
    return "\n".join(lines)


def generated_numbers_line(numbers: dict[str, Any]) -> str:
    """REPORT.md's line on whole numbers of every size said alone (`trainer.dictation.anchor.generated_literals`)."""
    cardinal_sized = numbers["up_to_6_digits"]
    return (f"Whole numbers of 1 to {MAX_GENERATED_DIGITS} digits drawn at random, said alone ({numbers['count']}; "
            f"up to {MAX_CARDINAL_DIGITS} digits as a cardinal or digit by digit, longer ones digit by digit): model "
            f"{100 * numbers['model']:.1f}% exact (of up to {MAX_CARDINAL_DIGITS} digits, {cardinal_sized['count']}: "
            f"{100 * cardinal_sized['model']:.1f}%), text2num `alpha2digit` {100 * numbers['alpha2digit']:.1f}%.")


def names_line(names: dict[str, Any]) -> str:
    """REPORT.md's line on names said alone (`trainer.dictation.evaluate.names_alone`)."""
    line = (f"Names said alone (a sample of the test files' names, one phrasing each; {names['count']}): "
            f"{100 * names['exact_match']:.1f}% exact; of at most {SHORT_NAME_CHARS} characters "
            f"({names['short_count']}) {100 * names['short_exact_match']:.1f}%")
    return line + _not_unsure(names) + "."


def short_names_line(names: dict[str, Any]) -> str:
    """REPORT.md's line on every short name said alone (`trainer.dictation.evaluate.short_names_alone`)."""
    line = (f"Short names said alone (every name of at most {SHORT_NAME_CHARS} characters of the test files, one "
            f"phrasing each; {names['count']}): {100 * names['exact_match']:.1f}% exact; single characters "
            f"({names['single_count']}) {100 * names['single_exact_match']:.1f}%")
    return line + _not_unsure(names) + "."


def _not_unsure(figures: dict[str, Any]) -> str:
    if "wrong_not_unsure" not in figures:
        return ""
    return f"; {figures['wrong_not_unsure']} wrong answers not marked unsure"


def unsure_lines(metrics: dict[str, Any]) -> list[str]:
    """REPORT.md's section on the unsure flag: its threshold, what it chose it on, and what it does on the test sets."""
    unsure = metrics["unsure"]
    rows = [(name, metrics[key]["unsure"]) for name, key in (("lines of at most 40 characters", "test_short"),
                                                             ("longer lines", "test_longer"))]
    return [
        "## Unsure answers", "",
        f"An answer whose confidence (the product of its characters' probabilities) is below "
        f"{unsure['unsure_below']:.6g} is marked unsure (`TextAnswer.unsure`; the client's tools defer it to the "
        f"LLM). The threshold makes the most right calls (a right answer kept, a wrong one flagged) on "
        f"{unsure['lines']} validation lines of every length, as they come in the files ({unsure['flagged']} flagged, "
        f"{unsure['flagged_wrong']} of them wrong, of {unsure['wrong']} wrong).", "",
        "| test set | lines | flagged | of them wrong | wrong in all | exact match of the kept answers |",
        "|---|---:|---:|---:|---:|---:|",
        *[f"| {name} | {row['rows']} | {row['flagged']} | {row['flagged_wrong']} | {row['wrong']} | "
          + (f"{100 * row['kept_exact_match']:.2f}% |" if row["kept_exact_match"] is not None else "none kept |")
          for name, row in rows],
        "",
    ]


def spoken_numbers_lines(check: dict[str, Any]) -> list[str]:
    """REPORT.md's section on the spoken-numbers check (`trainer.dictation.evaluate.spoken_numbers_check`)."""
    names = {"short": "lines of at most 40 characters", "longer": "longer lines",
             "numbers": "number literals said alone", "numbers_generated": "whole numbers of every size said alone"}
    return [
        "## The spoken-numbers check", "",
        "A finished answer that writes a number its words do not say (`ten thousand four` written as `1004`) is "
        "marked unsure as well (`TextAnswer.numbers_disagree`; trm_bundle/spoken_numbers.py).", "",
        "| test set | answers | failing the check | of them right | wrong in all | wrong, flagged by the check alone |",
        "|---|---:|---:|---:|---:|---:|",
        *[f"| {names[name]} | {row['count']} | {row['failing']} | {row['failing_right']} | {row['wrong']} | "
          f"{row.get('caught_not_unsure', '')} |" for name, row in check.items()],
        "",
    ]


def export_dictation_bundle(run_dir: Path, bundle_dir: Path, wall_time_s: float | None = None) -> Bundle:
    """Write the bundle of `run_dir`'s EMA model with the figures of its metrics.json."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    state = read_checkpoint(run_dir / CHECKPOINT)
    model = model_from_state(state)
    args = metrics["args"]
    parameters = sum(p.numel() for p in model.parameters())
    halting = point_halting(metrics["calibration"])
    training = Training(
        model_config=model.cfg.to_dict(), config={**state["config"], "fit_args": args}, data_sha256={},
        command=fit_command(args), wall_time_s=wall_time_s or metrics.get("wall_time_s", state["elapsed_s"]),
        optimizer_steps=state["step"], train_time_s=state["elapsed_s"], device="cpu", parameters=parameters)
    manifest = sequence_manifest(model, name=NAME, version=VERSION, description=DESCRIPTION,
                                 max_chars=int(args.get("max_source_chars", 200)), training=training,
                                 metrics=headline_metrics(metrics), halt_threshold=halting.threshold,
                                 halt_when_unchanged=halting.when_unchanged,
                                 unsure_below=metrics.get("unsure", {}).get("unsure_below", 0.0),
                                 checks=CHECKS, normalize=SPOKEN_WORDS)
    with_plot = run_dir / "anytime.png"
    plot_anytime(with_plot, metrics["test_short"], metrics["fixed_steps"], metrics["halting_curve"])
    evaluation = {key: value for key, value in metrics.items() if key != "args"}
    return write_sequence_bundle(bundle_dir, model, manifest, {
        "REPORT.md": report_markdown(metrics, training, parameters), "anytime.png": with_plot,
        "evaluation.json": json.dumps(evaluation, indent=1)})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--bundle-dir", type=Path, required=True)
    parser.add_argument("--wall-time-s", type=float, help="the run's wall time, if metrics.json lacks it")
    args = parser.parse_args(argv)
    bundle = export_dictation_bundle(args.run_dir, args.bundle_dir, args.wall_time_s)
    print(f"wrote {bundle.path}: " + json.dumps(bundle.manifest.metrics))


if __name__ == "__main__":
    main()
