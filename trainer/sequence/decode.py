"""Both loops of a sequence TRM: tokens one after another, and refinement steps within each token.

``run`` serves training (teacher forcing: the known previous token is the next token's input, and
every refinement step of every token adds its answer loss, deep supervision) and inference (the
model's own tokens, greedily, until the end mark). Rows of a batch advance token by token together;
within a token each row halts on its own (the halting head says the answer is right, or N_sup steps,
or a fixed step count), and only the rows still refining are computed at each step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from trainer.sequence.model import KV, SequenceTRM
from trainer.sequence.vocab import BOS_ID, EOS_ID, PAD_ID


@dataclass
class Halting:
    """When a token stops refining: after `fixed_steps` steps if set, else when its halting logit is
    positive (or at N_sup). In training, with probability `exploration` a token must first take a random
    number of steps in [2, N_sup] (the TRM's exploration, so the halting head sees later steps too)."""

    fixed_steps: int | None = None
    exploration: float = 0.0
    generator: torch.Generator | None = None


@dataclass
class Decoded:
    """What ``run`` produced: tokens [B, L] (PAD after the end mark), refinement steps per token [B, L]
    (0 where no token), every step's halting logit [B, L, N_sup] (NaN where no step ran), and in
    training the loss with its parts."""

    tokens: torch.Tensor
    steps: torch.Tensor
    halt_logits: torch.Tensor
    loss: torch.Tensor | None = None
    stats: dict[str, float] = field(default_factory=dict)


def run(
    model: SequenceTRM,
    source: torch.Tensor,
    targets: torch.Tensor | None = None,
    halting: Halting | None = None,
    max_len: int | None = None,
    halt_loss_weight: float = 0.5,
) -> Decoded:
    """Decode `source` ids [B, S]; with `targets` [B, L] (ids, EOS then PAD), teacher-forced with losses."""
    cfg, halting = model.cfg, halting or Halting()
    batch, device = source.shape[0], source.device
    length = targets.shape[1] if targets is not None else (max_len or cfg.max_target_len)
    most_steps = halting.fixed_steps or cfg.N_sup
    if length > cfg.max_target_len or most_steps > cfg.N_sup:
        raise ValueError(f"{length} tokens or {most_steps} steps exceed the model's {cfg.max_target_len} and "
                         f"{cfg.N_sup}")
    source_cache = model.encode(source)
    prefix = model.empty_prefix(batch, device)
    previous = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)
    tokens = torch.full((batch, length), PAD_ID, dtype=torch.long, device=device)
    steps = torch.zeros(batch, length, dtype=torch.long, device=device)
    halt_logits = torch.full((batch, length, cfg.N_sup), float("nan"), device=device)
    ended = torch.zeros(batch, dtype=torch.bool, device=device)
    answer_loss = halt_loss = torch.zeros((), device=device)
    rows_supervised, rows_correct = 0, 0
    for position in range(length):
        active = targets[:, position] != PAD_ID if targets is not None else ~ended
        if not active.any():
            break
        x = model.embed_tokens(previous)
        y, z = model.initial_state(batch, device)
        where = torch.full((batch,), position, dtype=torch.long, device=device)
        nothing = torch.zeros(batch, cfg.num_heads, cfg.head_dim, device=device)
        commit = [(nothing, nothing) for _ in model.layers]  # filled row by row (out of place) as rows halt
        final_logits = torch.zeros(batch, cfg.vocab_size, device=device)
        minimum = _minimum_steps(halting, batch, cfg.N_sup, device)
        live = active.clone()
        for step in range(1, most_steps + 1):
            rows = live.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            every = rows.numel() == batch
            out = model.step(
                x if every else x[rows], y if every else y[rows], z if every else z[rows],
                where if every else where[rows],
                source_cache if every else [kv.rows(rows) for kv in source_cache],
                prefix if every else [kv.rows(rows) for kv in prefix],
            )
            halt_logits[rows, position, step - 1] = out.halt_logit.detach()
            steps[rows, position] = step
            if targets is not None:
                gold = targets[rows, position]
                correct = out.logits.detach().argmax(-1) == gold
                answer_loss = answer_loss + F.cross_entropy(out.logits.float(), gold, reduction="sum")
                halt_loss = halt_loss + F.binary_cross_entropy_with_logits(
                    out.halt_logit.float(), correct.float(), reduction="sum")
                rows_supervised += rows.numel()
                rows_correct += int(correct.sum())
            if halting.fixed_steps is not None:
                stop = torch.full_like(rows, step >= halting.fixed_steps, dtype=torch.bool)
            else:
                stop = ((out.halt_logit > 0) & (step >= minimum[rows])) | (step >= cfg.N_sup)
            y, z = y.index_put((rows,), out.y.detach()), z.index_put((rows,), out.z.detach())
            stopped = rows[stop]
            final_logits[stopped] = out.logits.detach()[stop]
            commit = [(k.index_put((stopped,), new_k[stop]), v.index_put((stopped,), new_v[stop]))
                      for (k, v), (new_k, new_v) in zip(commit, out.commit, strict=True)]
            live[stopped] = False
        emitted = targets[:, position] if targets is not None else final_logits.argmax(-1)
        emitted = torch.where(active, emitted, PAD_ID)
        tokens[:, position] = emitted
        ended |= active & (emitted == EOS_ID)
        prefix = [kv.appended(k, v) for kv, (k, v) in zip(prefix, commit, strict=True)]
        previous = emitted
    decoded = Decoded(tokens, steps, halt_logits)
    if targets is not None:
        rows_supervised = max(1, rows_supervised)
        decoded.loss = (answer_loss + halt_loss_weight * halt_loss) / rows_supervised
        decoded.stats = {
            "answer_loss": answer_loss.item() / rows_supervised,
            "halt_loss": halt_loss.item() / rows_supervised,
            "step_accuracy": rows_correct / rows_supervised,
            "steps_per_token": steps.sum().item() / max(1, int((steps > 0).sum())),
        }
    return decoded


def _minimum_steps(halting: Halting, batch: int, most: int, device: torch.device) -> torch.Tensor:
    """Steps each row must take before its halting head may stop it (1 unless exploring)."""
    ones = torch.ones(batch, dtype=torch.long)
    if not halting.exploration or most < 2:
        return ones.to(device)
    explore = torch.rand(batch, generator=halting.generator) < halting.exploration
    drawn = torch.randint(2, most + 1, (batch,), generator=halting.generator)
    return torch.where(explore, drawn, ones).to(device)


def recompute_prefix(model: SequenceTRM, source: torch.Tensor, emitted: list[int], steps: list[int]) -> list[KV]:
    """The prefix cache of one row rebuilt from nothing but the source ids [1, S], the tokens emitted and
    the steps each took: every earlier token's refinement is re-run. What the prefix cache saves."""
    source_cache = model.encode(source)
    prefix = model.empty_prefix(1, source.device)
    previous = BOS_ID
    for position, (token, count) in enumerate(zip(emitted, steps, strict=True)):
        x = model.embed_tokens(torch.tensor([previous], device=source.device))
        y, z = model.initial_state(1, source.device)
        where = torch.tensor([position], device=source.device)
        for _ in range(count):
            out = model.step(x, y, z, where, source_cache, prefix)
            y, z = out.y, out.z
        prefix = [kv.appended(k, v) for kv, (k, v) in zip(prefix, out.commit, strict=True)]
        previous = token
    return prefix
