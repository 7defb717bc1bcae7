"""A training loop timed to end by a given moment (`Trainer.fit`'s `ends_by`, which a preset's fit sets from its
time budget): it trains until then, not for the minutes its plan estimated, and at least half of those."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_trainer_multistep import fixed_batch, text_config

from trainer.config import TrainConfig
from trainer.loop_clock import MIN_PLANNED_SHARE
from trainer.model import TRM
from trainer.sequence.batches import Batch, to_batch
from trainer.sequence.train import SequenceTrainConfig, SequenceTrainer
from trainer.testing import random_sequence_model
from trainer.train import Trainer


def _trainer(tmp_path: Path, planned_minutes: float) -> Trainer:
    cfg = TrainConfig(name="timed", task="text", data="d", out_dir=str(tmp_path), device="cpu", max_steps=10**9,
                      max_minutes=planned_minutes, warmup_steps=1, batch_size=6)
    return Trainer(cfg, TRM(text_config()), fixed_batch())


def test_a_loop_timed_to_a_moment_trains_until_then_not_for_its_planned_minutes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for planned_minutes in (0.05, 0.2):  # the plan's estimate of the time left was short, then long
        trainer = _trainer(tmp_path / str(planned_minutes), planned_minutes)
        started = time.monotonic()
        trainer.fit(resume=False, ends_by=started + 6.0)
        took_s = time.monotonic() - started
        assert trainer.cfg.max_minutes == pytest.approx(0.1, abs=0.006)  # recorded as trained: 6 s
        assert trainer.cfg.max_minutes * 60 <= trainer.elapsed_s <= took_s < 9
        assert (f"timed: training until step 1,000,000,000 or for 0.10 min in all, so that the fit ends within its "
                f"time budget ({planned_minutes:g} planned; whichever comes first)") in capsys.readouterr().out


def test_a_loop_that_starts_after_its_moment_still_trains_half_its_planned_minutes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trainer = _trainer(tmp_path, planned_minutes=0.1)
    trainer.fit(resume=False, ends_by=time.monotonic() - 60.0)
    assert trainer.cfg.max_minutes == pytest.approx(MIN_PLANNED_SHARE * 0.1, abs=0.006)
    assert trainer.elapsed_s >= trainer.cfg.max_minutes * 60 and trainer.step > 1
    # QA: it said "so that the fit ends within its time budget" of a fit whose preparing had used it up
    assert ("or for 0.05 min in all, the least a fit trains (50% of the 0.1 planned): preparing used up the time "
            "budget, so the fit ends past it") in capsys.readouterr().out


def test_without_a_moment_the_loop_keeps_its_planned_minutes(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, planned_minutes=0.05)
    trainer.fit(resume=False)
    # elapsed_s is the clock at the end of the last step, the one before the check that found the 3 s used up
    assert trainer.cfg.max_minutes == 0.05 and 2.5 <= trainer.elapsed_s < 10


def test_no_step_starts_once_an_evaluation_has_used_up_the_minutes(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, planned_minutes=0.02)  # 1.2 s
    trainer.cfg = replace(trainer.cfg, eval_every=1)

    def slow_evaluation(_: TRM) -> dict[str, float]:
        time.sleep(2.0)  # longer than the whole budget
        return {"accuracy": 0.0}

    trainer.evaluate = slow_evaluation
    trainer.fit(resume=False)
    assert trainer.step == 1 and [entry["step"] for entry in trainer.history] == [1]


def test_a_run_that_its_time_ended_is_exported_again_not_trained_on_by_the_same_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """QA: a fit that its time budget ended trained on for another budget when the same command ran again, so each
    rerun shipped other weights; a run interrupted before its end still resumes."""
    trainer = _trainer(tmp_path, planned_minutes=0.02)
    trainer.fit(resume=False, ends_by=time.monotonic() + 1.0)
    ended_at, weights = trainer.step, trainer.ema.weights()
    assert 0 < ended_at < trainer.cfg.max_steps
    for _ in range(2):  # and the checkpoint it saves again still says so
        rerun = _trainer(tmp_path, planned_minutes=0.02)
        rerun.fit(resume=True, ends_by=time.monotonic() + 1.0)
        assert rerun.step == ended_at
        assert all(torch.equal(value, weights[key]) for key, value in rerun.ema.weights().items())
        assert (f"resumed timed from step {ended_at} ({rerun.checkpoint_path}) (the run had ended: its weights are "
                "exported again; --restart trains anew)") in capsys.readouterr().out

    interrupted = _trainer(tmp_path / "interrupted", planned_minutes=0.02)
    interrupted.cfg = replace(interrupted.cfg, max_steps=3)  # its steps end it, as a kill would, before its time
    interrupted.fit(resume=False, ends_by=time.monotonic() + 60.0)
    resumed = _trainer(tmp_path / "interrupted", planned_minutes=0.02)
    resumed.fit(resume=True, ends_by=time.monotonic() + 1.0)
    assert resumed.step > 3 and "had ended" not in capsys.readouterr().out


def test_a_sequence_loop_does_not_reserve_its_export_at_the_starting_weights_evaluation(tmp_path: Path) -> None:
    """Probe: a sequence fit from code-dictation's weights timed the export's reserve on the evaluation before its
    first step, whose long wrong answers decode several times slower than a trained model's: the reserve took its
    cap, half the minutes, and a 2-minute fit trained 1.0 of its 1.8 minutes (7 steps on a busy machine)."""
    torch.set_num_threads(1)
    calls = []

    def evaluate(_: object) -> dict[str, float]:
        calls.append(time.monotonic())
        time.sleep(2.0 if len(calls) == 1 else 0.05)  # the starting weights' evaluation, then trained ones'
        return {"exact_match": 0.0, "cer": 1.0}

    def batches(_step: int) -> Iterator[Batch]:
        while True:
            yield to_batch([("x equals one", "x = 1"), ("pass", "pass")])

    model = random_sequence_model(0, max_source_len=64, max_target_len=16, n=1, T=1, N_sup=2, prefix_steps=1)
    config = SequenceTrainConfig(run_dir=tmp_path, batch_size=2, max_steps=10**9, warmup_steps=1, log_every=10**6,
                                 eval_every=10**6, evaluate_first=True, max_minutes=0.1)  # 6 s
    trainer = SequenceTrainer(config, model, batches, evaluate, log=lambda _: None)
    trainer.fit(resume=False, evaluations_after=3)
    assert len(calls) >= 3  # before the first step, by half the minutes (measured), at the end
    assert trainer.elapsed_s >= 5.0  # the reserve is 4 evaluations of 0.05 s, not half of the 6 s
