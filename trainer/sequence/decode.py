"""Decoding with the caches: tokens one after another, and refinement steps within each token.

``run`` is inference as the server does it: the input is encoded once into the input cache; for each
output position every unfinished row refines its current token until its halting head stops it (or
N_sup steps, or a fixed step count), reading the prefix cache's entries of the step it is at (or of the
cache's last, ``cache_steps``); the token's entries are then committed, a halted token's last entries
standing for it at every later step.
Rows advance token by token together; within a token only the rows still refining are computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.sequence.model import KV, SequenceTRM
from trainer.sequence.vocab import BOS_ID, EOS_ID, PAD_ID

UNWRITABLE = (PAD_ID, BOS_ID)


@dataclass
class Halting:
    """When a token stops refining: after `fixed_steps` steps if set, else when sigmoid of its halting
    logit reaches `threshold` (or at N_sup), as the server halts. In training, with probability
    `exploration` a token must first take a random number of steps in [2, N_sup] (the TRM's exploration,
    so the halting head sees later steps too); with `sampled_depth` each token takes a number of steps
    drawn uniformly from [1, N_sup] whatever its halting head says (every step trained as an answer, on the
    mix of halted and refining neighbours that decoding meets). With `when_unchanged`, a token also stops
    after a step whose most probable token is the one its step before chose (the bundle's
    `sequence.halt_when_unchanged`; off with the halting head at threshold 1.0, as in the server): an unsure
    token refines until its answer settles, not to N_sup."""

    fixed_steps: int | None = None
    threshold: float = 0.5
    when_unchanged: bool = False
    exploration: float = 0.0
    sampled_depth: bool = False
    generator: torch.Generator | None = None

    def most_steps(self, n_sup: int) -> int:
        if self.fixed_steps is not None and not 1 <= self.fixed_steps <= n_sup:
            raise ValueError(f"fixed_steps {self.fixed_steps} is outside 1..{n_sup} (the model's N_sup)")
        return self.fixed_steps or n_sup

    def minimum_steps(self, shape: tuple[int, ...], n_sup: int, device: torch.device) -> torch.Tensor:
        """Steps each token must take before its halting head may stop it (1 unless exploring); with
        sampled_depth, the steps it takes."""
        if self.sampled_depth:
            return torch.randint(1, n_sup + 1, shape, generator=self.generator).to(device)
        ones = torch.ones(shape, dtype=torch.long)
        if not self.exploration or n_sup < 2:
            return ones.to(device)
        explore = torch.rand(shape, generator=self.generator) < self.exploration
        drawn = torch.randint(2, n_sup + 1, shape, generator=self.generator)
        return torch.where(explore, drawn, ones).to(device)

    def stops(self, step: int, halt_logit: torch.Tensor, minimum: torch.Tensor, n_sup: int,
              unchanged: torch.Tensor | None = None) -> torch.Tensor:
        """Which tokens stop after `step` (bool, the shape of halt_logit); `unchanged` says whose most
        probable token is the one of their previous step (used with `when_unchanged`)."""
        if self.fixed_steps is not None:
            return torch.full_like(halt_logit, step >= self.fixed_steps, dtype=torch.bool)
        if self.sampled_depth:
            return step >= minimum
        confident = torch.sigmoid(halt_logit) >= self.threshold if self.threshold < 1.0 else torch.zeros_like(
            halt_logit, dtype=torch.bool)
        if self.when_unchanged and step > 1 and self.threshold < 1.0:
            if unchanged is None:
                raise ValueError("halting when unchanged needs each token's previous answer")
            confident = confident | unchanged
        return (confident & (step >= minimum)) | (step >= n_sup)


@dataclass
class Decoded:
    """Tokens [B, L] (PAD after the end mark), refinement steps per token [B, L] (0 where no token), every step's
    halting logit [B, L, N_sup] (NaN where no step ran), and each emitted token's probability at the step that
    emitted it [B, L] (1 where no token)."""

    tokens: torch.Tensor
    steps: torch.Tensor
    halt_logits: torch.Tensor
    probabilities: torch.Tensor

    def confidence(self) -> torch.Tensor:
        """Each answer's probability [B]: the product of its emitted tokens' (the end mark included), as the server
        reports it (TextAnswer.confidence)."""
        return self.probabilities.double().prod(dim=1)


def writable(logits: torch.Tensor) -> torch.Tensor:
    """Token logits [..., V] with the padding and start marks' -inf: no answer holds them, so neither is ever chosen
    (the server masks them alike: trm_service/runtime/sequence_session.py)."""
    return logits.index_fill(-1, torch.tensor(UNWRITABLE, device=logits.device), float("-inf"))


@torch.no_grad()
def run(model: SequenceTRM, source: torch.Tensor, halting: Halting | None = None,
        max_len: int | None = None) -> Decoded:
    """Greedy answers to source ids [B, S], each up to its end mark or `max_len` tokens."""
    cfg, halting = model.cfg, halting or Halting()
    batch, device = source.shape[0], source.device
    length = max_len or cfg.max_target_len
    most_steps = halting.most_steps(cfg.N_sup)
    if length > cfg.max_target_len:
        raise ValueError(f"{length} tokens exceed the model's {cfg.max_target_len}")
    source_cache = model.encode(source)
    entry = (cfg.cache_steps, cfg.slots, batch, cfg.num_heads)
    keys = torch.zeros(*entry, 0, cfg.head_dim, device=device)  # the prefix cache: [step, slot, B, heads, P, hd]
    values = torch.zeros_like(keys)
    previous = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)
    tokens = torch.full((batch, length), PAD_ID, dtype=torch.long, device=device)
    steps = torch.zeros(batch, length, dtype=torch.long, device=device)
    halt_logits = torch.full((batch, length, cfg.N_sup), float("nan"), device=device)
    probabilities = torch.ones(batch, length, device=device)
    ended = torch.zeros(batch, dtype=torch.bool, device=device)
    for position in range(length):
        if ended.all():
            break
        x = model.embed_tokens(previous)
        y = z = torch.zeros(batch, cfg.hidden_size, device=device)
        where = torch.full((batch,), position, dtype=torch.long, device=device)
        new_keys = torch.zeros(*entry, cfg.head_dim, device=device)  # this token's entries, per step
        new_values = torch.zeros_like(new_keys)
        final_logits = torch.zeros(batch, cfg.vocab_size, device=device)
        last_answer = torch.full((batch,), PAD_ID, dtype=torch.long, device=device)
        live, minimum = ~ended, halting.minimum_steps((batch,), cfg.N_sup, device)
        for step in range(1, most_steps + 1):
            rows = live.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            read = min(step, cfg.cache_steps) - 1
            prefix = [KV(keys[read, slot][rows], values[read, slot][rows]) for slot in range(cfg.slots)]
            out = model.step(x[rows], y[rows], z[rows], where[rows], source_cache.rows(rows), prefix)
            halt_logits[rows, position, step - 1] = out.halt_logit
            steps[rows, position] = step
            # this step's entries stand for the token at this step and, unless it refines on, every later one
            if step <= cfg.cache_steps:
                new_keys[step - 1:, :, rows] = torch.stack([k[:, :, 0] for k, _ in out.own])
                new_values[step - 1:, :, rows] = torch.stack([v[:, :, 0] for _, v in out.own])
            y, z = y.index_put((rows,), out.y), z.index_put((rows,), out.z)
            logits = writable(out.logits)
            answer = logits.argmax(-1)
            stop = halting.stops(step, out.halt_logit, minimum[rows], cfg.N_sup, unchanged=answer == last_answer[rows])
            last_answer[rows] = answer
            final_logits[rows[stop]] = logits[stop]
            live[rows[stop]] = False
        emitted = torch.where(ended, PAD_ID, final_logits.argmax(-1))
        tokens[:, position] = emitted
        probabilities[:, position] = torch.where(ended, 1.0, final_logits.softmax(-1).amax(-1))
        ended |= emitted == EOS_ID
        keys = torch.cat([keys, new_keys[..., None, :]], dim=4)
        values = torch.cat([values, new_values[..., None, :]], dim=4)
        previous = emitted
    return Decoded(tokens, steps, halt_logits, probabilities)
