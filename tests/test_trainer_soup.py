"""Weight soups: ingredients share the seed and the model, their EMA weights are averaged into the bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from trainer_support import TINY_MODEL

from trainer.cli import main
from trainer.config import TrainConfig
from trainer.export import torch_model_from_bundle
from trainer.fit import build_model, build_trainer
from trainer.prepare import prepare
from trainer.soup import average_state_dicts, ingredient_configs


def test_average_takes_the_mean_of_weights_and_keeps_equal_integer_tensors() -> None:
    first = {"w": torch.tensor([1.0, 2.0]), "codes": torch.tensor([3, 4], dtype=torch.int8)}
    second = {"w": torch.tensor([3.0, 6.0]), "codes": torch.tensor([3, 4], dtype=torch.int8)}
    soup = average_state_dicts([first, second])
    assert torch.equal(soup["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(soup["codes"], first["codes"])


def test_average_refuses_what_cannot_be_averaged() -> None:
    first = {"codes": torch.tensor([3, 4], dtype=torch.int8)}
    with pytest.raises(ValueError, match="differ in codes"):
        average_state_dicts([first, {"codes": torch.tensor([3, 5], dtype=torch.int8)}])
    with pytest.raises(ValueError, match="different parameters"):
        average_state_dicts([first, {"other": torch.tensor([3, 4], dtype=torch.int8)}])


def test_ingredients_apply_their_overrides_and_checkpoint_apart() -> None:
    cfg = TrainConfig.from_dict(
        {
            "name": "docs",
            "task": "text",
            "data": "x.csv",
            "out_dir": "runs",
            "token_dropout": 0.3,
            "soup": [{}, {"token_dropout": 0.5}, {"teacher.soft_labels": "tfidf_svm", "stream_seed": 3}],
        }
    )
    first, second, third = ingredient_configs(cfg)
    assert (first.token_dropout, second.token_dropout, third.token_dropout) == (0.3, 0.5, 0.3)
    assert third.teacher.soft_labels == "tfidf_svm" and first.teacher.soft_labels == "minilm"
    assert (first.stream_rng_seed, third.stream_rng_seed, third.seed) == (cfg.seed, 3, cfg.seed)
    assert len({first.run_dir, second.run_dir, third.run_dir}) == 3
    assert all(c.run_dir.parent == cfg.run_dir and not c.soup and c.seed == cfg.seed for c in (first, second))


@pytest.mark.parametrize("key", ["seed", "model.hidden_size", "vocab_size", "soup_branch_step"])
def test_an_ingredient_may_not_change_the_initialisation_or_the_model(key: str) -> None:
    cfg = TrainConfig.from_dict({"name": "docs", "task": "text", "data": "x.csv", "soup": [{}, {key: 7}]})
    with pytest.raises(ValueError, match=f"ingredient 2 overrides {key}"):
        ingredient_configs(cfg)


def test_stream_seed_changes_the_data_order_not_the_initialisation(keyword_data: tuple[Path, Path]) -> None:
    train, _ = keyword_data
    base = {"name": "keywords", "task": "text", "data": str(train), "max_tokens": 8, "vocab_size": 64,
            "model": {"hidden_size": 32, "num_heads": 2}, "token_dropout": 0.2}
    draws, weights = [], []
    for stream_seed in (None, 0, 1):
        cfg = TrainConfig.from_dict({**base, "stream_seed": stream_seed})
        prepared = prepare(cfg)
        model, _ = build_model(cfg, prepared)
        draws.append(prepared.stream.draw(64)["tokens"])
        weights.append(model.state_dict())
    assert np.array_equal(draws[0], draws[1])  # no stream seed: the stream follows `seed`
    assert not np.array_equal(draws[0], draws[2])
    assert all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_fit_trains_each_ingredient_like_a_plain_fit_and_ships_their_average(
    keyword_data: tuple[Path, Path], tmp_path: Path
) -> None:
    train, test = keyword_data
    common = [
        "fit",
        "--task",
        "text",
        "--data",
        str(train),
        "--test",
        str(test),
        "--name",
        "keywords",
        "--max-steps",
        "120",
        "--batch-size",
        "32",
        "--threads",
        "1",
        *TINY_MODEL,
        "--set", "model.embedding_storage=fp32",  # the soup's exact mean below, not the stored int8 table's
    ]
    assert main([*common, "--out", str(tmp_path / "plain"), "--run-dir", str(tmp_path / "plain-runs")]) == 0
    assert (
        main(
            [
                *common,
                "--out",
                str(tmp_path / "soup"),
                "--run-dir",
                str(tmp_path / "soup-runs"),
                "--set",
                "soup=[{}, {token_dropout: 0.2}]",
                "--set",
                "eval_every=60",
            ]
        )
        == 0
    )

    def ema(run: Path) -> dict[str, torch.Tensor]:
        return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["ema"]

    plain = ema(tmp_path / "plain-runs" / "keywords")
    first, second = (ema(tmp_path / "soup-runs" / "keywords" / f"keywords-ingredient-{i}") for i in (1, 2))
    # same seed and settings: the same model, up to the last bits of the teacher's BLAS-threaded regression
    assert all(torch.allclose(plain[k], first[k], rtol=0, atol=1e-5) for k in plain)
    assert not torch.allclose(first["embed.tokens.weight"], second["embed.tokens.weight"], rtol=0, atol=1e-3)

    bundle = tmp_path / "soup" / "keywords"
    model, manifest = torch_model_from_bundle(bundle)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, (first[key] + second[key]) / 2, atol=1e-6, rtol=1e-5)
    assert manifest.metrics["test_accuracy"] >= 0.95
    assert manifest.require_training().optimizer_steps == 240
    report = (bundle / "REPORT.md").read_text()
    assert "weight soup: the mean of 2 models trained from the same initial weights" in report
    assert manifest.require_training().config["keep_best"] is False  # a soup leaves the preset's choice of weights
    evaluation = json.loads((bundle / "evaluation.json").read_text())
    assert [(e["ingredient"], e["step"]) for e in evaluation["training_history"]] == [
        (1, 60),
        (1, 120),
        (2, 60),
        (2, 120),
    ]


def test_branched_ingredients_start_from_the_shared_trunk_with_their_own_stream(
    keyword_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = keyword_data
    runs = tmp_path / "runs"
    args = [
        "fit", "--task", "text", "--data", str(train), "--test", str(test), "--name", "keywords",
        "--max-steps", "120", "--batch-size", "32", "--threads", "1", *TINY_MODEL, "--out", str(tmp_path / "out"),
        "--run-dir", str(runs), "--set", "soup=[{}, {token_dropout: 0.2, stream_seed: 1}]", "--set", "eval_every=60",
    ]
    assert main([*args, "--set", "soup_branch_step=60"]) == 0
    trunk_checkpoint = runs / "keywords" / "keywords-trunk" / "checkpoint.pt"
    assert "branched keywords-ingredient-2 from step 60" in capsys.readouterr().out
    trunk = torch.load(trunk_checkpoint, map_location="cpu", weights_only=True)
    assert trunk["step"] == 60

    # what a branch takes from the trunk: weights, EMA, optimizer and step, but not the trunk's stream
    manifest = json.loads((tmp_path / "out" / "keywords" / "manifest.json").read_text())
    cfg = ingredient_configs(TrainConfig.from_dict(manifest["training"]["config"]))[1]  # as the fit built it
    prepared = prepare(cfg)
    branch = build_trainer(cfg, prepared)
    fresh_draw = prepare(cfg).stream.draw(32)["tokens"]
    assert branch.load_checkpoint(trunk_checkpoint, branch=True) and branch.step == 60
    assert all(torch.equal(value, trunk["ema"][key]) for key, value in branch.ema.model.state_dict().items())
    assert np.array_equal(branch.stream.draw(32)["tokens"], fresh_draw)

    assert manifest["training"]["optimizer_steps"] == 60 + 2 * 60  # the trunk once, then each branch
    assert manifest["metrics"]["test_accuracy"] >= 0.95
    evaluation = json.loads((tmp_path / "out" / "keywords" / "evaluation.json").read_text())
    assert [(e["ingredient"], e["step"]) for e in evaluation["training_history"]] == [(0, 60), (1, 120), (2, 120)]
    report = (tmp_path / "out" / "keywords" / "REPORT.md").read_text()
    assert "the mean of 2 models branched at step 60 from one shared trunk" in report
    assert "their sums, the trunk's counted once" in report

    # a trunk trained to another step is not silently reused
    assert main([*args, "--set", "soup_branch_step=30"]) == 2
    assert "is at step 60, not soup_branch_step 30" in capsys.readouterr().err
    assert main([*args, "--set", "soup_branch_step=120"]) == 2
    assert "must lie between 1 and max_steps - 1" in capsys.readouterr().err
    assert main([*args, "--set", "soup=[]", "--set", "soup_branch_step=60"]) == 2
    assert "soup_branch_step is set but soup is empty" in capsys.readouterr().err
