"""Multi-step text models: unrolled (or sampled) supervision trains every step's answer; slot carry hands
only the slot rows to the next step."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from trainer_support import TINY_MODEL

from trainer.cli import main
from trainer.config import TrainConfig
from trainer.model import TRM, ModelConfig
from trainer.train import Trainer, trim_padding

torch.set_num_threads(1)


def text_config(**overrides) -> ModelConfig:
    base = dict(task="text", vocab_size=50, seq_len=12, num_outputs=5, hidden_size=32, num_heads=2, n=1, T=1, N_sup=3)
    return ModelConfig(**{**base, **overrides})


class FixedStream:
    """Draws the same batch every time (so a test can recompute the step by hand)."""

    def __init__(self, tokens: np.ndarray, targets: np.ndarray) -> None:
        self.tokens, self.targets = tokens, targets

    def draw(self, count: int) -> dict[str, np.ndarray]:
        return {"tokens": self.tokens[:count], "targets": self.targets[:count]}

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass


def fixed_batch(rows: int = 6, length: int = 12, used: int = 12, seed: int = 0) -> FixedStream:
    rng = np.random.default_rng(seed)
    tokens = np.zeros((rows, length), dtype=np.int64)
    tokens[:, :used] = rng.integers(2, 50, (rows, used))
    tokens[1:, used // 2:] = 0  # ragged: only the first row is `used` tokens long
    return FixedStream(tokens, rng.integers(0, 5, rows))


@pytest.mark.parametrize("state_carry", ["all", "slots"])
def test_slot_carry_hands_only_the_slot_rows_to_the_next_step(state_carry: str) -> None:
    torch.manual_seed(0)
    model = TRM(text_config(state_carry=state_carry)).eval()
    tokens = torch.randint(1, 50, (2, 12))
    y, z = torch.randn(2, 13, 32), torch.randn(2, 13, 32)
    tokens_zeroed = [s.clone() for s in (y, z)]
    for s in tokens_zeroed:
        s[:, 1:] = 0
    slots_changed = [s.clone() for s in (y, z)]
    for s in slots_changed:
        s[:, 0] += 1.0
    logits = model.step(tokens, y, z)[2]
    ignores_token_rows = torch.allclose(logits, model.step(tokens, *tokens_zeroed)[2], atol=1e-6)
    assert ignores_token_rows is (state_carry == "slots")
    assert not torch.allclose(logits, model.step(tokens, *slots_changed)[2], atol=1e-3)  # the answer slot carries


def test_slot_carry_keeps_the_document_slot_too() -> None:
    torch.manual_seed(0)
    model = TRM(text_config(state_carry="slots", doc_slot=True, pool=4)).eval()
    tokens = torch.randint(1, 50, (2, 12))
    y, z = model.initial_state(2)
    y2, z2, _, _ = model.step(tokens, y, z)
    changed = [s.clone() for s in (y2, z2)]
    changed[1][:, 1] += 1.0  # the document slot row of z
    assert not torch.allclose(model.step(tokens, y2, z2)[2], model.step(tokens, *changed)[2], atol=1e-3)


def test_configs_refuse_unknown_values_and_slot_carry_for_grids() -> None:
    with pytest.raises(ValueError, match="state_carry must be all or slots"):
        text_config(state_carry="tokens")
    with pytest.raises(ValueError, match="slots is for text"):
        ModelConfig(task="grid", vocab_size=10, seq_len=81, num_outputs=10, mixer="mlp", state_carry="slots")
    with pytest.raises(ValueError, match="supervision must be carry, unrolled or sampled"):
        TrainConfig(name="x", task="text", data="d", supervision="stacked")


def test_trimmed_batches_give_the_same_answers() -> None:
    """Unrolled training cuts a batch to its longest input: every step's logits stay the same."""
    torch.manual_seed(0)
    cfg = text_config(state_carry="slots")
    model = TRM(cfg).eval()
    tokens = torch.as_tensor(fixed_batch(used=6).tokens)
    trimmed = trim_padding(tokens, cfg)
    assert trimmed.shape[1] == 6 and torch.equal(trimmed, tokens[:, :6])
    y, z = model.initial_state(len(tokens))
    yt, zt = y[:, :7], z[:, :7]
    for _ in range(cfg.N_sup):
        y, z, full, _ = model.step(tokens, y, z)
        yt, zt, short, _ = model.step(trimmed, yt, zt)
        torch.testing.assert_close(short, full, rtol=1e-5, atol=1e-5)
    pooled = text_config(pool=4)
    assert trim_padding(tokens, pooled).shape[1] == 8  # kept to a multiple of the pool
    assert trim_padding(tokens, text_config(mixer="mlp")).shape[1] == 12  # fixed-length mixer: untouched


@pytest.mark.parametrize(
    ("supervision", "state_carry"), [("unrolled", "all"), ("unrolled", "slots"), ("sampled", "slots")]
)
def test_each_graded_steps_answer_is_trained(supervision: str, state_carry: str, tmp_path: Path) -> None:
    """One optimizer step = the mean of each graded step's own loss, and its gradient the mean of theirs
    (states detached between steps); each graded step's loss has a gradient of its own."""
    torch.manual_seed(0)
    mcfg = text_config(state_carry=state_carry, N_sup=4)
    cfg = TrainConfig(name="u", task="text", data="d", out_dir=str(tmp_path), supervision=supervision,
                      batch_size=6, grad_clip=0.0, device="cpu", seed=3)
    stream = fixed_batch()
    trainer = Trainer(cfg, TRM(mcfg), stream)
    rng_state = trainer.rng.get_state()
    graded = trainer._graded_steps(mcfg.N_sup)
    trainer.rng.set_state(rng_state)  # the train step below draws the same steps
    assert graded == ([1, 2, 3, 4] if supervision == "unrolled" else [1, 3])  # seed 3 draws step 3
    reference = TRM(mcfg)
    reference.load_state_dict(trainer.model.state_dict())
    params = dict(reference.named_parameters())
    batch = {k: torch.as_tensor(v) for k, v in stream.draw(6).items()}

    y, z = reference.initial_state(6)
    step_losses, step_grads = [], []
    for step in range(1, graded[-1] + 1):
        y, z, logits, halt_logit = reference.step(batch["tokens"], y, z)
        if step in graded:
            loss, _, _ = trainer._loss(batch, y, logits, halt_logit)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            step_losses.append(loss.item())
            step_grads.append(dict(zip(params, grads, strict=True)))
        y, z = y.detach(), z.detach()

    stats = trainer.train_step(None)
    assert stats["loss"] == pytest.approx(float(np.mean(step_losses)), rel=1e-5)
    head_grads = [g["head.weight"] for g in step_grads]
    assert all(g.abs().sum() > 0 for g in head_grads)  # every graded step's answer contributes a gradient
    if len(head_grads) > 1:
        assert not torch.allclose(head_grads[0], head_grads[-1])  # and they differ: each step is its own answer
    for name, p in trainer.model.named_parameters():
        per_step = [g[name] for g in step_grads if g[name] is not None]
        expected = torch.stack(per_step).sum(0) / len(graded)
        torch.testing.assert_close(p.grad, expected, rtol=1e-4, atol=1e-6)


def test_sampled_supervision_grades_the_first_step_and_in_time_every_step(tmp_path: Path) -> None:
    cfg = TrainConfig(name="s", task="text", data="d", out_dir=str(tmp_path), supervision="sampled", device="cpu")
    trainer = Trainer(cfg, TRM(text_config(N_sup=4)), fixed_batch())
    draws = [trainer._graded_steps(4) for _ in range(200)]
    assert all(d[0] == 1 and len(d) <= 2 for d in draws)
    assert {d[-1] for d in draws} == {1, 2, 3, 4}


def test_unroll_from_step_grades_the_first_step_until_then(tmp_path: Path) -> None:
    """Before `unroll_from_step` an optimizer step runs and trains step 1 alone; from it on, every step."""
    torch.manual_seed(0)
    cfg = TrainConfig(name="c", task="text", data="d", out_dir=str(tmp_path), supervision="unrolled",
                      unroll_from_step=2, batch_size=6, device="cpu")
    trainer = Trainer(cfg, TRM(text_config(state_carry="slots", N_sup=4)), fixed_batch())
    assert [trainer.train_step(None)["halt_steps"] for _ in range(4)] == [1.0, 1.0, 4.0, 4.0]
    with pytest.raises(ValueError, match="unroll_from_step is for supervision: unrolled or sampled"):
        TrainConfig(name="c", task="text", data="d", unroll_from_step=2)
    with pytest.raises(ValueError, match="must lie between 0 and max_steps - 1"):
        TrainConfig(name="c", task="text", data="d", supervision="unrolled", unroll_from_step=10, max_steps=10)


def test_one_step_training_trims_and_trains_as_the_carry_would(tmp_path: Path) -> None:
    """With N_sup 1 the carry refills every slot each step: fit runs the trimmed fresh-batch step instead,
    and three optimizer steps leave the same weights as three steps of the full-length carry."""
    torch.manual_seed(0)
    stream = fixed_batch(used=6)  # every row ends by position 6: the trimmed batch is half as long
    cfg = TrainConfig(name="o", task="text", data="d", out_dir=str(tmp_path), batch_size=6, device="cpu")
    model = TRM(text_config(N_sup=1))
    trimmed, carried = Trainer(cfg, copy.deepcopy(model), stream), Trainer(cfg, copy.deepcopy(model), stream)
    carry = carried._empty_carry()
    for _ in range(3):
        trimmed.train_step(None)
        carried.train_step(carry)
    for (name, a), b in zip(trimmed.model.named_parameters(), carried.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert not trimmed.carries_state
    assert Trainer(cfg, TRM(text_config(N_sup=2)), stream).carries_state


def test_unrolled_fit_makes_every_step_an_answer(keyword_data: tuple[Path, Path], tmp_path: Path) -> None:
    """End to end: a multi-step bundle trained unrolled with slot carry answers right at every step."""
    train, test = keyword_data
    code = main([
        "fit", "--task", "text", "--data", str(train), "--test", str(test), "--name", "steps",
        "--out", str(tmp_path / "bundles"), "--run-dir", str(tmp_path / "runs"), "--max-steps", "100",
        "--batch-size", "32", "--threads", "1", *TINY_MODEL, "--set", "model.T=1", "--set", "model.N_sup=3",
        "--set", "supervision=unrolled", "--set", "model.state_carry=slots",
    ])
    assert code == 0
    manifest = json.loads((tmp_path / "bundles" / "steps" / "manifest.json").read_text())
    evaluation = json.loads((tmp_path / "bundles" / "steps" / "evaluation.json").read_text())
    anytime = evaluation["results"]["test"]["anytime_accuracy"]
    assert len(anytime) == 3 and min(anytime) >= 0.95
    curve = evaluation["results"]["test"]["halting_curve"]
    assert min(p["mean_steps"] for p in curve) >= 1.0 and max(p["mean_steps"] for p in curve) <= 3.0
    report = (tmp_path / "bundles" / "steps" / "REPORT.md").read_text()
    assert "Accuracy against mean steps as the halting threshold sweeps" in report
    assert manifest["training"]["model_config"]["state_carry"] == "slots"
    parity = evaluation["parity"]  # the exported ONNX step drops the token rows the same way
    assert parity["final_agreement"] == 1.0 and parity["step_max_abs_diff"] < 1e-4
    assert parity["trimmed_step_max_abs_diff"] < 1e-4
