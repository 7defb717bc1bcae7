"""A sequence model from a user's own file: ``trm-train fit --task sequence --train pairs.csv``.

The file has `source,target` columns (CSV) or fields (JSONL); the model reads the source and writes the
target one character at a time (printable ASCII). Without --test, a seeded 10% of the rows (at most
1,000) is held out for test; 10% of the rest (at most 200) is held out for validation, scored every 500 steps
and at the end, and the best-scored EMA weights are the bundle's (a loss spike late in a run once took held-out
exact match from 98.75% to 41.25% for one evaluation). The bundle has the held-out scores and examples in REPORT.md.
When the training rows say their numbers in English words, as dictation does, the bundle checks each answer's
numbers against its words (`spoken_numbers_checks`); when every training source is lowercase spoken words, the server
reads a request's text as spoken words (`spoken_words_reading`).

The fit starts from a sequence bundle's weights, model and halting rule (`--start-from`; by default the packaged
code-dictation, which reads spoken words and writes code) and trains them on the user's rows at a quarter of a fresh
model's learning rate; those weights are scored on the validation rows before the first step, so the bundle is never
below its start there. `--start-from scratch` trains a fresh model of the code-dictation recipe (d=128, a 2-layer
encoder, f of 2 layers, n=1, T=1, a copying pointer) with one refinement step per character (N_sup=1). Measured on
1,500 dictated lines of a package the shipped model never saw and on spoken dates (docs/EXPERIMENTS.md, 2026-12-04):
the start reads the dictated code at once, where a fresh model learns almost nothing of it in 15 minutes (training
the start on the rows gained a little on validation, nothing on test); on the dates both learn the task, the start
in a third of the steps.

One step per character for a fresh model, measured at equal wall time (15 minutes of training on code dictation,
docs/EXPERIMENTS.md): N_sup=1 reached 83.0% exact on 500 validation lines against 69.8% for N_sup=3 with
per-token halting, whose halting head stopped 99% of the characters after step 1 anyway. Each step a
token may take costs training time (every pass runs while any token of the batch still refines), and on
this kind of data later steps buy nothing (a character's later steps only gain when its whole prefix
refines with it), so the user's minutes go to more examples instead.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer.data.files import DataError, counted, data_hashes
from trainer.data.holdout import inputs_seen, shuffled_holdout
from trainer.sequence.batches import Batch, length_bucketed
from trainer.sequence.bundle import bundle_halting, sequence_manifest, sequence_model_from_bundle, write_sequence_bundle
from trainer.sequence.decode import Halting
from trainer.sequence.evaluate import (
    halting_name,
    held_out_passes,
    held_out_scores,
    predict,
    score,
    sequence_metrics,
    unsure_threshold,
)
from trainer.sequence.model import SequenceConfig, SequenceTRM
from trainer.sequence.pairs import MAX_SOURCE_CHARS, MAX_TARGET_CHARS, Pair, load_pairs
from trainer.sequence.report import adaptive_compute_lines, example_lines, plot_anytime
from trainer.sequence.train import SequenceTrainConfig, SequenceTrainer
from trm_bundle.manifest import Bundle, BundleError, Training, load_bundle
from trm_bundle.spoken_numbers import SPOKEN_NUMBERS, numbers_agree
from trm_bundle.spoken_words import SPOKEN_WORDS, as_spoken_words

HOLD_OUT_SHARE, HOLD_OUT_MAX = 0.1, 1000
VALIDATION_ROWS = 200  # at most, held out of the training rows and scored during training
AFTER_FIXED_S = 5.0  # after the loop, beside decoding: the spoken-numbers check, the export (0.6 s), the report
SCORED_OVER_LONGEST = 8  # the loop's scores read answers up to the data's longest target and this many tokens more
LOG_EVERY = 100  # optimizer steps between progress lines: 7 s for short rows on 2 cores (train.LOG_SECONDS at most)
HALT_THRESHOLD = 0.5  # the manifest's halting threshold; with one step per character nothing waits on it
SPOKEN_NUMBERS_MIN_ROWS = 20  # training rows that write digits before the spoken-numbers check is tried
LR = 2e-3  # a fresh model's peak learning rate
START_LR = 5e-4  # a bundle's weights trained on: 2e-3 took dictated code below its start (docs/EXPERIMENTS.md)
MODEL = {"hidden_size": 128, "num_heads": 4, "encoder_layers": 2, "num_layers": 2, "n": 1, "T": 1, "N_sup": 1}


def split_pairs(pairs: list[Pair], test: list[Pair] | None, seed: int) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """(training, validation, test rows): the test rows are the --test file's, else a seeded share of the file;
    the validation rows, which choose the weights the bundle ships, a seeded share of the rest (none when the rest
    is one source). The rows of one source stay together."""
    rest, test_rows = (pairs, test) if test is not None else _held_out(pairs, seed, HOLD_OUT_MAX)
    training, validation = _held_out(rest, seed, VALIDATION_ROWS)
    return training, validation, test_rows


def _held_out(pairs: list[Pair], seed: int, most: int) -> tuple[list[Pair], list[Pair]]:
    """(kept, held-out rows): HOLD_OUT_SHARE of `pairs` (at least one row, at most `most`), in whole sources."""
    kept, held = shuffled_holdout([pair.source for pair in pairs], seed,
                                  min(most, max(1, round(HOLD_OUT_SHARE * len(pairs)))))
    return [pairs[i] for i in sorted(kept)], [pairs[i] for i in sorted(held)]


def split_sentence(training: list[Pair], validation: list[Pair], tested: list[Pair], test_file: bool) -> str:
    """E.g. "648 training rows, 72 validation, 80 held out for test", with how many test rows have a source the
    training rows have, how many sources of the file are given more than one target, and how many targets begin or
    end with white space (which the model learns to write: a CSV's space after its commas, say)."""
    tests = f"the test file's {counted(len(tested), 'row')}" if test_file else f"{len(tested):,} held out for test"
    sentence = f"{counted(len(training), 'training row')}, {len(validation):,} validation, {tests}"
    repeated = inputs_seen([pair.source for pair in training], [pair.source for pair in tested])
    if repeated:
        sentence += (f" ({repeated:,} of them with a source the training rows have too: the test figures count "
                     "what the model saw)")
    targets: dict[str, set[str]] = {}
    for pair in training + validation + ([] if test_file else tested):
        targets.setdefault(pair.source, set()).add(pair.target)
    if ambiguous := [source for source, written in targets.items() if len(written) > 1]:
        have = "has" if len(ambiguous) == 1 else "have"
        written = ", ".join(map(repr, sorted(targets[ambiguous[0]])[:3]))
        sentence += (f"; note: {counted(len(ambiguous), 'source')} of the file {have} more than one target "
                     f"({ambiguous[0]!r}: {written}): the model learns one way to write each, so write each source's "
                     "target one way")
    padded = [pair.target for pair in training + validation + tested if pair.target != pair.target.strip()]
    if padded:
        sentence += (f"; note: {counted(len(padded), 'target')} begin or end with white space ({padded[0]!r}), "
                     "which the model learns to write: remove it if it is not part of the answer (a space after "
                     "each comma of a CSV file, say)")
    return sentence


def fit_sequence(train: Path, test: Path | None, *, out: Path, name: str, version: str, run_dir: Path,
                 minutes: float, seed: int, command: str, resume: bool = True, batch_size: int = 64,
                 lr: float | None = None, start_from: Path | None = None, started: float | None = None) -> Bundle:
    """Train on `train` (from `start_from`'s weights if given), score on the held-out rows and write the bundle
    `out / name` at `version`, all within `minutes` from `started` (a `time.monotonic()`, default now): the loop
    ends early by the decoding after it, at its evaluations' measured time, and by AFTER_FIXED_S for the rest."""
    started = time.monotonic() if started is None else started
    pairs = load_pairs(train, MAX_SOURCE_CHARS, MAX_TARGET_CHARS)
    if len(pairs) < (1 if test else 2):
        raise DataError(train, None, f"{counted(len(pairs), 'row')}: too few to train on and hold out a test share")
    training, validation, held_out = split_pairs(
        pairs, load_pairs(test, MAX_SOURCE_CHARS, MAX_TARGET_CHARS) if test else None, seed)
    if not held_out:
        raise DataError(train, None, f"{counted(len(pairs), 'row')} of one source: too few to train on and hold out "
                        "a test share")
    every = training + validation + held_out
    start = starting_point(start_from, every, seed)
    data_sha256 = data_hashes(train, test)
    cfg = start.model.cfg
    print(f"{name}: {split_sentence(training, validation, held_out, test is not None)}; a time budget of "
          f"{minutes:g} min" + (f", starting from {start.name}" if start_from else ""), flush=True)

    def batches(step: int) -> Iterator[Batch]:
        """The batch stream from `step` on: a resumed run draws on, not the first run's draws again."""
        rng = np.random.default_rng([seed, step])

        def draw(count: int) -> list[tuple[str, str]]:
            return [(training[i].source, training[i].target) for i in rng.integers(len(training), size=count)]

        return length_bucketed(draw, batch_size, seed + step)

    # An answer longer than every target is wrong whatever comes after: the loop's scores stop reading there (QA:
    # the starting weights' answers of 128 wrong characters to long sources took 2.3 of a 3.7-minute loop)
    scored_len = min(cfg.max_target_len, max(len(pair.target) for pair in every) + SCORED_OVER_LONGEST)

    def evaluate(model: SequenceTRM) -> dict[str, float]:
        predictions = predict(model, [p.source for p in validation], halting=start.halting, max_len=scored_len)
        return score(predictions.texts, [p.target for p in validation])

    trainer = SequenceTrainer(
        SequenceTrainConfig(run_dir=run_dir, batch_size=batch_size, lr=lr or start.lr, max_minutes=minutes,
                            eval_every=500, log_every=LOG_EVERY, seed=seed, evaluate_first=start_from is not None,
                            **start.recipe),
        start.model, batches, evaluate if validation else None, data_sha256={**data_sha256, **start.identity})
    curves = cfg.N_sup > 1
    # the loop's evaluations decode the validation rows; after it, those again (the unsure threshold) and the test's,
    # counted by the row (on a quiet machine 500 test rows against 139 validation ones reserved 45 s for about 40;
    # counted by decoding batch, 26 s, and the fit ended 9 s past its 15 minutes)
    after = (len(validation) + held_out_passes(cfg.N_sup, curves) * len(held_out)) / max(1, len(validation))
    trainer.fit(resume=resume, ends_by=started + minutes * 60 - AFTER_FIXED_S, evaluations_after=after)
    final = trainer.best_model()
    checks, checks_sentence = spoken_numbers_checks(training)
    normalize, normalize_sentence = spoken_words_reading(training)
    unsure_below = 0.0
    if validation:  # the confidence below which an answer is flagged unsure, chosen on the validation rows
        checked = predict(final, [p.source for p in validation], halting=start.halting)
        unsure_below = unsure_threshold(checked.confidence, [written == pair.target for written, pair in
                                                             zip(checked.texts, validation, strict=True)])
    scores = held_out_scores(final, [p.source for p in held_out], [p.target for p in held_out], None,
                             halting=start.halting, curves=curves, unsure_below=unsure_below,
                             checks_numbers=SPOKEN_NUMBERS in checks)
    test_figures = scores["test"]
    fixed = scores.get("fixed_steps") or [{"steps": 1, **{key: test_figures[key]
                                                         for key in ("exact_match", "cer", "count")}}]
    metrics = sequence_metrics(test_figures, fixed)
    record = Training(model_config=cfg.to_dict(), config={**trainer.cfg.to_dict(), "train": str(train),
                                                          "test": str(test) if test else None,
                                                          "start_from": str(start_from) if start_from else None},
                      data_sha256=data_sha256, command=command, wall_time_s=time.monotonic() - started,
                      optimizer_steps=trainer.step, train_time_s=trainer.elapsed_s, device="cpu",
                      parameters=sum(p.numel() for p in final.parameters()))
    manifest = sequence_manifest(final, name=name, version=version, max_chars=max(len(p.source) for p in every),
                                 training=record, description=f"Sequence model trained on {train.name}",
                                 metrics=metrics, halt_threshold=start.halting.threshold,
                                 halt_when_unchanged=start.halting.when_unchanged, unsure_below=unsure_below,
                                 checks=checks, normalize=normalize)
    report = "\n".join([
        f"# {name} {version}", "",
        f"- Command: `{command}`",
        f"- Wall time: {record.wall_time_s / 60:.1f} min of this command ({record.train_time_s / 60:.1f} min of "
        f"training and {record.optimizer_steps:,} optimizer steps over every command that trained these weights), "
        f"{record.parameters:,} parameters, CPU.",
        f"- Data: {counted(len(training), 'training row')} of `{train.name}`; "
        + (f"test: `{test.name}`, {counted(len(held_out), 'row')}." if test
           else f"test: {counted(len(held_out), 'row')} held out of it."),
        *([f"- Started from: the weights, model and halting rule of {start.name} (`{start_from}`)"] if start_from
          else []),
        f"- Weights: {weights_sentence(trainer, len(validation))}",
        f"- Unsure answers: {unsure_sentence(test_figures['unsure'], len(validation))}",
        f"- Spoken-numbers check: {checks_sentence}",
        f"- Input: {normalize_sentence}",
        "",
        f"Held-out exact match **{100 * test_figures['exact_match']:.2f}%**, character error rate "
        f"{100 * test_figures['cer']:.2f}%, {steps_sentence(test_figures, fixed)}.", "", *example_lines(test_figures),
        *(adaptive_compute_lines(test_figures, fixed, scores["halting_curve"]) if curves else [])])
    files: dict[str, Path | str] = {
        "REPORT.md": report,
        "evaluation.json": json.dumps({"scores": scores, "history": trainer.history,
                                       "shipped_step": (trainer.best_evaluation or {"step": trainer.step})["step"]},
                                      indent=1)}
    with tempfile.TemporaryDirectory() as scratch:
        if curves:  # tokens that refine: accuracy against steps per token (BUNDLE.md)
            files["anytime.png"] = Path(scratch) / "anytime.png"
            plot_anytime(files["anytime.png"], test_figures, fixed, scores["halting_curve"])
        return write_sequence_bundle(out / name, final, manifest, files)


@dataclass(frozen=True)
class StartingPoint:
    """What a fit trains and ships: the model (fresh, or a bundle's weights), the halting rule it is scored and
    served with, its peak learning rate, the training recipe it keeps (depth, step weights) and the identity a
    resumed run must share (`data_sha256`)."""

    model: SequenceTRM
    halting: Halting
    lr: float
    recipe: dict[str, str]
    identity: dict[str, str]
    name: str


def starting_point(start_from: Path | None, rows: list[Pair], seed: int) -> StartingPoint:
    """A fresh model of MODEL sized to `rows` (its weights drawn from `seed`), or with `start_from` (`--start-from`) a
    sequence bundle's model, halting rule and training recipe; every row must fit the bundle's model (ValueError)."""
    if start_from is None:
        torch.manual_seed(seed)
        cfg = SequenceConfig(max_source_len=max(len(p.source) for p in rows),
                             max_target_len=max(len(p.target) for p in rows) + 1, **MODEL)
        return StartingPoint(SequenceTRM(cfg), Halting(threshold=HALT_THRESHOLD), LR, {}, {}, "a fresh model")
    flag = f"--start-from {start_from}"
    try:
        bundle = load_bundle(start_from)
    except BundleError as exc:
        raise ValueError(f"{flag}: {exc}") from exc
    manifest = bundle.manifest
    if manifest.task != "sequence":
        raise ValueError(f"{flag}: {manifest.name} is a {manifest.task} model; give a sequence bundle's folder (e.g. "
                         "trm_service/models/code-dictation) or 'scratch'")
    if manifest.training is None:
        raise ValueError(f"{flag}: {manifest.name} {manifest.version} records no training section (its model's "
                         "shape), so no fit can start from it")
    model = sequence_model_from_bundle(bundle).train()
    source, target = max(rows, key=lambda p: len(p.source)), max(rows, key=lambda p: len(p.target))
    if len(source.source) > model.cfg.max_source_len or len(target.target) + 1 > model.cfg.max_target_len:
        raise ValueError(f"{flag}: its model reads at most {model.cfg.max_source_len:,} characters and writes at "
                         f"most {model.cfg.max_target_len - 1:,}; the file has a source of {len(source.source):,} "
                         f"and a target of {len(target.target):,}")
    recipe = manifest.training.config
    return StartingPoint(model, bundle_halting(bundle), START_LR,
                         {key: recipe[key] for key in ("depth", "step_weights") if key in recipe},
                         {"start_from": bundle.manifest_sha256}, f"{manifest.name} {manifest.version}")


def spoken_numbers_checks(training: list[Pair]) -> tuple[tuple[str, ...], str]:
    """The bundle's checks and REPORT.md's sentence on them. The spoken-numbers check (trm_bundle.spoken_numbers) is
    on when SPOKEN_NUMBERS_MIN_ROWS or more training rows write digits and every training row passes it (the sources
    say the numbers in English words, as dictation does, and a number word such as "for" or "to" is written as one
    where no number is meant); on other data it would flag right answers, so it is off."""
    with_digits = [pair for pair in training if any(char.isdigit() for char in pair.target)]
    if len(with_digits) < SPOKEN_NUMBERS_MIN_ROWS:
        return (), (f"off ({counted(len(with_digits), 'training row')} write digits; it is tried on "
                    f"{SPOKEN_NUMBERS_MIN_ROWS} or more)")
    failing = [pair for pair in training if not numbers_agree(pair.source, pair.target)]
    if failing:
        return (), (f"off ({len(failing):,} of the {len(training):,} training rows fail it, e.g. "
                    f"`{failing[0].source}` -> `{failing[0].target}`, so it would flag right answers)")
    return (SPOKEN_NUMBERS,), (f"on (each of the {len(training):,} training rows passes it: the "
                                 f"{len(with_digits):,} that write digits say their numbers in words): an answer "
                                 "that writes a number its words do not say is marked unsure "
                                 "(`TextAnswer.numbers_disagree`)")


def spoken_words_reading(training: list[Pair]) -> tuple[str | None, str]:
    """The bundle's `input.normalize` and REPORT.md's sentence on it. A text is read as spoken words
    (trm_bundle.spoken_words) when every training source already is in that form (lowercase words, single spaces,
    no recogniser's punctuation or leading filler): a speech recogniser's "Um, March fifth." then reads as the
    "march fifth" the model learnt. Where a source is not, its capitals, punctuation or spaces may be meaning, and
    the text is read as given."""
    changed = [pair.source for pair in training if as_spoken_words(pair.source) != pair.source]
    if changed:
        return None, (f"read as given ({len(changed):,} of the {len(training):,} training sources are not lowercase "
                      f"spoken words, e.g. `{changed[0]}`)")
    return SPOKEN_WORDS, ("read as spoken words (`input.normalize`: every training source is lowercase words): a "
                          "speech recogniser's capitals, punctuation at a word's edges, leading \"uh\" or \"um\" and "
                          "extra spaces are read away before the model reads the text")


def steps_sentence(test: dict[str, Any], fixed: list[dict[str, Any]]) -> str:
    """How many refinement steps the answers took, e.g. "1.02 steps per character at its halting (threshold 0.9, else
    until unchanged); with a fixed count of 1 / 2 / 3 / 4 steps: 90.00 / 91.33 / 91.33 / 92.00%"."""
    if len(fixed) == 1:
        return "one refinement step per character (N_sup=1, the preset's choice: docs/TRAINING.md)"
    counts = " / ".join(str(point["steps"]) for point in fixed)
    figures = " / ".join(f"{100 * point['exact_match']:.2f}" for point in fixed)
    return (f"{test['steps']['mean_steps']:.2f} steps per character at its halting ({halting_name(test)}); with a "
            f"fixed count of {counts} steps: {figures}%")


def weights_sentence(trainer: SequenceTrainer, validation_rows: int) -> str:
    """Which weights the bundle ships, e.g. "the EMA weights of step 1,500, the best of 4 scores on 72 validation
    rows (exact match 97.22%; the last step, 2,000, scored 95.83%)"."""
    best = trainer.best_evaluation
    if best is None:
        return "the last step's EMA weights (no validation rows: the rows left after the test share are one source)"
    if best["step"] == 0:
        return (f"the starting weights, whose {100 * best['exact_match']:.2f}% exact match on "
                f"{counted(validation_rows, 'validation row')} no later score of the {len(trainer.history) - 1:,} "
                "beat")
    last = trainer.history[-1]
    later = "" if best is last else f"; the last step, {last['step']:,}, scored {100 * last['exact_match']:.2f}%"
    return (f"the EMA weights of step {best['step']:,}, the best of {counted(len(trainer.history), 'score')} on "
            f"{counted(validation_rows, 'validation row')} (exact match {100 * best['exact_match']:.2f}%{later})")


def unsure_sentence(unsure: dict[str, float | None], validation_rows: int) -> str:
    """What the calibrated unsure flag does, e.g. "below confidence 0.52 (chosen on 72 validation rows); on the test
    rows it flags 6 answers, 5 of them wrong (of 8 wrong answers), and the 74 it keeps are 95.95% exact"."""
    if not validation_rows:
        return "never flagged (no validation rows to choose a threshold on)"
    if not unsure["unsure_below"]:
        return f"never flagged (an answer of confidence 0 among the {counted(validation_rows, 'validation row')})"
    kept = unsure["rows"] - unsure["flagged"]
    keeps = (f"the {kept:,} it keeps are {100 * unsure['kept_exact_match']:.2f}% exact" if kept else "it keeps none")
    checked = (f" ({unsure['numbers_disagree']:,} by the spoken-numbers check)" if "numbers_disagree" in unsure
               else "")
    return (f"below confidence {unsure['unsure_below']:.6g} (chosen on {counted(validation_rows, 'validation row')}); "
            f"on the test rows it flags {counted(unsure['flagged'], 'answer')}{checked}, {unsure['flagged_wrong']} of "
            f"them wrong (of {counted(unsure['wrong'], 'wrong answer')}), and {keeps}")
