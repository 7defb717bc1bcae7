"""Training cost of a sequence TRM: CPU milliseconds per example for one optimizer step, by step count.

    python -m trainer.sequence.bench --hidden-size 96 --n 1 --T 1 --N-sup 3 --batch-size 32 64 128

Random ids shaped like dictation (a spoken source of --source-len characters, a written target of
--target-len tokens); every token takes exactly --steps refinement steps (1: a learned halting head that
stops easy tokens at once; N_sup: a head that never halts). CPU time of this process is measured, so a
busy machine slows the wall clock more than the figures.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch

from trainer.sequence.decode import Halting
from trainer.sequence.model import SequenceConfig, SequenceTRM
from trainer.sequence.teacher_forcing import teacher_forced
from trainer.sequence.vocab import EOS_ID, VOCAB_SIZE


def cpu_ms_per_example(model: SequenceTRM, batch_size: int, source_len: int, target_len: int, steps: int,
                       repeats: int) -> float:
    """Median CPU time of a training step (forward, backward, AdamW) divided by the batch size."""
    generator = torch.Generator().manual_seed(0)
    source = torch.randint(3, VOCAB_SIZE, (batch_size, source_len), generator=generator)
    targets = torch.randint(3, VOCAB_SIZE, (batch_size, target_len), generator=generator)
    targets[:, -1] = EOS_ID
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        started = time.process_time()
        out = teacher_forced(model, source, targets, Halting(fixed_steps=steps))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        times.append(time.process_time() - started)
    return sorted(times[1:])[repeats // 2] * 1000 / batch_size


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden-size", type=int, default=96)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--encoder-layers", type=int, default=2)
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--T", type=int, default=1)
    parser.add_argument("--N-sup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--source-len", type=int, default=64)
    parser.add_argument("--target-len", type=int, default=27)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SequenceTRM(SequenceConfig(hidden_size=args.hidden_size, num_heads=args.num_heads,
                                       encoder_layers=args.encoder_layers, n=args.n, T=args.T,
                                       N_sup=args.N_sup)).train()
    print(f"{sum(p.numel() for p in model.parameters())} parameters, source {args.source_len} characters, "
          f"target {args.target_len} tokens, {args.threads} thread(s)")
    for batch_size in args.batch_size:
        for steps in sorted({1, args.N_sup}):
            ms = cpu_ms_per_example(model, batch_size, args.source_len, args.target_len, steps, args.repeats)
            print(f"batch {batch_size:4d}  {steps} step(s) per token: {ms:7.1f} CPU ms per example")


if __name__ == "__main__":
    main()
