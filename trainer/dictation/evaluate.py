"""Scores of a code-dictation model on held-out files: the bar's lines, longer lines, number phrases,
names said alone, and adaptive compute (exact match at each fixed step count and as the halting threshold
sweeps, steps per token by kind of character).

    python -m trainer.dictation.evaluate --run-dir RUN [--lines 2000]

re-scores a run's checkpoint and rewrites the scores in RUN/metrics.json (``trainer.dictation.fit`` scores
at the end of training; this is for a changed evaluation or more test lines).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

import torch

from trainer.dictation.anchor import (
    alpha2digit_reader,
    generated_literals,
    number_literals,
    number_phrases,
    score_reader,
)
from trainer.dictation.corpus import Corpus, load_corpus
from trainer.dictation.examples import SHORT_NAME_CHARS
from trainer.dictation.names import dotted_names
from trainer.dictation.verbalize import MAX_CARDINAL_DIGITS, Verbalizer
from trainer.sequence.decode import Halting
from trainer.sequence.evaluate import (
    calibrated_halting,
    halting_curves,
    held_out_scores,
    point_halting,
    predict,
    unsure_figures,
    unsure_threshold,
)
from trainer.sequence.model import SequenceTRM
from trainer.sequence.train import CHECKPOINT, load_model
from trm_bundle.spoken_numbers import numbers_agree


def held_out_sample(corpus: Corpus, verbalizer: Verbalizer, *, max_chars: int, max_source_chars: int, lines: int,
                    seed: int) -> dict[str, tuple[list[str], list[str]]]:
    """The scored test lines, (written, spoken) by kind: `lines` "short" lines (at most `max_chars`, the
    bar) and a quarter as many "longer" ones, drawn with `seed`; those whose spoken form is longer than
    `max_source_chars` (the model's input limit) are left out."""
    rng = random.Random(seed)
    test_lines = corpus.texts("test")
    short = rng.sample([line for line in test_lines if len(line) <= max_chars], lines)
    longer = [line for line in test_lines if len(line) > max_chars]
    longer = rng.sample(longer, min(len(longer), lines // 4))
    sample = {}
    for name, chosen in (("short", short), ("longer", longer)):
        spoken = [verbalizer.speak(line) for line in chosen]
        keep = [i for i, said in enumerate(spoken) if len(said) <= max_source_chars]
        sample[name] = ([chosen[i] for i in keep], [spoken[i] for i in keep])
    return sample


CALIBRATION_LINES = 500
GENERATED_NUMBERS = 1000  # whole numbers of 1 to 12 digits said alone (`generated_literals`)


def calibrate(model: SequenceTRM, corpus: Corpus, verbalizer: Verbalizer, *, max_chars: int, max_source_chars: int,
              lines: int, seed: int) -> dict[str, Any]:
    """The halting rule the bundle ships (threshold, and whether unsure tokens stop once unchanged), chosen on
    `lines` validation lines of at most `max_chars` characters (`calibrated_halting` of their fixed-step and
    halting curves), with those curves."""
    rng = random.Random(seed)
    chosen = rng.sample([line for line in corpus.texts("val") if len(line) <= max_chars], lines)
    pairs = [(line, said) for line in chosen if len(said := verbalizer.speak(line)) <= max_source_chars]
    curves = halting_curves(model, [said for _, said in pairs], [line for line, _ in pairs], max_chars + 8)
    halting = calibrated_halting(curves)
    return {"lines": len(pairs), "threshold": halting.threshold, "when_unchanged": halting.when_unchanged, **curves}


UNSURE_LINES = 600


def calibrate_unsure(model: SequenceTRM, corpus: Corpus, verbalizer: Verbalizer, *, max_source_chars: int,
                     lines: int, seed: int, halting: Halting) -> dict[str, Any]:
    """The bundle's `sequence.unsure_below`, chosen (`unsure_threshold`) on `lines` validation lines of every length
    the model reads (as they come in the files, longer ones too: a dictated line can be any length), decoded with
    `halting`; with what it does on them."""
    rng = random.Random(seed)
    said = [(line, spoken) for line in corpus.texts("val") if len(spoken := verbalizer.speak(line)) <= max_source_chars]
    chosen = rng.sample(said, min(lines, len(said)))
    predictions = predict(model, [spoken for _, spoken in chosen], halting=halting)
    right = [written == line for written, (line, _) in zip(predictions.texts, chosen, strict=True)]
    threshold = unsure_threshold(predictions.confidence, right)
    return {"lines": len(chosen), "seed": seed, **unsure_figures(predictions.confidence, right, threshold)}


def score_test_split(model: SequenceTRM, corpus: Corpus, verbalizer: Verbalizer, *, max_chars: int,
                     max_source_chars: int, lines: int, seed: int, halting: Halting | None = None,
                     curves: bool = True, unsure_below: float | None = None) -> dict[str, Any]:
    """Scores on the test split (`held_out_sample`): the short lines with `halting`, at each fixed
    step count and as the halting threshold sweeps (with `curves`), the longer lines, every number literal of
    the test files and GENERATED_NUMBERS whole numbers of every size said alone, next to text2num's alpha2digit,
    and names said alone (a sample, and every short name); with `unsure_below`, what flagging the answers below it
    does on the short and the longer lines and the names."""
    report: dict[str, Any] = {"sample": {"lines": lines, "seed": seed, "max_chars": max_chars,
                                         "max_source_chars": max_source_chars}}
    seen = set(corpus.texts("train"))
    sample = held_out_sample(corpus, verbalizer, max_chars=max_chars, max_source_chars=max_source_chars,
                             lines=lines, seed=seed)
    for name, (chosen, spoken) in sample.items():
        limit = max_chars + 8 if name == "short" else None
        novel = [i for i, line in enumerate(chosen) if line not in seen]
        scores = held_out_scores(model, spoken, chosen, limit, halting=halting,
                                 curves=curves and name == "short", subset=novel, unsure_below=unsure_below)
        report[f"test_{name}"] = scores.pop("test")
        report[f"test_{name}"]["novel"] = report[f"test_{name}"].pop("subset")
        report.update(scores)
    test_lines = corpus.texts("test")
    literals = number_literals(test_lines)
    number_sets = {"numbers": number_phrases(literals, verbalizer),
                   "numbers_clean": number_phrases(literals, Verbalizer(seed, confusion_rate=0.0)),
                   "numbers_generated": number_phrases(generated_literals(GENERATED_NUMBERS, seed), verbalizer)}
    for name, phrases in number_sets.items():
        predictions = predict(model, [phrase.spoken for phrase in phrases], halting=halting,
                              max_len=max_chars + 8)
        model_reader = dict(zip([phrase.spoken for phrase in phrases], predictions.texts, strict=True)).__getitem__
        report[name] = {"count": len(phrases), "model": score_reader(phrases, model_reader).exact_match,
                        "alpha2digit": score_reader(phrases, alpha2digit_reader).exact_match}
        if name == "numbers_generated":  # the sizes said as a cardinal ("ten thousand one hundred and two")
            cardinal_sized = [phrase for phrase in phrases if len(phrase.literal) <= MAX_CARDINAL_DIGITS]
            report[name]["up_to_6_digits"] = {"count": len(cardinal_sized),
                                              "model": score_reader(cardinal_sized, model_reader).exact_match}
    checked = {name: (spoken, written) for name, (written, spoken) in sample.items()}
    checked.update({name: ([phrase.spoken for phrase in phrases], [phrase.literal for phrase in phrases])
                    for name, phrases in number_sets.items() if name != "numbers_clean"})
    report["spoken_numbers_check"] = spoken_numbers_check(model, checked, halting=halting, unsure_below=unsure_below,
                                                          max_len=max_chars + 8)
    report["names"] = names_alone(model, test_lines, verbalizer, lines=lines, seed=seed, halting=halting,
                                  max_chars=max_chars, unsure_below=unsure_below)
    report["short_names"] = short_names_alone(model, test_lines, verbalizer, halting=halting, unsure_below=unsure_below)
    return report


def names_alone(model: SequenceTRM, test_lines: list[str], verbalizer: Verbalizer, *, lines: int, seed: int,
                halting: Halting | None, max_chars: int, unsure_below: float | None) -> dict[str, Any]:
    """Exact match on `lines` names (of at most `max_chars` characters) of the test files said alone (a seeded
    sample; one phrasing each), on those of at most SHORT_NAME_CHARS characters, and with `unsure_below` how many
    wrong answers are not marked unsure."""
    names = [name for name in dotted_names(test_lines) if len(name) <= max_chars]
    chosen = random.Random(seed).sample(names, min(lines, len(names)))
    return _said_alone(model, chosen, verbalizer, halting, unsure_below, max_chars + 8, "short", SHORT_NAME_CHARS)


def short_names_alone(model: SequenceTRM, test_lines: list[str], verbalizer: Verbalizer, *, halting: Halting | None,
                      unsure_below: float | None) -> dict[str, Any]:
    """`names_alone`'s figures on every name of at most SHORT_NAME_CHARS characters of the test files (`x`, `os`,
    `sys`: what a user says alone most often, and what lines seldom teach), and on the single characters."""
    names = [name for name in dotted_names(test_lines) if len(name) <= SHORT_NAME_CHARS]
    return _said_alone(model, names, verbalizer, halting, unsure_below, SHORT_NAME_CHARS + 8, "single", 1)


def _said_alone(model: SequenceTRM, names: list[str], verbalizer: Verbalizer, halting: Halting | None,
                unsure_below: float | None, max_len: int, part: str, part_chars: int) -> dict[str, Any]:
    """Exact match on `names` said alone (one phrasing each, answers of at most `max_len` tokens), on the `part` of at
    most `part_chars` characters, and with `unsure_below` how many wrong answers are not marked unsure."""
    predictions = predict(model, [verbalizer.speak(name, 0) for name in names], halting=halting, max_len=max_len)
    right = [written == name for written, name in zip(predictions.texts, names, strict=True)]
    in_part = [ok for ok, name in zip(right, names, strict=True) if len(name) <= part_chars]
    figures: dict[str, Any] = {"count": len(names), "exact_match": sum(right) / len(right),
                               f"{part}_count": len(in_part),
                               f"{part}_exact_match": sum(in_part) / max(1, len(in_part))}
    if unsure_below is not None:
        figures["wrong_not_unsure"] = sum(1 for ok, confidence in zip(right, predictions.confidence, strict=True)
                                          if not ok and confidence >= unsure_below)
    return figures


def spoken_numbers_check(model: SequenceTRM, sets: dict[str, tuple[list[str], list[str]]], *,
                         halting: Halting | None, unsure_below: float | None, max_len: int) -> dict[str, Any]:
    """What the bundle's spoken-numbers check (`trm_bundle.spoken_numbers`, run on every finished answer) does on
    each set of (spoken, written) pairs: answers it fails, how many of them are right (false alarms), the wrong
    answers, and with `unsure_below` the wrong answers it flags that the confidence threshold does not. A set named
    "longer" is decoded to the model's limit, the others to `max_len` tokens."""
    figures = {}
    for name, (spoken, written) in sets.items():
        predictions = predict(model, spoken, halting=halting, max_len=None if name == "longer" else max_len)
        rows = [(answer == truth, len(steps) > len(answer) and not numbers_agree(said, answer), confidence)
                for said, truth, answer, steps, confidence in zip(spoken, written, predictions.texts, predictions.steps,
                                                                   predictions.confidence, strict=True)]
        figures[name] = {"count": len(rows), "failing": sum(fails for _, fails, _ in rows),
                         "failing_right": sum(fails and right for right, fails, _ in rows),
                         "wrong": sum(not right for right, _, _ in rows),
                         **({"caught_not_unsure": sum(fails and not right and confidence >= unsure_below
                                                      for right, fails, confidence in rows)}
                            if unsure_below is not None else {})}
    return figures


def bundle_scores(model: SequenceTRM, corpus: Corpus, verbalizer: Verbalizer, *, max_chars: int,
                  max_source_chars: int, lines: int, seed: int, calibration_lines: int = CALIBRATION_LINES) -> dict:
    """Everything a bundle records: the halting rule calibrated on validation (`calibration`), the unsure threshold
    calibrated on validation with that rule (`unsure`), then `score_test_split` with both."""
    limits = {"max_chars": max_chars, "max_source_chars": max_source_chars, "seed": seed}
    calibration = calibrate(model, corpus, verbalizer, lines=calibration_lines, **limits)
    halting = point_halting(calibration)
    unsure = calibrate_unsure(model, corpus, verbalizer, max_source_chars=max_source_chars, lines=UNSURE_LINES,
                              seed=seed, halting=halting)
    return {**score_test_split(model, corpus, verbalizer, lines=lines, halting=halting,
                               unsure_below=unsure["unsure_below"], **limits),
            "calibration": calibration, "unsure": unsure}


def main(argv: list[str] | None = None) -> None:
    """Score a run's checkpoint (its EMA weights) on the test split again and rewrite the scores in its
    metrics.json (the training history and arguments are kept)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/trm-dictation-cache"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lines", type=int, help="test lines of each kind (default: the run's --test-lines)")
    parser.add_argument("--calibration-lines", type=int, default=CALIBRATION_LINES,
                        help="validation lines the halting rule is chosen on")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    metrics_path = args.run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    run_args = metrics["args"]
    seed = int(run_args["seed"])
    report = bundle_scores(load_model(args.run_dir / CHECKPOINT), load_corpus(args.cache_dir, seed), Verbalizer(seed),
                           max_chars=int(run_args["max_chars"]), max_source_chars=int(run_args["max_source_chars"]),
                           lines=args.lines or int(run_args["test_lines"]), seed=seed,
                           calibration_lines=args.calibration_lines)
    report["scored_with"] = "python -m trainer.dictation.evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
    metrics_path.write_text(json.dumps({**metrics, **report}, indent=1))
    print(json.dumps({key: value for key, value in report.items() if key != "history"}, indent=1)[:4000])


if __name__ == "__main__":
    main()
