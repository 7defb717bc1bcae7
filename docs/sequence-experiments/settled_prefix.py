"""Where a sequence TRM's later refinement steps gain: per token alone, or with the whole prefix refined.

    python docs/sequence-experiments/settled_prefix.py RUN_DIR [--lines 400]

Scores a code-dictation run's EMA weights on validation lines (never test) three ways, all teacher-forced
(the gold prefix) so that token accuracy compares like with like, and decoding freely for exact match:
tokens grouped by their step-1 halting confidence at each fixed step count (every token at that step, so
each reads its predecessors' entries of the same step), and learned halting at several thresholds (a
token that refines on reads the settled entries of predecessors that stopped). docs/EXPERIMENTS.md
("Where the later steps' gain is", "A prefix settled at its first step") has the figures of the
sampled-depth run and of the run whose prefix cache keeps step 1.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from trainer.dictation.corpus import load_corpus
from trainer.dictation.verbalize import Verbalizer
from trainer.sequence.batches import to_batch
from trainer.sequence.decode import Halting
from trainer.sequence.evaluate import predict, score
from trainer.sequence.teacher_forcing import teacher_forced
from trainer.sequence.train import CHECKPOINT, load_model
from trainer.sequence.vocab import PAD_ID

CONFIDENCE_GROUPS = ((0.0, 0.5), (0.5, 0.9), (0.9, 0.99), (0.99, 1.01))
THRESHOLDS = (0.5, 0.9, 0.97)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--lines", type=int, default=400)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/trm-dictation-cache"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_model(args.run_dir / CHECKPOINT)
    verbalizer = Verbalizer(0)
    lines = random.Random(args.seed).sample(
        [line for line in load_corpus(args.cache_dir, 0).texts("val") if len(line) <= 40], args.lines)
    spoken = [verbalizer.speak(line) for line in lines]
    batch = to_batch(list(zip(spoken, lines, strict=True)))
    real = batch.targets != PAD_ID
    with torch.no_grad():
        fixed = {k: teacher_forced(model, batch.source, batch.targets, Halting(fixed_steps=k))
                 for k in range(1, model.cfg.N_sup + 1)}
    right = {k: out.answers == batch.targets for k, out in fixed.items()}
    confidence = torch.sigmoid(fixed[model.cfg.N_sup].halt_logits[..., 0])
    for low, high in CONFIDENCE_GROUPS:
        group = real & (confidence >= low) & (confidence < high)
        print(f"step-1 confidence [{low}, {high}): {int(group.sum())} tokens right at fixed steps "
              + " / ".join(f"{k}: {right[k][group].float().mean():.3f}" for k in right))
    for k in right:
        free = score(predict(model, spoken, halting=Halting(fixed_steps=k), max_len=48).texts, lines)
        print(f"fixed {k}: tokens right {right[k][real].float().mean():.4f}, exact match {free['exact_match']:.4f}")
    for threshold in THRESHOLDS:
        with torch.no_grad():
            halted = teacher_forced(model, batch.source, batch.targets, Halting(threshold=threshold))
        free = score(predict(model, spoken, halting=Halting(threshold=threshold), max_len=48).texts, lines)
        print(f"halting at {threshold}: tokens right {(halted.answers == batch.targets)[real].float().mean():.4f} "
              f"at {halted.steps[real].float().mean():.2f} steps, exact match {free['exact_match']:.4f}")


if __name__ == "__main__":
    main()
