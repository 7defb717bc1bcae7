"""Greedy decoding of many inputs, and the scores of a sequence model: exact match and character error rate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from rapidfuzz.distance import Levenshtein

from trainer.sequence.batches import to_batch
from trainer.sequence.decode import Halting, run
from trainer.sequence.model import SequenceTRM
from trainer.sequence.vocab import decode


@dataclass
class Predictions:
    texts: list[str]
    steps: list[list[int]]  # refinement steps of each emitted token, the end mark included


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
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = to_batch([(sources[index], "") for index in chunk])
        out = run(model, batch.source, halting=halting, max_len=max_len)
        for row, index in enumerate(chunk):
            ids = out.tokens[row].tolist()
            texts[index] = decode(ids)
            steps[index] = [count for count in out.steps[row].tolist() if count]
    return Predictions(texts, steps)


def score(predicted: Sequence[str], expected: Sequence[str]) -> dict[str, float]:
    """Exact match (share of answers exactly right) and character error rate (edits / expected characters)."""
    if len(predicted) != len(expected) or not expected:
        raise ValueError(f"need as many predictions as answers (> 0), got {len(predicted)} and {len(expected)}")
    exact = sum(p == e for p, e in zip(predicted, expected, strict=True))
    edits = sum(Levenshtein.distance(p, e) for p, e in zip(predicted, expected, strict=True))
    return {"exact_match": exact / len(expected), "cer": edits / max(1, sum(map(len, expected))),
            "count": float(len(expected))}
