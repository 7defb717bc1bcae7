"""The learning-rate schedule (`trainer.train.learning_rate`): a warmup, then a cosine over whichever budget ends the
run, steps or minutes, both counted from the warmup's end; so a run that its steps end trains the same weights
however long its warmup took on the clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from test_trainer_multistep import fixed_batch, text_config

from trainer.config import TrainConfig
from trainer.model import TRM
from trainer.sequence.batches import Batch, to_batch
from trainer.sequence.train import SequenceTrainConfig, SequenceTrainer
from trainer.testing import random_sequence_model
from trainer.train import Trainer, learning_rate

LR, WARMUP = 0.001, 10
SLOW_WARMUP_STEP_S = 0.25  # a busy machine's warmup: 5 steps of it are 4 % of a 30-second budget


def _budgets(max_steps: int, max_minutes: float) -> TrainConfig:
    return TrainConfig(name="s", task="text", data="d", lr=LR, warmup_steps=WARMUP, max_steps=max_steps,
                       max_minutes=max_minutes)


def test_the_warmup_rises_linearly_to_the_peak() -> None:
    cfg = _budgets(max_steps=100, max_minutes=0)
    assert [learning_rate(cfg, step, 0.0, 0.0) for step in (0, 4, 9, WARMUP)] == pytest.approx(
        [LR / 10, LR / 2, LR, LR])


def test_a_run_that_its_steps_end_decays_on_its_steps_whatever_the_clock_says() -> None:
    cfg = _budgets(max_steps=110, max_minutes=10)  # 600 s for 100 steps after the warmup: the steps end it
    halfway, end = WARMUP + 50, WARMUP + 100
    for warmup_ended_s in (0.5, 40.0):  # a quick warmup and a slow one, then a step a second
        clock = {step: warmup_ended_s + step - WARMUP for step in (WARMUP, halfway, end)}
        assert [learning_rate(cfg, step, clock[step], warmup_ended_s) for step in (WARMUP, halfway, end)] == [
            LR, pytest.approx(0.55 * LR), pytest.approx(LR / 10)]


def test_a_run_that_its_minutes_end_decays_on_the_clock_from_the_warmups_end() -> None:
    cfg = _budgets(max_steps=10**9, max_minutes=1)
    warmup_ended_s = 6.0  # the cosine spans the 54 s after it
    assert learning_rate(cfg, WARMUP, warmup_ended_s, warmup_ended_s) == LR
    assert learning_rate(cfg, 500, 33.0, warmup_ended_s) == pytest.approx(0.55 * LR)
    assert learning_rate(cfg, 900, 60.0, warmup_ended_s) == pytest.approx(LR / 10)
    assert learning_rate(cfg, 900, 60.0, warmup_ended_s=70.0) == pytest.approx(LR / 10)  # the warmup took it all


def _slowed_in_warmup(trainer: Trainer | SequenceTrainer) -> None:
    """Make each warmup step of `trainer` take SLOW_WARMUP_STEP_S longer on the clock, as on a busy machine."""
    step = trainer.train_step

    def slow_step(*args: object) -> dict[str, float]:
        if trainer.step < trainer.cfg.warmup_steps:
            time.sleep(SLOW_WARMUP_STEP_S)
        return step(*args)

    trainer.train_step = slow_step  # type: ignore[method-assign]


def _text_trainer(run_dir: Path) -> Trainer:
    torch.manual_seed(0)
    cfg = TrainConfig(name="s", task="text", data="d", out_dir=str(run_dir), device="cpu", max_steps=30,
                      max_minutes=0.5, warmup_steps=5, batch_size=6)
    return Trainer(cfg, TRM(text_config()), fixed_batch())


def _sequence_trainer(run_dir: Path) -> SequenceTrainer:
    def batches(_step: int) -> Iterator[Batch]:
        while True:
            yield to_batch([("x equals one", "x = 1"), ("return none", "return None"), ("pass", "pass")])

    model = random_sequence_model(0, max_source_len=64, max_target_len=16, n=1, T=1, N_sup=2, prefix_steps=1)
    cfg = SequenceTrainConfig(run_dir=run_dir, batch_size=3, max_steps=30, warmup_steps=5, max_minutes=0.5,
                              log_every=100)
    return SequenceTrainer(cfg, model, batches, log=lambda _: None)


@pytest.mark.parametrize("make_trainer", [_text_trainer, _sequence_trainer], ids=["text", "sequence"])
def test_a_run_that_its_steps_end_trains_the_same_weights_after_a_slow_warmup(make_trainer, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    quick, slow = make_trainer(tmp_path / "quick"), make_trainer(tmp_path / "slow")
    _slowed_in_warmup(slow)
    for trainer in (quick, slow):
        trainer.fit(resume=False)
    assert quick.step == slow.step == 30
    assert slow.warmup_ended_s >= 5 * SLOW_WARMUP_STEP_S > quick.warmup_ended_s
    weights = quick.model.state_dict(), slow.model.state_dict()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


@pytest.mark.parametrize("make_trainer", [_text_trainer, _sequence_trainer], ids=["text", "sequence"])
def test_a_resumed_run_keeps_the_moment_its_warmup_ended(make_trainer, tmp_path: Path) -> None:
    first = make_trainer(tmp_path)
    _slowed_in_warmup(first)
    first.fit(resume=False)
    resumed = make_trainer(tmp_path)
    assert resumed.load_checkpoint()
    assert resumed.warmup_ended_s == first.warmup_ended_s >= 5 * SLOW_WARMUP_STEP_S
