"""Greedy decoding of many inputs, and the scores of a sequence model: exact match, character error rate,
and adaptive compute (exact match at each fixed step count and as the halting threshold sweeps, steps per
token by kind of character)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rapidfuzz.distance import Levenshtein

from trainer.data.holdout import sample_indices
from trainer.sequence.batches import to_batch
from trainer.sequence.bundle import bundle_halting, sequence_model_from_bundle
from trainer.sequence.decode import Halting, run
from trainer.sequence.model import SequenceTRM
from trainer.sequence.pairs import MAX_SOURCE_CHARS, MAX_TARGET_CHARS, Pair, load_pairs
from trainer.sequence.vocab import decode
from trm_bundle.manifest import Bundle, Manifest
from trm_bundle.spoken_numbers import SPOKEN_NUMBERS, numbers_agree
from trm_service.runtime.codec import InputError
from trm_service.runtime.sequence_codec import SequenceCodec


@dataclass
class Predictions:
    texts: list[str]
    steps: list[list[int]]  # refinement steps of each emitted token, the end mark included
    confidence: list[float]  # each answer's probability: the product of its emitted tokens' (Decoded.confidence)


@torch.no_grad()
def predict(
    model: SequenceTRM,
    sources: Sequence[str],
    batch_size: int = 128,
    halting: Halting | None = None,
    max_len: int | None = None,
) -> Predictions:
    """The model's answers to `sources`, decoded greedily in batches of similar length, in input order;
    an answer stops at its end mark or after `max_len` tokens (default: the model's limit)."""
    model.eval()
    order = sorted(range(len(sources)), key=lambda index: len(sources[index]))
    texts: list[str] = [""] * len(sources)
    steps: list[list[int]] = [[] for _ in sources]
    confidence = [0.0] * len(sources)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = to_batch([(sources[index], "") for index in chunk])
        out = run(model, batch.source, halting=halting, max_len=max_len)
        answers = out.confidence().tolist()
        for row, index in enumerate(chunk):
            ids = out.tokens[row].tolist()
            texts[index] = decode(ids)
            steps[index] = [count for count in out.steps[row].tolist() if count]
            confidence[index] = answers[row]
    return Predictions(texts, steps, confidence)


def score(predicted: Sequence[str], expected: Sequence[str]) -> dict[str, float]:
    """Exact match (share of answers exactly right) and character error rate (edits / expected characters)."""
    if len(predicted) != len(expected) or not expected:
        raise ValueError(f"need as many predictions as answers (> 0), got {len(predicted)} and {len(expected)}")
    exact = sum(p == e for p, e in zip(predicted, expected, strict=True))
    edits = sum(Levenshtein.distance(p, e) for p, e in zip(predicted, expected, strict=True))
    return {"exact_match": exact / len(expected), "cer": edits / max(1, sum(map(len, expected))),
            "count": float(len(expected))}


CURVE_THRESHOLDS = (0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97)
CALIBRATION_TOLERANCE = 0.005  # learned halting may cost this much exact match against the best fixed step count


def char_kind(char: str | None) -> str:
    """The kind of an output token, for steps per token by kind."""
    if char is None:
        return "end"
    if char == " ":
        return "space"
    if char.isalpha():
        return "letter"
    if char.isdigit():
        return "digit"
    if char in "()[]{}":
        return "bracket"
    if char in "'\"":
        return "quote"
    return "other symbol"


def steps_report(predictions: Predictions) -> dict[str, Any]:
    """Mean steps per token overall, by kind of character and for the slowest characters, and the
    histogram of steps."""
    by_kind: dict[str, list[int]] = defaultdict(list)
    by_char: dict[str, list[int]] = defaultdict(list)
    histogram: dict[int, int] = defaultdict(int)
    for text, steps in zip(predictions.texts, predictions.steps, strict=True):
        for index, count in enumerate(steps):
            char = text[index] if index < len(text) else None
            by_kind[char_kind(char)].append(count)
            by_char["[EOS]" if char is None else char].append(count)
            histogram[count] += 1
    every = [count for counts in by_kind.values() for count in counts]
    means = {kind: sum(counts) / len(counts) for kind, counts in by_kind.items()}
    slowest = sorted(((sum(c) / len(c), char, len(c)) for char, c in by_char.items() if len(c) >= 20), reverse=True)
    return {"mean_steps": sum(every) / max(1, len(every)),
            "by_kind": dict(sorted(means.items(), key=lambda item: -item[1])),
            "slowest_characters": [{"char": char, "mean_steps": mean, "count": count}
                                   for mean, char, count in slowest[:10]],
            "histogram": dict(sorted(histogram.items()))}


def halting_curves(model: SequenceTRM, sources: Sequence[str], targets: Sequence[str],
                   max_len: int | None) -> dict[str, list[dict[str, Any]]]:
    """`fixed_steps`: exact match at each fixed step count per token; `halting_curve`: exact match and mean
    steps per token as the halting threshold sweeps CURVE_THRESHOLDS, with the halting head alone and with
    unsure tokens also stopping once their answer is unchanged (`Halting.when_unchanged`)."""
    fixed = [{"steps": k, **score(predict(model, sources, halting=Halting(fixed_steps=k), max_len=max_len).texts,
                                  targets)} for k in range(1, model.cfg.N_sup + 1)]
    curve = []
    for when_unchanged in (False, True):
        for threshold in CURVE_THRESHOLDS:
            swept = predict(model, sources, halting=Halting(threshold=threshold, when_unchanged=when_unchanged),
                            max_len=max_len)
            curve.append({"threshold": threshold, "when_unchanged": when_unchanged, **score(swept.texts, targets),
                          "mean_steps": steps_report(swept)["mean_steps"]})
    return {"fixed_steps": fixed, "halting_curve": curve}


def held_out_passes(n_sup: int, curves: bool) -> int:
    """The decoding of `held_out_scores` over the held-out rows, in passes of one step per character: the halting
    rule's pass and, with `curves`, the threshold sweeps' (about one step each) and each fixed count k's (k steps).
    Measured on code-dictation 1.4.1: 21.7 such passes' time for its 25 counted (a pass has a cost of its own too)."""
    return 1 + (2 * len(CURVE_THRESHOLDS) + sum(range(1, n_sup + 1)) if curves else 0)


def calibrated_halting(curves: dict[str, list[dict[str, Any]]]) -> Halting:
    """The halting rule with the fewest mean steps whose exact match is within CALIBRATION_TOLERANCE of the
    best fixed step count's; if none is, the most accurate one (the rule of the classification bundles)."""
    within = points_within_tolerance(curves)
    if within:
        chosen = min(within, key=lambda p: (p["mean_steps"], -p["exact_match"]))
    else:
        chosen = max(curves["halting_curve"], key=lambda p: (p["exact_match"], -p["mean_steps"]))
    return point_halting(chosen)


def points_within_tolerance(curves: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The halting curve's points within CALIBRATION_TOLERANCE of the best fixed step count's exact match."""
    best_fixed = max(point["exact_match"] for point in curves["fixed_steps"])
    return [p for p in curves["halting_curve"] if p["exact_match"] >= best_fixed - CALIBRATION_TOLERANCE]


def calibration_reason(curves: dict[str, list[dict[str, Any]]]) -> str:
    """Why `calibrated_halting` chose its rule on these curves, in REPORT.md's words."""
    tolerance = f"{100 * CALIBRATION_TOLERANCE:g}"
    if points_within_tolerance(curves):
        return f"the fewest mean steps within {tolerance} points of the best fixed step count's exact match"
    best_fixed = max(point["exact_match"] for point in curves["fixed_steps"])
    best_learned = max(point["exact_match"] for point in curves["halting_curve"])
    return (f"no threshold came within {tolerance} points of the best fixed step count's exact match "
            f"({100 * best_fixed:.1f}%), so the most accurate one ({100 * best_learned:.1f}%), the fewest mean steps "
            "among equals")


def point_halting(point: dict[str, Any]) -> Halting:
    """The halting rule of a curve point or a calibration (its `threshold`, and `when_unchanged`, absent from
    figures written before the rule existed)."""
    return Halting(threshold=point["threshold"], when_unchanged=point.get("when_unchanged", False))


def halting_name(point: dict[str, Any]) -> str:
    """How REPORT.md names the halting rule of a curve point, test scores or calibration."""
    halting = point_halting(point)
    return f"threshold {halting.threshold}" + (", else until unchanged" if halting.when_unchanged else "")


def sequence_metrics(test: dict[str, Any], fixed_steps: list[dict[str, float]]) -> dict[str, float]:
    """The manifest figures every sequence bundle has (docs/BUNDLE.md): exact match, CER and mean steps per
    token at its halting, and the best fixed step count with its exact match."""
    best = max(fixed_steps, key=lambda point: point["exact_match"])
    return {"test_exact_match": test["exact_match"], "test_cer": test["cer"],
            "test_mean_steps_per_token": test["steps"]["mean_steps"],
            "test_best_fixed_steps": float(best["steps"]), "test_best_fixed_exact": best["exact_match"]}


def unsure_threshold(confidence: Sequence[float], right: Sequence[bool]) -> float:
    """The manifest's `sequence.unsure_below` chosen on these answers: the threshold that makes the most right calls
    (a right answer kept, a wrong one flagged), the lowest of equals. When flagging none of them does best (every
    answer right, say), that is their lowest confidence: an answer less sure than every one seen is unsure. When
    flagging all of them does (every answer wrong: a fit that learned nothing), it is just above their highest."""
    values = sorted(set(confidence))
    above_all = [float(np.nextafter(values[-1], np.inf))] if values else []
    candidates = [values[0] if values else 0.0, *((low + high) / 2 for low, high in itertools.pairwise(values)),
                  *above_all]
    scores, answered_right = np.asarray(confidence), np.asarray(right, dtype=bool)
    calls = [int(((scores >= threshold) == answered_right).sum()) for threshold in candidates]
    return candidates[int(np.argmax(calls))]


def unsure_figures(confidence: Sequence[float], right: Sequence[bool], unsure_below: float,
                   numbers_disagree: Sequence[bool] | None = None) -> dict[str, float | None]:
    """What flagging answers of confidence below `unsure_below` (and, given the spoken-numbers check's verdicts, those
    it fails, as the server flags them) does on these answers: how many it flags (and how many the check flags, as
    `numbers_disagree`), how many of those are wrong, of how many wrong, and the exact match of the answers it keeps
    (None when it keeps none)."""
    flagged, answered_right = np.asarray(confidence) < unsure_below, np.asarray(right, dtype=bool)
    checked = {}
    if numbers_disagree is not None:
        disagree = np.asarray(numbers_disagree, dtype=bool)
        flagged |= disagree
        checked = {"numbers_disagree": int(disagree.sum())}
    kept = answered_right[~flagged]
    return {"unsure_below": unsure_below, "rows": len(answered_right), "flagged": int(flagged.sum()), **checked,
            "flagged_wrong": int((flagged & ~answered_right).sum()), "wrong": int((~answered_right).sum()),
            "kept_exact_match": float(kept.mean()) if kept.size else None}


def numbers_disagreements(sources: Sequence[str], predictions: Predictions) -> list[bool]:
    """Which answers the server marks `numbers_disagree`: those that ended (wrote their end mark) with numbers their
    source's words do not say (trm_bundle.spoken_numbers)."""
    return [len(steps) > len(text) and not numbers_agree(source, text)
            for source, text, steps in zip(sources, predictions.texts, predictions.steps, strict=True)]


def held_out_scores(model: SequenceTRM, sources: Sequence[str], targets: Sequence[str], max_len: int | None, *,
                    halting: Halting | None = None, curves: bool = True, subset: Sequence[int] = (),
                    unsure_below: float | None = None, checks_numbers: bool = False) -> dict[str, Any]:
    """`test`: exact match, CER, steps per token, examples and misses (the first 12 rows, and the first 12 answered
    wrongly, with their confidence) with `halting` (its threshold and rule), and
    the same scores over the `subset` of indexes (as `subset`); with `unsure_below`, what flagging the answers below
    it does (`unsure_figures`, as `unsure`), with `checks_numbers` the answers the spoken-numbers check fails flagged
    too, as the server flags them; with `curves`, also `halting_curves`."""
    halting = halting or Halting()
    predictions = predict(model, sources, halting=halting, max_len=max_len)
    test = {**score(predictions.texts, targets), "threshold": halting.threshold,
            "when_unchanged": halting.when_unchanged, "steps": steps_report(predictions),
            "examples": [(sources[i], targets[i], predictions.texts[i]) for i in range(min(12, len(targets)))],
            "misses": [(sources[i], targets[i], written, predictions.confidence[i])
                       for i, written in enumerate(predictions.texts)
                       if written != targets[i]][:12]}
    if subset:
        test["subset"] = score([predictions.texts[i] for i in subset], [targets[i] for i in subset])
    if unsure_below is not None:
        right = [written == expected for written, expected in zip(predictions.texts, targets, strict=True)]
        disagree = numbers_disagreements(sources, predictions) if checks_numbers else None
        test["unsure"] = unsure_figures(predictions.confidence, right, unsure_below, disagree)
    scores: dict[str, Any] = {"test": test}
    if curves:
        scores.update(halting_curves(model, sources, targets, max_len))
    return scores


def bundle_scores(bundle: Bundle, data: Path, limit: int = 0) -> dict[str, Any]:
    """A sequence bundle's scores on a file of source,target rows (`trm-train eval`): each source read as the server
    reads it (`SequenceCodec.read`: as spoken words where the manifest says so), decoded with the bundle's own
    weights and halting rule, as its fit scored its test rows, with the unsure flag of its manifest (its confidence
    threshold and checks); a fixed random `limit` of the rows (0: all). Rows whose source is longer than the bundle
    reads, which the server refuses, are left out and counted (`left_out`); another source it refuses is a
    ValueError naming its line."""
    manifest = bundle.manifest
    pairs = load_pairs(data, MAX_SOURCE_CHARS, MAX_TARGET_CHARS)
    reads = manifest.input.max_chars
    kept = [pair for pair in pairs if len(pair.source) <= reads]
    too_long = len(pairs) - len(kept)
    if not kept:
        raise ValueError(f"{data}: every source is longer than the {reads} characters {manifest.name} reads")
    if limit:
        kept = [kept[index] for index in sample_indices(len(kept), limit, seed=0)]
    sources, targets = served_sources(manifest, data, kept), [pair.target for pair in kept]
    scores = held_out_scores(sequence_model_from_bundle(bundle), sources, targets, None,
                             halting=bundle_halting(bundle), curves=False,
                             unsure_below=manifest.sequence.unsure_below,
                             checks_numbers=SPOKEN_NUMBERS in manifest.sequence.checks)
    scored: dict[str, Any] = {"bundle": manifest.name, "version": manifest.version, "split": "file",
                              "results": scores}
    if too_long:
        scored["left_out"] = {"rows": too_long, "longer_than": reads}
    return scored


def served_sources(manifest: Manifest, data: Path, pairs: Sequence[Pair]) -> list[str]:
    """The text the server's model reads for each pair's source (its SequenceCodec's reading); a source it refuses
    is a ValueError naming its line of `data`."""
    codec, read = SequenceCodec(manifest), []
    for pair in pairs:
        try:
            read.append(codec.read(pair.source))
        except InputError as exc:
            raise ValueError(f"{data}:{pair.line}: the server refuses this source: {exc}") from exc
    return read
