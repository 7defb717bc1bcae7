"""The training loop: deep supervision over an ACT carry, halting loss, EMA, checkpoints and resume.

Halting scheme (the official TRM "carry"): the batch is a set of B slots, each holding one example and
its (y, z) state. Every optimizer step runs ONE supervision step for all slots. A slot halts when its
halting logit q > 0 (after a random minimum number of steps for exploration) or after N_sup steps;
halted slots are refilled with fresh examples before the next step. So every optimizer step sees
examples at every depth, and no compute is spent on examples that are already solved.

Unrolled supervision (``supervision: unrolled``, early-exit style): every optimizer step draws a fresh
batch and runs all N_sup steps from the initial state; each step's answer and halting logit get the full
loss and the mean over steps is minimised. States are detached between steps, as in the carry, so each
step's gradient stays within it. Every depth is trained on every example (in the carry, examples the
halting head already gets right leave after one step, so later steps learn only the hard ones).
``supervision: sampled`` does the same for the first step and one step drawn uniformly from 1..N_sup
(the steps between run without gradients): every step is trained as an answer, at about half the cost
of unrolling all of them when N_sup is 4. With ``unroll_from_step`` the first optimizer steps grade the
first step only (a one-step model of the same network), and the unrolled or sampled steps follow from it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from trainer.checkpoint_file import check_room, read_checkpoint, stop_requests, stopped, write_checkpoint
from trainer.config import TrainConfig, dotted
from trainer.loop_clock import LoopClock, timed_minutes, timed_sentence
from trainer.model import TRM, ModelConfig

CHECKPOINT = "checkpoint.pt"
BEST_BY = "val_last_step"
"""The progress evaluation's figure that ranks weights for `keep_best`: validation accuracy after the last step."""


class Schedule(Protocol):
    """What the learning-rate schedule reads of a text, grid or sequence run's config."""

    lr: float
    warmup_steps: int
    max_steps: int
    max_minutes: float


def learning_rate(cfg: Schedule, step: int, elapsed_s: float, warmup_ended_s: float) -> float:
    """The learning rate of optimizer step `step`: a linear warmup over cfg.warmup_steps, then a cosine from cfg.lr to
    a tenth of it over the rest of whichever budget runs out first, the steps to max_steps or (max_minutes) the
    seconds. Both are counted from the warmup's end (`warmup_ended_s`: the seconds trained by then), so a run that
    its steps end decays on steps alone and trains the same weights on a fast machine or a busy one."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    if cfg.max_minutes:
        decay_s = cfg.max_minutes * 60 - warmup_ended_s
        progress = max(progress, (elapsed_s - warmup_ended_s) / decay_s if decay_s > 0 else 1.0)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Stream(Protocol):
    def draw(self, count: int) -> dict[str, np.ndarray]: ...

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...


# Settings a resumed run may differ in: how long it trains (and so its schedule's length and warm-up), what it
# evaluates and reports, and where and as what it is exported. Any other (the model, how the data is read, the
# optimiser, the seed) makes a fit start over: its weights were trained otherwise.
RESUMABLE_SETTINGS = frozenset({
    "name", "data", "test_data", "version", "description", "out_dir", "run_dir", "device", "max_chars",
    "abstain_precision", "linear_reader", "max_steps", "max_minutes", "warmup_steps", "checkpoint_every", "log_every",
    "eval_every", "eval_examples", "evaluate_first", "keep_best", "eval_limit", "soup", "soup_branch_step",
})


def run_differences(
    state: dict[str, Any], model: torch.nn.Module, data_sha256: dict[str, str], config: dict[str, Any]
) -> list[str]:
    """What keeps a checkpoint `state` from continuing the run of `model` on these files with `config` (a config's
    `to_dict()`); none: it continues. Other files (a user who edits the file and fits again gets a model of the new
    file; older checkpoints did not record them), other settings than RESUMABLE_SETTINGS (the seed chooses the
    held-out rows of a user's file: another seed's weights trained on this seed's test rows; another recursion or
    learning rate would ship weights that it did not train), or weights of other names or shapes (labels,
    vocabulary, sizes)."""
    differences = [] if state.get("data_sha256", data_sha256) == data_sha256 else ["data"]
    saved, current = dotted(state["config"]), dotted(config)
    # a setting one side names and the other not: a model or teacher setting one run left at its default (a
    # top-level one: a config of another trainer version, which is not compared)
    keys = (saved.keys() & current.keys()) | {key for key in saved.keys() ^ current.keys() if "." in key}
    settings = sorted(key for key in keys
                      if key.split(".")[0] not in RESUMABLE_SETTINGS and saved.get(key) != current.get(key))
    if settings:
        differences.append(f"settings ({', '.join(settings)})")
    shapes = {name: tuple(weights.shape) for name, weights in model.state_dict().items()}
    if shapes != {name: tuple(weights.shape) for name, weights in state["model"].items()}:
        differences.append("model sizes")
    return differences


RUN_ENDED = " (the run had ended: its weights are exported again; --restart trains anew)"


def before_this_command(elapsed_s: float) -> str:
    """", 2.60 of them before this command" for a resumed run's minutes in all; empty for a fresh run."""
    return f", {elapsed_s / 60:.2f} of them before this command" if elapsed_s else ""


def starting_over(path: Path, differences: list[str]) -> str:
    """The line a fit prints when its checkpoint at `path` is of another run (`run_differences`)."""
    listed = ", ".join(differences[:-1]) + " and " + differences[-1] if len(differences) > 1 else differences[0]
    return f"{path} holds a run of other {listed}; starting over (the new run's checkpoint replaces it)"


class EMA:
    """Exponential moving average of the weights, with warm-up so short runs do not lag.

    decay_t = min(decay, (1 + t) / (10 + t)): early on the average follows the weights closely.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p, 1.0 - decay)

    def weights(self) -> dict[str, torch.Tensor]:
        """A copy of the averaged weights as they are now (a fit's best so far)."""
        return {key: value.detach().clone() for key, value in self.model.state_dict().items()}

    def model_with(self, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        """A copy of the averaged model holding `weights` (from `weights()`), in eval mode."""
        model = copy.deepcopy(self.model)
        model.load_state_dict(weights)
        return model.eval()


@dataclass
class Carry:
    """Per-slot training state of the ACT loop."""

    batch: dict[str, torch.Tensor]
    y: torch.Tensor
    z: torch.Tensor
    steps: torch.Tensor  # supervision steps taken by each slot's current example
    halted: torch.Tensor  # slots to refill before the next step


def pick_device(name: str) -> torch.device:
    """The torch device of a config's `device` (auto: cuda when available, else cpu)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_device(name: str) -> None:
    """Raises ValueError, naming --device, where a config's CUDA device is not on this machine."""
    if name in ("auto", "cpu"):
        return
    index = torch.device(name).index or 0
    if index >= torch.cuda.device_count():
        found = (f"this torch sees {torch.cuda.device_count()} CUDA device(s)" if torch.version.cuda
                 else "this torch is a CPU-only build")
        raise ValueError(f"--device {name}: {found}; use --device cpu (or auto, which takes a GPU when there is one)")


def best_evaluation(
    history: list[dict[str, float]], rank: Callable[[dict[str, float]], Any] = itemgetter(BEST_BY)
) -> dict[str, float] | None:
    """The evaluation of `history` that ranks highest by `rank` (default: BEST_BY), the later of equals; None when
    none was made. The rule by which a fit keeps its best EMA weights (text, grid and sequence fits alike)."""
    return max(reversed(history), key=rank) if history else None  # max keeps the first of equals: the later


def trim_padding(tokens: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """A text batch without its all-padding trailing columns (kept to a multiple of the pool): the same
    answers at less cost, since padding is masked out of attention (``ModelConfig.variable_length``)."""
    if not cfg.variable_length:
        return tokens
    used = (tokens != cfg.pad_id).any(0).nonzero()
    length = int(used.max()) + 1 if used.numel() else 1
    return tokens[:, : -(-length // cfg.pool) * cfg.pool]


def exact_correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per example: is the whole answer right (the class, or every cell)?"""
    correct = logits.argmax(-1) == targets
    return correct if correct.dim() == 1 else correct.all(-1)


def taught_mean(losses: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """A teacher loss (one row per example) summed over the batch's rows, or over those the teacher read where
    `batch["taught"]` marks them, divided by the batch size: each taught row weighs as in a fully taught batch."""
    if "taught" in batch:  # rows the teacher did not read train on their labels alone
        losses = losses * batch["taught"].view(-1, *[1] * (losses.dim() - 1))
    return losses.sum() / len(losses)


class Trainer:
    """Runs `fit` for one model; checkpoints to cfg.run_dir and resumes from there."""

    def __init__(
        self,
        cfg: TrainConfig,
        model: TRM,
        stream: Stream,
        evaluate: Callable[[TRM], dict[str, float]] | None = None,
        embedding_projection: torch.nn.Module | None = None,
        data_sha256: dict[str, str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.data_sha256 = data_sha256 or {}  # the data this run trains on: a checkpoint of other data is not resumed
        self.device = pick_device(cfg.device)
        self.model = model.to(self.device)
        self.stream = stream
        self.evaluate = evaluate
        # training-only head mapping the answer slot to the teacher's embedding space (not exported)
        self.embedding_projection = embedding_projection.to(self.device) if embedding_projection else None
        self.ema = EMA(self.model, cfg.ema_decay)
        self.optimizer = self._make_optimizer()
        self.step = 0
        self.elapsed_s = 0.0
        self.warmup_ended_s = 0.0  # the seconds trained when the warmup ended, where the decay by time starts
        self.history: list[dict[str, float]] = []
        self.best_weights: dict[str, torch.Tensor] | None = None  # keep_best: the EMA weights of best_evaluation
        self.trained_on: list[str] = []  # the devices that ran this model's training steps, in order
        self.ended_by_time = False  # its time ended the run: the same command again exports, not trains on
        self.command = ""  # the command that trains it, kept in its checkpoint for `trm-train export --checkpoint`
        self.rng = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self.carry: Carry | None = None  # the ACT carry's slots (`carries_state`), checkpointed: a resumed run goes on

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        embedding = [p for n, p in self.model.named_parameters() if n.startswith("embed.")]
        rest = [p for n, p in self.model.named_parameters() if not n.startswith("embed.")]
        if self.embedding_projection is not None:
            rest += list(self.embedding_projection.parameters())
        groups = [
            {"params": embedding, "lr_scale": cfg.embedding_lr_scale},
            {"params": rest, "lr_scale": 1.0},
        ]
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))

    # --- checkpoints -------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.cfg.run_dir / CHECKPOINT

    def save_checkpoint(self) -> None:
        """The run's state to run_dir/checkpoint.pt (`checkpoint_file.write_checkpoint`: atomic and durable)."""
        state = {
            "config": self.cfg.to_dict(),
            "model_config": self.model.cfg.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "embedding_projection": (
                self.embedding_projection.state_dict() if self.embedding_projection else None
            ),
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "warmup_ended_s": self.warmup_ended_s,
            "history": self.history,
            "best_weights": self.best_weights,
            "trained_on": self.trained_on,
            "ended_by_time": self.ended_by_time,
            "command": self.command,
            "data_sha256": self.data_sha256,
            "rng": self.rng.get_state(),
            "stream": self.stream.state(),
            "carry": dataclasses.asdict(self.carry) if self.carry is not None else None,
        }
        write_checkpoint(state, self.checkpoint_path)

    def load_checkpoint(self, path: Path | None = None, branch: bool = False) -> bool:
        """Resumes from `path` (default: run_dir/checkpoint.pt) when present; returns whether it did.

        A branch takes another run's weights, optimizer, EMA and step, but draws its data afresh
        from its own stream seed."""
        path = path or self.checkpoint_path
        if not path.exists():
            return False
        state = read_checkpoint(path, self.device)
        if not branch and (differences := run_differences(state, self.model, self.data_sha256, self.cfg.to_dict())):
            tqdm.write(f"{self.cfg.name}: {starting_over(path, differences)}")
            return False
        self.model.load_state_dict(state["model"])
        self.ema.model.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.embedding_projection is not None and state["embedding_projection"]:
            self.embedding_projection.load_state_dict(state["embedding_projection"])
        self.step, self.elapsed_s, self.history = state["step"], state["elapsed_s"], state["history"]
        self.warmup_ended_s = state.get("warmup_ended_s", 0.0)  # older checkpoints decayed by time from the start
        self.trained_on = state.get("trained_on", [])  # older checkpoints did not record it
        self.best_weights = None if branch else state.get("best_weights")  # older checkpoints kept none
        self.ended_by_time = not branch and state.get("ended_by_time", False)  # older checkpoints did not record it
        self.rng.set_state(state["rng"].cpu())
        if not branch and "stream" in state:  # older checkpoints kept the stream's generator only
            self.stream.restore(state["stream"])
        if not branch and state.get("carry") is not None:  # older checkpoints kept none: the run starts a fresh one
            self.carry = Carry(**state["carry"])
        if not branch and (earlier := state.get("command")) and earlier != self.command:  # QA: named the last only
            self.command = f"{earlier}; run again as: {self.command}" if self.command else earlier
        return True

    def _time_to(self, ends_by: float, last_step: int) -> TrainConfig:
        """Set max_minutes (on which the learning rate decays) to the time trained so far plus the time left until
        `ends_by` (`loop_clock.timed_minutes`); say so where that differs from the plan (the loop still ends at
        `last_step` if it comes first)."""
        planned = self.cfg.max_minutes
        self.cfg = dataclasses.replace(self.cfg, max_minutes=timed_minutes(planned, self.elapsed_s, ends_by))
        if abs(self.cfg.max_minutes - planned) >= 0.01:
            told = timed_sentence(self.cfg.max_minutes, planned, self.elapsed_s, ends_by,
                                  before_this_command(self.elapsed_s))
            tqdm.write(f"{self.cfg.name}: training until step {last_step:,} or for {told} ({planned:g} planned; "
                       "whichever comes first)")
        return self.cfg

    # --- the ACT carry ------------------------------------------------------------------------
    @property
    def carries_state(self) -> bool:
        """Whether fit runs the ACT carry. With one step there is nothing to carry: every slot halts and is
        refilled each optimizer step, which is the fresh-batch step, and that one is trimmed to its longest input."""
        return self.cfg.supervision == "carry" and self.model.cfg.N_sup > 1

    def _empty_carry(self) -> Carry:
        size = self.cfg.batch_size
        batch = {k: torch.as_tensor(v, device=self.device) for k, v in self.stream.draw(size).items()}
        y, z = self.model.initial_state(size, self.device)
        zeros = torch.zeros(size, dtype=torch.long, device=self.device)
        return Carry(batch, y, z, zeros, torch.ones(size, dtype=torch.bool, device=self.device))

    def _refill(self, carry: Carry) -> None:
        slots = carry.halted.nonzero().squeeze(-1)
        if slots.numel() == 0:
            return
        fresh = self.stream.draw(int(slots.numel()))
        for key, value in fresh.items():
            carry.batch[key][slots] = torch.as_tensor(value, device=self.device)
        carry.y[slots] = 0.0
        carry.z[slots] = 0.0
        carry.steps[slots] = 0

    def _loss(
        self, batch: dict[str, torch.Tensor], y: torch.Tensor, logits: torch.Tensor, halt_logit: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        cfg, targets = self.cfg, batch["targets"]
        flat_logits = logits.float().reshape(-1, logits.shape[-1])
        ce = F.cross_entropy(
            flat_logits, targets.reshape(-1), label_smoothing=cfg.label_smoothing, reduction="none"
        ).view(targets.shape)
        answer_loss = ce.mean(-1) if ce.dim() == 2 else ce
        loss = answer_loss.mean()
        correct = exact_correct(logits.detach(), targets)
        halt_loss = F.binary_cross_entropy_with_logits(halt_logit.float(), correct.float())
        loss = loss + cfg.halt_loss_weight * halt_loss
        teacher = cfg.teacher
        if teacher.soft_label_weight and "soft_targets" in batch:
            tau = teacher.temperature
            kd = F.kl_div(F.log_softmax(logits.float() / tau, -1), batch["soft_targets"], reduction="none")
            loss = loss + teacher.soft_label_weight * tau * tau * taught_mean(kd, batch)
        if teacher.embedding_weight and self.embedding_projection is not None:
            predicted = self.embedding_projection(self.model.answer_features(y))
            cos = F.cosine_similarity(predicted.float(), batch["teacher_embeddings"], dim=-1)
            loss = loss + teacher.embedding_weight * taught_mean(1 - cos, batch)
        stats = {"loss": loss.item(), "halt_loss": halt_loss.item(), "acc": correct.float().mean().item()}
        return loss, stats, correct

    def _halt(self, carry: Carry, halt_logit: torch.Tensor) -> None:
        cfg, max_steps = self.cfg, self.model.cfg.N_sup
        with torch.no_grad():
            halted = carry.steps >= max_steps
            explore = torch.rand(len(halted), generator=self.rng).to(self.device) < cfg.halt_exploration
            low = min(2, max_steps)
            min_steps = torch.randint(low, max_steps + 1, (len(halted),), generator=self.rng).to(self.device)
            confident = (halt_logit > 0) & (carry.steps >= torch.where(explore, min_steps, 1))
            carry.halted = halted | confident

    def _set_learning_rate(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg, self.step, self.elapsed_s, self.warmup_ended_s) * group["lr_scale"]

    def _autocast(self) -> torch.autocast:
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def _optimize(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.ema.update(self.model, self.step)

    def train_step(self, carry: Carry | None) -> dict[str, float]:
        """One optimizer step: one supervision step for every slot of the carry, or (no carry: unrolled,
        sampled, or one step) the graded steps of a fresh batch."""
        if carry is None:
            return self._unrolled_step()
        self._refill(carry)
        self.model.train()
        self._set_learning_rate()
        with self._autocast():
            y, z, logits, halt_logit = self.model.step(carry.batch["tokens"], carry.y, carry.z)
            loss, stats, _ = self._loss(carry.batch, y, logits, halt_logit)
        self._optimize(loss)
        carry.y, carry.z = y.detach().float(), z.detach().float()
        carry.steps = carry.steps + 1
        self._halt(carry, halt_logit.detach())
        halted = carry.halted
        stats["halt_steps"] = float(carry.steps[halted].float().mean()) if halted.any() else float("nan")
        self.step += 1
        return stats

    def _graded_steps(self, n_sup: int) -> list[int]:
        """The supervision steps (1-based) whose answers get the loss in this optimizer step: the first
        only (before `unroll_from_step`), all of them (unrolled), or the first and one drawn uniformly from
        1..N_sup (sampled)."""
        if self.step < self.cfg.unroll_from_step or n_sup == 1:
            return [1]
        if self.cfg.supervision == "unrolled":
            return list(range(1, n_sup + 1))
        drawn = int(torch.randint(1, n_sup + 1, (1,), generator=self.rng))
        return sorted({1, drawn})

    def _unrolled_step(self) -> dict[str, float]:
        """A fresh batch run from the initial state through its graded steps: the mean of their losses."""
        mcfg = self.model.cfg
        batch = {k: torch.as_tensor(v, device=self.device) for k, v in self.stream.draw(self.cfg.batch_size).items()}
        tokens = trim_padding(batch["tokens"], mcfg)
        rows = mcfg.state_shape[0] - (mcfg.seq_len - tokens.shape[1]) // mcfg.pool
        y, z = (state[:, :rows] for state in self.model.initial_state(len(tokens), self.device))
        graded = self._graded_steps(mcfg.N_sup)
        self.model.train()
        self._set_learning_rate()
        losses, per_step = [], []
        with self._autocast():
            for step in range(1, graded[-1] + 1):
                with torch.set_grad_enabled(step in graded):
                    y, z, logits, halt_logit = self.model.step(tokens, y, z)
                if step in graded:
                    loss, stats, _ = self._loss(batch, y, logits, halt_logit)
                    losses.append(loss)
                    per_step.append(stats)
                y, z = y.detach(), z.detach()
        loss = torch.stack(losses).mean()
        self._optimize(loss)
        self.step += 1
        return {
            "loss": loss.item(),
            "halt_loss": sum(s["halt_loss"] for s in per_step) / len(per_step),
            "acc": per_step[-1]["acc"],
            "first_step_acc": per_step[0]["acc"],
            "halt_steps": float(graded[-1]),
        }

    # --- the loop ---------------------------------------------------------------------------------
    def fit(
        self, resume: bool = True, branch_from: Path | None = None, until: int | None = None,
        ends_by: float | None = None, evaluations_after: float = 0.0,
    ) -> TRM:
        """Trains until max_steps (or `until`, when earlier) or max_minutes; returns the last EMA model
        (`shipped_model` gives the weights a bundle ships). Without a checkpoint of its own to resume, a run given
        `branch_from` starts from that checkpoint (`load_checkpoint(branch=True)`). With `ends_by` (a
        `time.monotonic()`), max_minutes is set when the loop starts so that the loop ends then (`_time_to`).

        A loop that max_minutes ends stops early by `evaluations_after` progress evaluations (the work that follows
        the loop: the export's) plus one with keep_best (the end's own evaluation), at their measured time
        (`loop_clock.LoopClock`), so that the work after it ends within the minutes too."""
        cfg = self.cfg
        last_step = min(cfg.max_steps, until or cfg.max_steps)
        torch.manual_seed(cfg.seed)
        if resume and self.load_checkpoint():
            ended = self.step >= last_step or self.ended_by_time
            tqdm.write(f"resumed {cfg.name} from step {self.step} ({self.checkpoint_path})"
                       + (RUN_ENDED if ended else ""))
            if ended:
                self._evaluate_end()  # a run killed in its end's evaluation has it still to do
                return self.ema.model
        elif branch_from is not None:
            if not self.load_checkpoint(branch_from, branch=True):
                raise FileNotFoundError(f"{cfg.name}: no checkpoint to branch from at {branch_from}")
            tqdm.write(f"branched {cfg.name} from step {self.step} of {branch_from}")
        check_room(self.checkpoint_path, self.model)
        if ends_by is not None:
            cfg = self._time_to(ends_by, last_step)
        if self.carries_state and self.carry is None:
            self.carry = self._empty_carry()
        bar = tqdm(total=last_step, initial=self.step, desc=cfg.name, dynamic_ncols=True,
                   disable=not sys.stderr.isatty())
        started, last, first_step = time.monotonic(), {}, self.step
        clock = LoopClock(cfg.max_minutes, self.elapsed_s, evaluations_after, evaluates_end=cfg.keep_best,
                          warn=lambda line: tqdm.write(f"{cfg.name}: {line}"), ends_by=ends_by)
        with stop_requests() as stop:
            try:
                while self.step < last_step and not stop and not clock.out_of_time():
                    last = self.train_step(self.carry)
                    self.elapsed_s = clock.trained_s()
                    if self.step == cfg.warmup_steps:
                        self.warmup_ended_s = self.elapsed_s
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{last['loss']:.3f}", acc=f"{last['acc']:.3f}", steps=f"{last['halt_steps']:.1f}"
                    )
                    if not sys.stderr.isatty() and self.step % cfg.log_every == 0:  # a readable line in log files
                        rate = (self.step - first_step) / max(1e-9, time.monotonic() - started)
                        eta = (last_step - self.step) / max(rate, 1e-9)
                        if cfg.max_minutes:  # the time budget may end the run first
                            eta = min(eta, cfg.max_minutes * 60 - self.elapsed_s)
                        tqdm.write(f"{cfg.name} step {self.step}/{last_step} loss {last['loss']:.3f} "
                                   f"acc {last['acc']:.3f} {rate:.2f} steps/s eta {eta / 60:.1f} min")
                    if self.evaluate and clock.evaluation_due(self.step, cfg.eval_every):
                        clock.timed(self._evaluate)
                    if self.step % cfg.checkpoint_every == 0:  # after the step's evaluation: a run killed in it
                        self.save_checkpoint()  # resumes from the checkpoint before and evaluates that step again
                self.elapsed_s = clock.trained_s()  # as the loop ends: out_of_time read it after the last step's
                self.ended_by_time = not stop and self.step < last_step
            finally:
                bar.close()
                if self.step > first_step and self.trained_on[-1:] != [str(self.device)]:
                    self.trained_on.append(str(self.device))
                self.save_checkpoint()
        if stop:
            raise KeyboardInterrupt(stopped(self.step, self.checkpoint_path))
        self._evaluate_end()
        return self.ema.model

    def _evaluate_end(self) -> None:
        """With keep_best, the weights the run ends with compete too: evaluated, then checkpointed, unless the last
        evaluation was of this step."""
        if self.cfg.keep_best and self.evaluate and (not self.history or self.history[-1]["step"] != self.step):
            self._evaluate()
            self.save_checkpoint()

    def _evaluate(self) -> None:
        """Scores the EMA weights on validation into `history`; keep_best keeps them where they rank best so far."""
        figures = self.evaluate(self.ema.model)
        entry = {"step": self.step, "elapsed_s": self.elapsed_s, **figures}
        self.history.append(entry)
        if self.cfg.keep_best and best_evaluation(self.history) is entry:
            self.best_weights = self.ema.weights()
        shown = ", ".join(f"{name} {100 * value:.2f}%" for name, value in figures.items())
        tqdm.write(f"eval {self.cfg.name} step {self.step} ({self.elapsed_s / 60:.1f} min): {shown}")

    def shipped_model(self) -> TRM:
        """The weights a bundle ships: with keep_best, the EMA weights of `best_evaluation`; else the last EMA
        weights (also where nothing was evaluated)."""
        if not self.cfg.keep_best or self.best_weights is None:
            return self.ema.model
        return self.ema.model_with(self.best_weights)
