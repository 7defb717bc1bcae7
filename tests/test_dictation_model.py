"""The sequence TRM: KV caches equal recomputation, per-token halting, deep supervision over every step."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from trainer.sequence.batches import Batch, to_batch
from trainer.sequence.decode import Halting, run
from trainer.sequence.teacher_forcing import teacher_forced
from trainer.sequence.train import SequenceTrainConfig, SequenceTrainer
from trainer.sequence.vocab import PAD_ID, decode, encode
from trainer.testing import random_sequence_model

torch.set_num_threads(1)
SOURCES = ["def parse open paren path close paren colon", "x equals one", "return none"]


small_model = random_sequence_model


def source_ids(*texts: str) -> torch.Tensor:
    return to_batch([(text, "") for text in texts]).source


@torch.no_grad()
@pytest.mark.parametrize("prefix_steps", [None, 2, 1])
def test_decoding_with_the_caches_equals_every_token_recomputed_at_once(prefix_steps: int | None) -> None:
    """Decode a padded batch greedily with the caches (rows halting at different steps, so rows are
    gathered and scattered, and halted tokens stand for themselves at later steps); then teacher-force
    the same answers through the parallel pass, which recomputes every token from nothing: the same
    halting logits at every step and the same answer at each token's last step. With a prefix cache of
    fewer steps than N_sup, the later steps read its last step's entries in both."""
    model = small_model(prefix_steps=prefix_steps)
    source = source_ids(*SOURCES)
    decoded = run(model, source, max_len=8)
    targets = decoded.tokens.clone()
    assert (decoded.steps[decoded.steps > 0] > 1).any() and (decoded.steps == 1).any()
    recomputed = teacher_forced(model, source, targets)
    torch.testing.assert_close(recomputed.halt_logits, decoded.halt_logits, rtol=1e-4, atol=1e-5, equal_nan=True)
    assert torch.equal(recomputed.steps, decoded.steps)
    assert torch.equal(recomputed.answers, targets)


@torch.no_grad()
def test_halting_when_unchanged_stops_a_token_at_its_first_step_that_repeats_the_step_before() -> None:
    """With a prefix cache of step 1, a token's answer after step s does not depend on how far other tokens
    refine, so fixed step counts give every token's answer at every step. A token then stops at its first
    step whose halting probability reaches the threshold, or whose answer is its previous step's, or at
    N_sup; decoding with the caches and the teacher-forced pass agree with that rule."""
    model = small_model(seed=5, prefix_steps=1)
    n_sup, source = model.cfg.N_sup, source_ids(*SOURCES)
    decoded = run(model, source, halting=Halting(when_unchanged=True), max_len=8)
    targets, real = decoded.tokens, decoded.tokens != PAD_ID
    assert torch.equal(teacher_forced(model, source, targets, Halting(when_unchanged=True)).steps, decoded.steps)
    answers = [teacher_forced(model, source, targets, Halting(fixed_steps=k)).answers for k in range(1, n_sup + 1)]
    confident = torch.sigmoid(teacher_forced(model, source, targets, Halting(fixed_steps=n_sup)).halt_logits) >= 0.5
    expected = torch.full_like(decoded.steps, n_sup)
    stopped_unchanged = torch.zeros_like(real)
    for step in range(n_sup, 0, -1):  # the first step that stops wins
        unchanged = answers[step - 1] == answers[step - 2] if step > 1 else torch.zeros_like(real)
        expected = torch.where(confident[..., step - 1] | unchanged, step, expected)
        stopped_unchanged = torch.where(confident[..., step - 1] | unchanged, unchanged & ~confident[..., step - 1],
                                        stopped_unchanged)
    assert torch.equal(decoded.steps[real], expected[real])
    assert stopped_unchanged[real].any()  # the rule, not only the halting head, stopped some tokens


@torch.no_grad()
@pytest.mark.parametrize("prefix_steps", [None, 1])
def test_a_batch_decodes_as_each_row_alone(prefix_steps: int | None) -> None:
    model = small_model(seed=1, prefix_steps=prefix_steps)
    together = run(model, source_ids(*SOURCES), max_len=10)
    for row, text in enumerate(SOURCES):
        alone = run(model, source_ids(text), max_len=10)
        assert together.tokens[row].tolist() == alone.tokens[0].tolist()
        assert together.steps[row].tolist() == alone.steps[0].tolist()
        torch.testing.assert_close(together.halt_logits[row], alone.halt_logits[0], rtol=1e-4, atol=1e-5,
                                   equal_nan=True)


@torch.no_grad()
def test_each_token_halts_on_its_own_at_its_first_confident_step() -> None:
    model = small_model(seed=6)
    out = run(model, source_ids(*SOURCES), max_len=12)
    counts = []
    for row in range(len(SOURCES)):
        for position in range(12):
            steps = int(out.steps[row, position])
            if steps == 0:
                assert out.tokens[row, position] == PAD_ID
                continue
            logits = out.halt_logits[row, position]
            confident = [s + 1 for s in range(4) if logits[s] > 0]
            assert steps == (confident[0] if confident else 4)
            assert torch.isnan(logits[steps:]).all() and not torch.isnan(logits[:steps]).any()
            counts.append(steps)
    assert min(counts) == 1 and max(counts) > 1  # some tokens settle at once, others refine longer


@torch.no_grad()
def test_fixed_step_counts_and_never_halting_run_every_token_that_long() -> None:
    model = small_model(seed=3)
    fixed = run(model, source_ids(*SOURCES), halting=Halting(fixed_steps=3), max_len=6)
    assert set(fixed.steps[fixed.steps > 0].tolist()) == {3}
    nn.init.zeros_(model.q_head.weight)
    nn.init.constant_(model.q_head.bias, -5.0)
    never = run(model, source_ids(*SOURCES), max_len=6)
    assert set(never.steps[never.steps > 0].tolist()) == {4}


@pytest.mark.parametrize("step_weights", ["uniform", "rising"])
def test_deep_supervision_trains_every_refinement_step_of_every_token(step_weights: str) -> None:
    """Each step's answers get a gradient exactly where a token took that step; the loss is the mean over
    every (token, step) taken of its cross-entropy, weighted 1 (uniform) or 2s / (N_sup + 1) at step s
    (rising); the halting loss is weighted 0 here."""
    model = small_model(seed=4).train()
    batch = to_batch([(source, target) for source, target in zip(SOURCES, ["def parse(path):", "x = 1", "return None"],
                                                                     strict=True)])
    captured: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        output.retain_grad()
        captured.append(output)

    model.answer.register_forward_hook(keep)
    out = teacher_forced(model, batch.source, batch.targets, Halting(), halt_loss_weight=0.0, step_weights=step_weights)
    out.loss.backward()
    assert len(captured) == int(out.steps.max()) > 1 and (out.steps == 1).any()
    n_sup = model.cfg.N_sup
    expected, taken = 0.0, 0
    for step, logits in enumerate(captured, start=1):
        took = out.steps >= step
        assert torch.equal(logits.grad.abs().sum(-1) > 0, took)
        weight = 1.0 if step_weights == "uniform" else 2 * step / (n_sup + 1)
        expected = expected + weight * nn.functional.cross_entropy(logits[took], batch.targets[took], reduction="sum")
        taken += int(took.sum())
    torch.testing.assert_close(out.loss, expected / taken)


def test_training_lowers_the_loss_and_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    pairs = [("x equals one", "x = 1"), ("none", "None"), ("pass", "pass"), ("y colon", "y:")]
    model = small_model(seed=5, T=1, N_sup=2).train()
    cfg = SequenceTrainConfig(run_dir=tmp_path, batch_size=4, lr=1e-2, warmup_steps=5, max_steps=20,
                              eval_every=1000, checkpoint_every=1000, log_every=1000)

    def batches(_step: int) -> Iterator[Batch]:
        while True:
            yield to_batch(pairs)

    trainer = SequenceTrainer(cfg, model, batches, log=lambda _line: None)
    first = teacher_forced(model, to_batch(pairs).source, to_batch(pairs).targets).loss.item()
    trainer.fit()
    last = teacher_forced(trainer.model, to_batch(pairs).source, to_batch(pairs).targets).loss.item()
    assert last < 0.5 * first
    longer = SequenceTrainConfig(**{**cfg.__dict__, "max_steps": 22})
    resumed = SequenceTrainer(longer, small_model(seed=9, T=1, N_sup=2), batches, log=lambda _line: None)
    resumed.fit()
    assert resumed.step == 22 and resumed.lines_seen == 22 * 4
    assert decode(encode("x = 1")) == "x = 1"


def test_the_best_scored_weights_are_kept_across_a_resume_and_later_equals_win_ties(tmp_path: Path) -> None:
    """QA: a sequence fit's held-out exact match fell from 98.75% to 41.25% at one evaluation, and a run ending there
    would have shipped it: the trainer keeps the EMA weights that scored best, in its checkpoint too."""
    pairs = [("x equals one", "x = 1"), ("none", "None")]
    scripted = iter([(0.5, 0.2), (0.9, 0.1), (0.4, 0.3), (0.9, 0.1), (0.9, 0.2)])  # (exact match, cer) per evaluation
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def evaluate(ema: nn.Module) -> dict[str, float]:
        seen[len(seen)] = {key: value.clone() for key, value in ema.state_dict().items()}
        exact, cer = next(scripted)
        return {"exact_match": exact, "cer": cer}

    def batches(_step: int) -> Iterator[Batch]:
        while True:
            yield to_batch(pairs)

    cfg = SequenceTrainConfig(run_dir=tmp_path, batch_size=2, lr=1e-2, warmup_steps=1, max_steps=6, eval_every=2,
                              checkpoint_every=1000, log_every=1000)
    trainer = SequenceTrainer(cfg, small_model(seed=5, T=1, N_sup=2).train(), batches, evaluate, log=lambda _: None)
    trainer.fit()  # scored at steps 2, 4, 6: 0.5, 0.9, 0.4
    assert trainer.best_evaluation is not None and trainer.best_evaluation["step"] == 4
    for key, value in trainer.best_model().state_dict().items():
        torch.testing.assert_close(value, seen[1][key], rtol=0, atol=0)
    last = trainer.ema.model.state_dict()
    assert any(not torch.equal(value, last[key]) for key, value in trainer.best_model().state_dict().items())

    longer = SequenceTrainConfig(**{**cfg.__dict__, "max_steps": 10})
    resumed = SequenceTrainer(longer, small_model(seed=9, T=1, N_sup=2).train(), batches, evaluate, log=lambda _: None)
    resumed.fit()  # resumed from step 6, scored at 8 and 10: 0.9 / 0.1 (equal to step 4's: the later wins), 0.9 / 0.2
    assert resumed.best_evaluation is not None and resumed.best_evaluation["step"] == 8
    for key, value in resumed.best_model().state_dict().items():
        torch.testing.assert_close(value, seen[3][key], rtol=0, atol=0)


def test_no_step_starts_once_an_evaluation_has_used_up_the_minutes(tmp_path: Path) -> None:
    pairs = [("x equals one", "x = 1"), ("none", "None")]

    def slow_evaluation(_: nn.Module) -> dict[str, float]:
        time.sleep(2.0)  # longer than the whole budget
        return {"exact_match": 0.0, "cer": 1.0}

    def batches(_step: int) -> Iterator[Batch]:
        while True:
            yield to_batch(pairs)

    cfg = SequenceTrainConfig(run_dir=tmp_path, batch_size=2, warmup_steps=1, max_steps=100, max_minutes=0.02,
                              eval_every=1, checkpoint_every=1000, log_every=1000)
    trainer = SequenceTrainer(cfg, small_model(seed=5, T=1, N_sup=2).train(), batches, slow_evaluation,
                              log=lambda _: None)
    trainer.fit()
    assert trainer.step == 1 and [entry["step"] for entry in trainer.history] == [1]


def test_training_depths_every_halting_and_sampled(tmp_path: Path) -> None:
    """"every": all N_sup steps; "halting": fewer (the head stops some tokens); "sampled": each token's depth
    drawn from 1..N_sup whatever its halting head says, each of its steps supervised."""
    pairs = [("x equals one", "x = 1"), ("none", "None")]
    model = small_model(seed=5, T=1, N_sup=3).train()

    def trainer(depth: str) -> SequenceTrainer:
        return SequenceTrainer(SequenceTrainConfig(run_dir=tmp_path, batch_size=2, depth=depth), model,
                               lambda _step: iter(()), log=lambda _line: None)

    assert trainer("every").train_step(to_batch(pairs))["steps_per_token"] == 3.0
    assert trainer("halting").train_step(to_batch(pairs))["steps_per_token"] < 3.0
    with torch.no_grad():
        model.q_head.bias.fill_(50.0)  # the head says "stop" everywhere: sampled depths ignore it
        batch = to_batch(pairs * 20)
        sampled = teacher_forced(model, batch.source, batch.targets,
                                 Halting(sampled_depth=True, generator=torch.Generator().manual_seed(0)))
    taken = sampled.steps[sampled.steps > 0]
    assert set(taken.tolist()) == {1, 2, 3}
    assert torch.equal((~sampled.halt_logits.isnan()).sum(-1), sampled.steps)  # every step taken was run
    with pytest.raises(ValueError, match="depth 'deep' is not one of"):
        trainer("deep").train_step(to_batch(pairs))


def test_the_unsure_threshold_makes_the_most_right_calls_else_flags_answers_less_sure_than_every_one_seen() -> None:
    from trainer.sequence.evaluate import unsure_figures, unsure_threshold

    confidence, right = [0.9, 0.8, 0.3, 0.2, 0.6], [True, True, False, False, True]
    assert unsure_threshold(confidence, right) == pytest.approx(0.45)  # flags 0.2 and 0.3: five right calls of five
    assert unsure_figures(confidence, right, 0.45) == {"unsure_below": 0.45, "rows": 5, "flagged": 2,
                                                       "flagged_wrong": 2, "wrong": 2, "kept_exact_match": 1.0}
    # flagging none does best: the lowest confidence seen, which flags none of these and what is less sure than them
    assert unsure_threshold([0.9, 0.5, 0.2], [True, True, True]) == 0.2  # every answer right
    assert unsure_threshold([0.9, 0.5, 0.2], [True, False, True]) == 0.2  # 0.35 or 0.7 make no more right calls
    assert unsure_figures([0.9, 0.5, 0.2, 0.1], [True, True, True, False], 0.2)["flagged"] == 1  # 0.1 alone
    # QA: a 4-minute fit that learned nothing kept its 5 most confident answers, all wrong, unflagged
    every_wrong = unsure_threshold([0.9, 0.5, 0.2], [False, False, False])
    assert unsure_figures([0.9, 0.5, 0.2], [False, False, False], every_wrong)["flagged"] == 3



def test_calibration_takes_the_fewest_steps_within_tolerance_else_the_most_accurate_and_says_which() -> None:
    from trainer.sequence.evaluate import calibrated_halting, calibration_reason

    def curves(learned: list[tuple[float, float, float]]) -> dict[str, list[dict[str, float]]]:
        fixed = [{"steps": 1, "exact_match": 0.932}, {"steps": 4, "exact_match": 0.960}]
        return {"fixed_steps": fixed, "halting_curve": [{"threshold": t, "exact_match": e, "mean_steps": s}
                                                        for t, e, s in learned]}  # fmt: skip

    reached = curves([(0.5, 0.932, 1.0), (0.9, 0.956, 1.02), (0.97, 0.958, 1.06)])
    assert calibrated_halting(reached) == Halting(threshold=0.9)
    assert calibration_reason(reached).startswith("the fewest mean steps within 0.5 points")
    # the shape of a real run's validation curves (2026-12-04): no threshold within 0.5 of the best fixed count
    short = curves([(0.5, 0.932, 1.0), (0.9, 0.944, 1.017), (0.97, 0.944, 1.056)])
    assert calibrated_halting(short) == Halting(threshold=0.9)
    assert calibration_reason(short) == (
        "no threshold came within 0.5 points of the best fixed step count's exact match (96.0%), so the most "
        "accurate one (94.4%), the fewest mean steps among equals")


def test_a_progress_line_comes_by_time_where_log_every_steps_take_longer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fit of 127-character targets made 68 steps in 2.3 min and printed no line (one per 100 steps)."""
    import trainer.sequence.train as sequence_train

    monkeypatch.setattr(sequence_train, "LOG_SECONDS", 0.0)  # every step is past it
    cfg = SequenceTrainConfig(run_dir=tmp_path, batch_size=2, max_steps=3, eval_every=1000, checkpoint_every=1000,
                              log_every=1000)
    lines: list[str] = []

    def batches(_step: int) -> Iterator[Batch]:
        while True:
            yield to_batch([("x equals one", "x = 1"), ("none", "None")])

    SequenceTrainer(cfg, small_model(seed=5, T=1, N_sup=2).train(), batches, log=lines.append).fit()
    assert [line.split()[:2] for line in lines] == [["step", "1"], ["step", "2"], ["step", "3"]]
