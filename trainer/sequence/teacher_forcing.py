"""Teacher-forced deep supervision of a sequence TRM: every refinement step of every token, all tokens at once.

The known previous token is each token's input; each refinement step runs over every position of the
answers in one pass (``SequenceTRM.forward_parallel``), and every step a token takes adds its answer's
cross-entropy and the halting loss ("the answer is right"). A token stops refining when its halting head
says so (or at N_sup); from then on it stands in later tokens' attention by its entries of that step
(or of the cache's last step, ``cache_steps``, if that came first), exactly as the prefix cache holds it
when decoding one token at a time. The states y and z are carried between steps without gradients, as in
the TRM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from trainer.sequence.decode import Halting
from trainer.sequence.model import SequenceTRM
from trainer.sequence.vocab import BOS_ID, PAD_ID

STEP_WEIGHTS = {
    "uniform": "every step's answer counts the same",
    "rising": "step s of N_sup counts 2s / (N_sup + 1) (the same mean): the later answers count most",
}


def step_weight(step: int, n_sup: int, step_weights: str) -> float:
    """The weight of refinement step `step` (1-based) in the answer loss (see STEP_WEIGHTS)."""
    if step_weights == "uniform":
        return 1.0
    if step_weights == "rising":
        return 2.0 * step / (n_sup + 1)
    raise ValueError(f"step_weights is {step_weights!r}; use one of {', '.join(STEP_WEIGHTS)}")


@dataclass
class Supervised:
    """The loss, every step's halting logit [B, L, N_sup] (NaN where no step ran), the steps each token
    took [B, L], each token's answer at its last step [B, L], and the loss parts."""

    loss: torch.Tensor
    halt_logits: torch.Tensor
    steps: torch.Tensor
    answers: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)


def teacher_forced(model: SequenceTRM, source: torch.Tensor, targets: torch.Tensor, halting: Halting | None = None,
                   halt_loss_weight: float = 0.5, step_weights: str = "uniform") -> Supervised:
    """Losses of source ids [B, S] against targets [B, L] (ids, EOS then PAD); each step's answer loss
    weighs as `step_weights` says (STEP_WEIGHTS)."""
    cfg, halting = model.cfg, halting or Halting()
    batch, length = targets.shape
    if length > cfg.max_target_len:
        raise ValueError(f"{length} tokens exceed the model's {cfg.max_target_len}")
    device = targets.device
    source_cache = model.encode(source)
    previous = torch.cat([torch.full((batch, 1), BOS_ID, dtype=torch.long, device=device), targets[:, :-1]], 1)
    x = model.embed_tokens(previous)
    y = z = torch.zeros(batch, length, cfg.hidden_size, device=device)
    active = targets != PAD_ID
    minimum = halting.minimum_steps((batch, length), cfg.N_sup, device)
    steps = torch.zeros(batch, length, dtype=torch.long, device=device)
    answers = torch.full((batch, length), PAD_ID, dtype=torch.long, device=device)
    halt_logits = torch.full((batch, length, cfg.N_sup), float("nan"), device=device)
    answer_loss = halt_loss = torch.zeros((), device=device)
    supervised = correct_count = 0
    settled = None
    for step in range(1, halting.most_steps(cfg.N_sup) + 1):
        if not active.any():
            break
        out = model.forward_parallel(x, y, z, source_cache, active, settled, past_cache=step > cfg.cache_steps)
        logits, gold = out.logits[active], targets[active]
        correct = logits.detach().argmax(-1) == gold
        weight = step_weight(step, cfg.N_sup, step_weights)
        answer_loss = answer_loss + weight * F.cross_entropy(logits.float(), gold, reduction="sum")
        halt_loss = halt_loss + F.binary_cross_entropy_with_logits(
            out.halt_logit[active].float(), correct.float(), reduction="sum")
        supervised += int(active.sum())
        correct_count += int(correct.sum())
        halt_logits[..., step - 1] = torch.where(active, out.halt_logit.detach(), float("nan"))
        unchanged = out.logits.detach().argmax(-1) == answers
        steps[active] = step
        answers[active] = logits.detach().argmax(-1)
        keep = active[..., None]
        y, z = torch.where(keep, out.y, y).detach(), torch.where(keep, out.z, z).detach()
        settled = [(k.detach(), v.detach()) for k, v in out.own]
        active = active & ~halting.stops(step, out.halt_logit.detach(), minimum, cfg.N_sup, unchanged)
    supervised = max(1, supervised)
    return Supervised(
        loss=(answer_loss + halt_loss_weight * halt_loss) / supervised,
        halt_logits=halt_logits, steps=steps, answers=answers,
        stats={"answer_loss": answer_loss.item() / supervised, "halt_loss": halt_loss.item() / supervised,
               "step_accuracy": correct_count / supervised,
               "steps_per_token": steps.sum().item() / max(1, int((steps > 0).sum()))})
