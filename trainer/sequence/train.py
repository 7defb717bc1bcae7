"""Training a sequence TRM: teacher-forced deep supervision over every token's refinement steps, per-token
ACT halting with exploration, AdamW with warm-up and cosine decay, EMA weights, atomic checkpoints.

One optimizer step is one teacher-forced batch (``teacher_forcing.teacher_forced``): each token refines
until its halting head stops it (or N_sup), every step's answer adds to the loss, and a token's keys and
values keep their gradient within a step, so it learns from how later tokens use its cache entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from trainer.checkpoint_file import check_room, read_checkpoint, stop_requests, stopped, write_checkpoint
from trainer.loop_clock import LoopClock, timed_minutes, timed_sentence
from trainer.sequence.batches import Batch
from trainer.sequence.decode import Halting
from trainer.sequence.model import SequenceConfig, SequenceTRM
from trainer.sequence.teacher_forcing import teacher_forced
from trainer.train import (
    EMA,
    RUN_ENDED,
    before_this_command,
    best_evaluation,
    learning_rate,
    run_differences,
    starting_over,
)

CHECKPOINT = "checkpoint.pt"
LOG_SECONDS = 30.0  # a progress line at least this often, also where `log_every` steps take longer (long rows)
TRAINING_DEPTHS = {
    "halting": "until its halting head stops it, with exploration",
    "every": "all N_sup steps",
    "sampled": "a number of steps drawn uniformly from 1..N_sup",
}
"""How many refinement steps each token takes in training (every step it takes is trained as an answer)."""


def print_now(line: str) -> None:
    """Print a progress line at once, also to a file or a pipe (`| tee fit.log`), which Python buffers."""
    print(line, flush=True)


@dataclass
class SequenceTrainConfig:
    run_dir: Path
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    max_steps: int = 100_000
    max_minutes: float = 0.0  # 0: no time limit
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    halt_exploration: float = 0.1
    depth: str = "halting"  # the steps a token takes in training: see TRAINING_DEPTHS
    halt_loss_weight: float = 0.5
    step_weights: str = "uniform"  # how each refinement step's answer weighs in the loss: see STEP_WEIGHTS
    eval_every: int = 200
    evaluate_first: bool = False  # score the weights before the first step (a start from a bundle's weights)
    checkpoint_every: int = 50
    log_every: int = 10
    seed: int = 0

    def to_dict(self) -> dict:
        return {**asdict(self), "run_dir": str(self.run_dir)}


class SequenceTrainer:
    """Fits one model; `make_batches(step)` gives the batch stream from a step on (so a resumed run draws
    fresh data), `evaluate` scores the EMA model every ``eval_every`` steps."""

    def __init__(
        self,
        cfg: SequenceTrainConfig,
        model: SequenceTRM,
        make_batches: Callable[[int], Iterator[Batch]],
        evaluate: Callable[[SequenceTRM], dict[str, float]] | None = None,
        log: Callable[[str], None] = print_now,
        data_sha256: dict[str, str] | None = None,
    ) -> None:
        self.cfg, self.model, self.make_batches, self.evaluate, self.log = cfg, model, make_batches, evaluate, log
        self.data_sha256 = data_sha256 or {}  # the files this run trains on: a checkpoint of others is not resumed
        self.ema = EMA(model, cfg.ema_decay)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           betas=(0.9, 0.95))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step, self.elapsed_s, self.lines_seen = 0, 0.0, 0
        self.warmup_ended_s = 0.0  # the seconds trained when the warmup ended, where the decay by time starts
        self.history: list[dict[str, float]] = []
        self.best_weights: dict[str, torch.Tensor] | None = None  # the EMA weights of `best_evaluation`
        self.ended_by_time = False  # its time ended the run: the same command again exports, not trains on

    @property
    def checkpoint_path(self) -> Path:
        return self.cfg.run_dir / CHECKPOINT

    def save_checkpoint(self) -> None:
        """The run's state to run_dir/checkpoint.pt (`checkpoint_file.write_checkpoint`: atomic and durable)."""
        state = {
            "config": self.cfg.to_dict(), "model_config": self.model.cfg.to_dict(),
            "model": self.model.state_dict(), "ema": self.ema.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "step": self.step, "elapsed_s": self.elapsed_s,
            "warmup_ended_s": self.warmup_ended_s, "lines_seen": self.lines_seen, "history": self.history,
            "generator": self.generator.get_state(),
            "data_sha256": self.data_sha256, "best_weights": self.best_weights, "ended_by_time": self.ended_by_time,
        }
        write_checkpoint(state, self.checkpoint_path)

    def load_checkpoint(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        state = read_checkpoint(self.checkpoint_path)
        differences = run_differences(state, self.model, self.data_sha256, self.cfg.to_dict())
        if state.get("model_config", self.model.cfg.to_dict()) != self.model.cfg.to_dict():
            differences.append("model settings")
        if differences:
            self.log(starting_over(self.checkpoint_path, differences))
            return False
        self.model.load_state_dict(state["model"])
        self.ema.model.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed_s, self.lines_seen = state["step"], state["elapsed_s"], state["lines_seen"]
        self.warmup_ended_s = state.get("warmup_ended_s", 0.0)  # older checkpoints decayed by time from the start
        self.history, self.best_weights = state["history"], state.get("best_weights")  # older ones kept none
        self.ended_by_time = state.get("ended_by_time", False)  # older checkpoints did not record it
        self.generator.set_state(state["generator"])
        return True

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimizer step on one batch; returns its loss parts and step statistics."""
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg, self.step, self.elapsed_s, self.warmup_ended_s)
        halting = self._training_halting()
        out = teacher_forced(self.model, batch.source, batch.targets, halting, self.cfg.halt_loss_weight,
                             self.cfg.step_weights)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.ema.update(self.model, self.step)
        self.step += 1
        self.lines_seen += len(batch.pairs)
        return {"loss": out.loss.item(), **out.stats}

    def _training_halting(self) -> Halting:
        depth = self.cfg.depth
        if depth == "every":
            return Halting(fixed_steps=self.model.cfg.N_sup)
        if depth == "sampled":
            return Halting(sampled_depth=True, generator=self.generator)
        if depth == "halting":
            return Halting(exploration=self.cfg.halt_exploration, generator=self.generator)
        raise ValueError(f"depth {depth!r} is not one of {sorted(TRAINING_DEPTHS)}")

    def fit(self, resume: bool = True, ends_by: float | None = None, evaluations_after: float = 0.0) -> SequenceTRM:
        """Trains until max_steps or max_minutes; returns the EMA model. With `ends_by` (a `time.monotonic()`),
        max_minutes is set when the loop starts so that the loop ends then (`loop_clock.timed_minutes`, the planned
        minutes being max_minutes). A loop that max_minutes ends stops early by `evaluations_after` progress
        evaluations (the work after it) and the end's own, at their measured time (`loop_clock.LoopClock`)."""
        torch.manual_seed(self.cfg.seed)
        if resume and self.load_checkpoint():
            ended = self.step >= self.cfg.max_steps or self.ended_by_time
            self.log(f"resumed from step {self.step} ({self.checkpoint_path})" + (RUN_ENDED if ended else ""))
            if ended:
                self._evaluate_end()  # a run killed in its end's evaluation has it still to do
                return self.ema.model
        check_room(self.checkpoint_path, self.model)
        if ends_by is not None:
            planned = self.cfg.max_minutes
            self.cfg = replace(self.cfg, max_minutes=timed_minutes(planned, self.elapsed_s, ends_by))
            self.log("training for " + timed_sentence(self.cfg.max_minutes, planned, self.elapsed_s, ends_by,
                                                      before_this_command(self.elapsed_s)))
        cfg = self.cfg
        batches = self.make_batches(self.step)
        clock = LoopClock(cfg.max_minutes, self.elapsed_s, evaluations_after if self.evaluate else 0.0,
                          evaluates_end=self.evaluate is not None, warn=self.log, ends_by=ends_by)
        if cfg.evaluate_first and self.evaluate and not self.history:
            # not timed for the reserve: the starting weights' long wrong answers decode several times slower than a
            # trained model's, and the reserve took half the minutes; the loop measures one by half its minutes
            self._evaluate()
        window: list[dict[str, float]] = []
        last_line_s = self.elapsed_s
        with stop_requests() as stop:
            try:
                while self.step < cfg.max_steps and not stop and not clock.out_of_time():
                    window.append(self.train_step(next(batches)))
                    self.elapsed_s = clock.trained_s()
                    if self.step == cfg.warmup_steps:
                        self.warmup_ended_s = self.elapsed_s
                    if self.step % cfg.log_every == 0 or self.elapsed_s - last_line_s >= LOG_SECONDS:
                        last_line_s = self.elapsed_s
                        mean = {key: sum(stats[key] for stats in window) / len(window) for key in window[0]}
                        budget = f" of {cfg.max_minutes:g}" if cfg.max_minutes else ""
                        self.log(f"step {self.step} {self.elapsed_s / 60:.1f}{budget} min lines {self.lines_seen} "
                                 + " ".join(f"{key} {value:.3f}" for key, value in mean.items()))
                        window = []
                    if self.evaluate and clock.evaluation_due(self.step, cfg.eval_every):
                        clock.timed(self._evaluate)
                    if self.step % cfg.checkpoint_every == 0:  # after the step's evaluation: a run killed in it
                        self.save_checkpoint()  # resumes from the checkpoint before and evaluates that step again
                self.ended_by_time = not stop and self.step < cfg.max_steps
            finally:
                self.save_checkpoint()
        if stop:
            raise KeyboardInterrupt(stopped(self.step, self.checkpoint_path))
        self._evaluate_end()
        return self.ema.model

    def _evaluate_end(self) -> None:
        """The weights the run ends with are scored too (then checkpointed), unless the last evaluation was of this
        step."""
        if self.evaluate and (not self.history or self.history[-1]["step"] != self.step):
            self._evaluate()
            self.save_checkpoint()

    @property
    def best_evaluation(self) -> dict[str, float] | None:
        """The evaluation that scored best (exact match, then character error rate; the later of equals), whose EMA
        weights `best_weights` holds; None when none did."""
        return None if self.best_weights is None else best_evaluation(self.history, _rank)

    def best_model(self) -> SequenceTRM:
        """The EMA weights of `best_evaluation`, or the last EMA weights when none was scored."""
        return self.ema.model if self.best_weights is None else self.ema.model_with(self.best_weights)

    def _evaluate(self) -> None:
        metrics = {"step": self.step, "elapsed_s": self.elapsed_s, "lines_seen": self.lines_seen,
                   **self.evaluate(self.ema.model)}
        self.history.append(metrics)
        if best_evaluation(self.history, _rank) is metrics:
            self.best_weights = self.ema.weights()
        self.log(f"eval step {self.step} {self.elapsed_s / 60:.1f} min lines {self.lines_seen} "
                 + " ".join(f"{key} {value:.4g}" for key, value in metrics.items()
                            if key not in ("step", "elapsed_s", "lines_seen")))


def _rank(scores: dict[str, float]) -> tuple[float, float]:
    """How an evaluation ranks: exact match first, then the lower character error rate."""
    return scores["exact_match"], -scores["cer"]


def load_model(checkpoint: Path, weights: str = "ema") -> SequenceTRM:
    """The model of a checkpoint (its EMA weights by default)."""
    return model_from_state(read_checkpoint(checkpoint), weights)


def model_from_state(state: dict, weights: str = "ema") -> SequenceTRM:
    """The model of a loaded checkpoint (`SequenceTrainer.save_checkpoint`'s dict)."""
    model = SequenceTRM(SequenceConfig(**state["model_config"]))
    model.load_state_dict(state[weights])
    return model.eval()
