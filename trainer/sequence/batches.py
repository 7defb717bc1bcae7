"""Pairs of texts -> padded id tensors, in batches of similar target length (less padding, fewer idle rows)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from trainer.sequence.vocab import encode_batch

PairSource = Callable[[int], list[tuple[str, str]]]  # count -> (source, target) pairs


@dataclass
class Batch:
    source: torch.Tensor  # [B, S] ids, padded
    targets: torch.Tensor  # [B, L] ids, each ending with EOS_ID, then padded
    pairs: list[tuple[str, str]]


def to_batch(pairs: Sequence[tuple[str, str]]) -> Batch:
    """Ids of the pairs, padded to the longest source and target (with its end mark) among them."""
    source_len = max(len(source) for source, _ in pairs)
    target_len = max(len(target) for _, target in pairs) + 1
    return Batch(
        torch.from_numpy(encode_batch([source for source, _ in pairs], source_len)),
        torch.from_numpy(encode_batch([target for _, target in pairs], target_len, end_mark=True)),
        list(pairs),
    )


def length_bucketed(draw: PairSource, batch_size: int, seed: int, pool_batches: int = 16) -> Iterator[Batch]:
    """Endless batches: draw `pool_batches` batches' worth of pairs, sort them by target length, cut them
    into batches and yield those in a seeded random order."""
    rng = np.random.default_rng(seed)
    while True:
        pool = sorted(draw(batch_size * pool_batches), key=lambda pair: (len(pair[1]), len(pair[0])))
        chunks = [pool[start:start + batch_size] for start in range(0, len(pool), batch_size)]
        for index in rng.permutation(len(chunks)):
            yield to_batch(chunks[index])
