"""`keep_best`: a fit ships the EMA weights of its best progress evaluation on validation (the run's end evaluated
too), not the weights it ended with; a preset's fit sets it, the shipped models' configs do not."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_trainer_multistep import fixed_batch, text_config

import trainer.loop_clock
import trainer.train
from trainer.config import TrainConfig
from trainer.model import TRM
from trainer.report import _weights_line
from trainer.sequence.batches import Batch, to_batch
from trainer.sequence.train import SequenceTrainConfig, SequenceTrainer
from trainer.testing import random_sequence_model
from trainer.train import Trainer, best_evaluation


def _trainer(tmp_path: Path, scores: dict[int, float], keep_best: bool = True, max_steps: int = 7) -> Trainer:
    """A real model and loop whose evaluation gives `scores[step]` (validation accuracy after the last step) and
    records the EMA weights it scored in `trainer.scored`."""
    cfg = TrainConfig(name="best", task="text", data="d", out_dir=str(tmp_path), device="cpu", max_steps=max_steps,
                      warmup_steps=1, batch_size=6, lr=1e-2, eval_every=2, keep_best=keep_best)
    trainer = Trainer(cfg, TRM(text_config()), fixed_batch())
    trainer.scored = {}

    def evaluate(model: TRM) -> dict[str, float]:
        trainer.scored[trainer.step] = {key: value.clone() for key, value in model.state_dict().items()}
        return {"val_first_step": 0.0, "val_last_step": scores[trainer.step]}

    trainer.evaluate = evaluate
    return trainer


def _same_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(value, weights[key]) for key, value in model.state_dict().items())


def test_the_fit_ships_the_weights_of_its_best_evaluation_and_scores_its_end(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, {2: 0.50, 4: 0.75, 6: 0.60, 7: 0.70})
    last = trainer.fit(resume=False)
    assert [entry["step"] for entry in trainer.history] == [2, 4, 6, 7]  # step 7 ends the run, between evaluations
    shipped = trainer.shipped_model()
    assert _same_weights(shipped, trainer.scored[4]) and not _same_weights(shipped, trainer.scored[7])
    assert _same_weights(last, trainer.scored[7])  # fit still returns the weights it ended with
    assert _weights_line(trainer.cfg.to_dict(), trainer.history) == (
        "- weights: the EMA weights of step 4, the best of 4 evaluations on validation (75.00% in their final answers; "
        "the last evaluation's, step 7, 70.00%)\n")
    stored = {**trainer.cfg.to_dict(), "model": {**trainer.cfg.to_dict()["model"], "embedding_storage": "int8"}}
    assert _weights_line(stored, trainer.history).endswith(  # a long-text fit's, whose score moves once stored
        "70.00%; scored with the token table in fp32, before it was stored as int8 rows: the results above are the "
        "shipped weights')\n")


def test_the_later_of_equal_scores_is_shipped_and_a_resumed_run_keeps_its_best(tmp_path: Path) -> None:
    scores = {2: 0.75, 4: 0.75, 6: 0.5, 8: 0.25, 9: 0.25}
    trainer = _trainer(tmp_path, scores, max_steps=9)
    trainer.fit(resume=False, until=6)
    resumed = _trainer(tmp_path, scores, max_steps=9)
    resumed.fit(resume=True)
    assert [entry["step"] for entry in resumed.history] == [2, 4, 6, 8, 9]
    assert best_evaluation(resumed.history)["step"] == 4
    assert _same_weights(resumed.shipped_model(), trainer.scored[4])  # scored before the resume, kept in the checkpoint


def test_without_keep_best_the_last_weights_ship_and_the_end_is_not_evaluated_again(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, {2: 0.9, 4: 0.1, 6: 0.1}, keep_best=False)
    last = trainer.fit(resume=False)
    assert [entry["step"] for entry in trainer.history] == [2, 4, 6]
    assert trainer.shipped_model() is last and trainer.best_weights is None
    assert _weights_line(trainer.cfg.to_dict(), trainer.history) == (
        "- weights: the EMA weights the training ended with\n")


def test_best_evaluation_ranks_by_the_answer_after_the_last_step() -> None:
    history = [{"step": 1, "val_first_step": 0.9, "val_last_step": 0.2}, {"step": 2, "val_last_step": 0.3},
               {"step": 3, "val_last_step": 0.3}, {"step": 4, "val_last_step": 0.1}]
    assert best_evaluation(history)["step"] == 3 and best_evaluation([]) is None


def test_keep_best_is_refused_for_a_soup_and_kept_with_train_on_val() -> None:
    with pytest.raises(ValueError, match="a soup averages its ingredients: --set keep_best=false"):
        TrainConfig(name="best", task="text", data="d", keep_best=True, soup=[{}, {}])
    assert TrainConfig(name="best", task="text", data="d", keep_best=True, train_on_val=True).keep_best


def _timed_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, eval_every: int) -> tuple[Trainer, SimpleNamespace]:
    """A run of 100 s (max_minutes) on a simulated clock, `clock.now`: a training step takes 1 s, an evaluation 7 s."""
    clock = SimpleNamespace(now=0.0)
    for module in (trainer.train, trainer.loop_clock):
        monkeypatch.setattr(module, "time", SimpleNamespace(monotonic=lambda: clock.now))
    run = _trainer(tmp_path, {step: 0.5 for step in range(1, 101)}, max_steps=10**6)
    run.cfg = replace(run.cfg, eval_every=eval_every, max_minutes=100 / 60)
    step, evaluate = run.train_step, run.evaluate

    def timed_step(carry: object) -> dict[str, float]:
        clock.now += 1.0
        return step(carry)

    def timed_evaluation(model: TRM) -> dict[str, float]:
        clock.now += 7.0
        return evaluate(model)

    run.train_step, run.evaluate = timed_step, timed_evaluation
    return run, clock


@pytest.mark.parametrize(("evaluations_after", "evaluated_at", "loop_ends_s"), [
    # 72 steps and three evaluations take 93 s; a step more and the end's evaluation would end past the 100 s
    (0.0, [20, 40, 60, 72], 100.0),
    # the export's work, as long as one evaluation, after the end's: 65 steps, four evaluations, 93 s + 7 s
    (1.0, [20, 40, 60, 65], 93.0),
    # as long as two: the evaluation of step 60 ends at 81 s, and 81 + 7 + 14 > 100: no step more, none at the end
    (2.0, [20, 40, 60], 81.0),
])
def test_a_timed_run_ends_its_loop_early_enough_for_the_evaluations_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, evaluations_after: float, evaluated_at: list[int],
    loop_ends_s: float,
) -> None:
    run, clock = _timed_run(tmp_path, monkeypatch, eval_every=20)
    run.fit(resume=False, evaluations_after=evaluations_after)
    assert [entry["step"] for entry in run.history] == evaluated_at and clock.now == loop_ends_s
    assert clock.now + 7.0 * evaluations_after <= 100.0


def test_a_timed_run_slower_than_its_plan_measures_an_evaluation_by_half_its_minutes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # eval_every is 200 steps, more than the 100 s allow at 1 s a step: without an evaluation by half the minutes
    # nothing would be reserved, and the end's evaluation and the export's would end at 114 s
    run, clock = _timed_run(tmp_path, monkeypatch, eval_every=200)
    run.fit(resume=False, evaluations_after=1.0)
    # step 50 evaluated at 50 s (to 57 s); the loop ends at 86 s, leaving 14 s: the end's evaluation and the export's
    assert [entry["step"] for entry in run.history] == [50, 79] and clock.now == 93.0


def test_a_machine_too_slow_for_the_work_after_its_loop_is_told_so_at_its_first_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run, clock = _timed_run(tmp_path, monkeypatch, eval_every=20)
    run.fit(resume=False, evaluations_after=12.0)  # the export's work: 84 s of the 100
    # step 20's evaluation ends at 27 s; the loop trains on to 50 s (the reserve takes half the minutes at most),
    # then the end's evaluation and the export's, 91 s: about 41 s past (it ends 45 s past; QA: it said 0.2 min,
    # counting as if the loop stopped at once)
    assert ("best: the work after training takes about 1.5 min on this machine (at this evaluation's speed), more "
            "than its minutes leave: the fit will end about 0.7 min past them") in capsys.readouterr().out
    # but the loop trains half its minutes still (the reserve takes at most the other half): step 40's evaluation
    # ends at 54 s, and 54 + 50 >= 100
    assert [entry["step"] for entry in run.history] == [20, 40] and clock.now == 54.0


def test_a_run_whose_work_after_fits_says_nothing_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = _timed_run(tmp_path, monkeypatch, eval_every=20)
    run.fit(resume=False, evaluations_after=2.0)
    assert "the work after training" not in capsys.readouterr().out


def _killed_in_evaluation(run: Trainer | SequenceTrainer, step: int) -> None:
    """Makes `run` die as under SIGKILL in its evaluation of `step`: nothing it would save after that is saved."""
    evaluate = run.evaluate

    def dying(model: TRM) -> dict[str, float]:
        if run.step == step:
            run.save_checkpoint = lambda: None
            raise SystemExit("killed")
        return evaluate(model)

    run.evaluate = dying


def _text_run(folder: Path, scores: dict[int, float], supervision: str = "unrolled") -> Trainer:
    torch.manual_seed(0)  # the same initial weights for each
    made = _trainer(folder, scores)
    made.cfg = replace(made.cfg, checkpoint_every=2, supervision=supervision)
    return made


def _carry_run(folder: Path, scores: dict[int, float]) -> Trainer:
    """A text run over the ACT carry (the presets'), whose slots part-way through their steps are checkpointed."""
    made = _text_run(folder, scores, supervision="carry")
    assert made.carries_state
    return made


def _sequence_run(folder: Path, scores: dict[int, float]) -> SequenceTrainer:
    torch.manual_seed(0)
    model = random_sequence_model(0, max_source_len=64, max_target_len=16, n=1, T=1, N_sup=2, prefix_steps=1)
    config = SequenceTrainConfig(run_dir=folder, batch_size=2, max_steps=7, warmup_steps=1, log_every=10**6,
                                 eval_every=2, checkpoint_every=2)

    def batches(_step: int) -> Iterator[Batch]:
        while True:
            yield to_batch([("x equals one", "x = 1"), ("pass", "pass")])

    made = SequenceTrainer(config, model, batches, lambda _: {}, log=lambda _: None)
    made.evaluate = lambda _: {"exact_match": scores[made.step], "cer": 0.0}
    return made


def _shipped(run: Trainer | SequenceTrainer) -> torch.nn.Module:
    return run.shipped_model() if isinstance(run, Trainer) else run.best_model()


@pytest.mark.parametrize("make", [_text_run, _carry_run, _sequence_run], ids=["text", "ACT carry", "sequence"])
@pytest.mark.parametrize("killed_at", [4, 7], ids=["in the loop", "in the end's evaluation"])
def test_a_run_killed_in_an_evaluation_ships_what_the_uninterrupted_run_ships(tmp_path: Path, make, killed_at: int):
    """QA: the checkpoint of a step was saved before its evaluation, and a run that had ended was not evaluated at
    its end on resuming: a fit killed there shipped other weights (step 60's, not 70's) from the same command."""
    scores = {2: 0.50, 4: 0.80, 6: 0.60, 7: 0.70} if killed_at == 4 else {2: 0.50, 4: 0.60, 6: 0.60, 7: 0.90}
    whole = make(tmp_path / "whole", scores)
    whole.fit(resume=False)
    killed = make(tmp_path / "killed", scores)
    _killed_in_evaluation(killed, killed_at)
    with pytest.raises(SystemExit):
        killed.fit(resume=False)
    resumed = make(tmp_path / "killed", scores)
    resumed.fit(resume=True)
    assert [entry["step"] for entry in resumed.history] == [entry["step"] for entry in whole.history] == [2, 4, 6, 7]
    assert _same_weights(_shipped(resumed), _shipped(whole).state_dict())
