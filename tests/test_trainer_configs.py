"""The shipped training configs: each loads into a valid model, and `make models` picks the right one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.config import load_config, parse_override
from trainer.dictation.fit import parse_args
from trainer.make_models import CONFIGS, DEFAULT_MODELS, config_path, train_dictation
from trainer.model import TRM, ModelConfig

CONFIG_FILES = sorted(CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIG_FILES, ids=[p.stem for p in CONFIG_FILES])
def test_shipped_config_builds_a_model(path: Path) -> None:
    cfg = load_config(path, {})
    grid = cfg.task == "grid"
    model = ModelConfig(task=cfg.task, vocab_size=10 if grid else cfg.vocab_size,
                        seq_len=81 if grid else cfg.max_tokens, num_outputs=10, **cfg.model)
    assert cfg.name in DEFAULT_MODELS
    assert model.state_shape[1] == model.hidden_size
    trm = TRM(model)
    tokens = torch.ones((2, model.seq_len), dtype=torch.long)
    state = torch.zeros((2, *model.state_shape))
    with torch.no_grad():
        y, z, logits, halt_logit = trm.step(tokens, state, state)
    assert y.shape == z.shape == state.shape and halt_logit.shape == (2,)
    assert logits.shape == ((2, model.num_outputs) if cfg.task == "text" else (2, 81, 10))
    assert torch.isfinite(logits).all()


def test_make_models_uses_the_cpu_config_only_without_a_gpu() -> None:
    assert config_path("sudoku", cuda=False).name == "sudoku-cpu.yaml"
    assert config_path("sudoku", cuda=True).name == "sudoku.yaml"
    assert config_path("routing-20ng", cuda=False).name == "routing-20ng.yaml"  # no CPU variant


def test_make_models_trains_code_dictation_in_three_runs_each_continuing_the_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []

    def fit(argv: list[str]) -> dict:
        calls.append(argv)
        return {"training": {"steps": parse_args(argv).max_steps if calls[1:] else 6918}}  # the steps trained

    monkeypatch.setattr("trainer.make_models.dictation_fit", fit)
    (tmp_path / "code-dictation").mkdir()
    (tmp_path / "code-dictation" / "checkpoint.pt").write_text("an earlier run's")
    train_dictation(tmp_path, tmp_path / "bundle")
    first, second, third = (parse_args(argv) for argv in calls)
    assert first.run_dir == tmp_path / "code-dictation-base" and first.bundle_dir is None
    assert second.run_dir == tmp_path / "code-dictation-1" and second.continue_from == first.run_dir
    assert (second.max_steps, second.minutes, second.short_name_share) == (7918, 0.0, 0.03)
    assert second.bundle_dir is None and second.train_max_chars is None
    assert third.run_dir == tmp_path / "code-dictation" and third.continue_from == second.run_dir
    assert (third.max_steps, third.minutes, third.short_name_share, third.train_max_chars) == (9918, 0.0, 0.03, 120)
    assert third.max_chars == 40 and third.bundle_dir == tmp_path / "bundle"
    assert not (tmp_path / "code-dictation").exists()  # started afresh, not resumed from an earlier run


@pytest.mark.parametrize(("setting", "expected"), [
    ("description=Tickets: five queues", ("description", "Tickets: five queues")),  # YAML: a mapping
    ("description=#1 ticket router", ("description", "#1 ticket router")),  # YAML: a comment, so null
    ("version=2.0", ("version", "2.0")),  # YAML: the float 2.0, refused as "must be a str"
    ("max_steps=100", ("max_steps", 100)),
    ("model.hidden_size=128", ("model.hidden_size", 128)),
    ("linear_reader=false", ("linear_reader", False)),
])
def test_a_text_setting_is_taken_as_given_and_others_as_yaml(setting: str, expected: tuple) -> None:
    """QA: REPORT.md's advice `--set description="..."` failed on "Support tickets: routes them to five queues"
    (a YAML mapping: "description must be a str") and dropped "#1 ticket router" (a YAML comment)."""
    assert parse_override(setting) == expected
