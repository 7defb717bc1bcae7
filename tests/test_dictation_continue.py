"""`trainer.dictation.fit --continue-from RUN`: a run that starts from a finished run's checkpoint and trains on with
its own example shares; REPORT.md records both commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from trainer.dictation.corpus import CodeLine, Corpus
from trainer.dictation.export import continued_from_lines, runs_of
from trainer.dictation.fit import finished_run, main, parse_args, start_from, training_lines
from trainer.sequence.batches import Batch, to_batch
from trainer.sequence.train import SequenceTrainConfig, SequenceTrainer
from trainer.testing import random_sequence_model

PAIRS = [("x equals one", "x = 1"), ("return none", "return None"), ("pass", "pass")]


def _trainer(run_dir: Path, max_steps: int, seed: int = 0, minutes: float = 0.0) -> SequenceTrainer:
    def batches(_step: int) -> Iterator[Batch]:
        while True:
            yield to_batch(PAIRS)

    model = random_sequence_model(0, max_source_len=64, max_target_len=16, n=1, T=1, N_sup=2, prefix_steps=1)
    config = SequenceTrainConfig(run_dir=run_dir, batch_size=len(PAIRS), max_steps=max_steps, warmup_steps=1,
                                 log_every=100, seed=seed, max_minutes=minutes)
    return SequenceTrainer(config, model, batches, log=lambda _: None)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SequenceTrainer]:
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("parent")
    trainer = _trainer(run_dir, max_steps=3)
    trainer.fit()
    args = {"run_dir": str(run_dir), "bundle_dir": "None", "continue_from": "None", "max_steps": "3", "seed": "0"}
    (run_dir / "metrics.json").write_text(json.dumps({"args": args, "training": {"steps": 3}, "wall_time_s": 90.0}))
    return run_dir, trainer


def test_a_continued_run_starts_from_the_finished_runs_weights_and_step(
    finished: tuple[Path, SequenceTrainer], tmp_path: Path
) -> None:
    parent_dir, parent = finished
    trainer = _trainer(tmp_path / "child", max_steps=5)
    start_from(trainer, parent_dir)
    assert trainer.step == 3 and len(trainer.history) == len(parent.history)
    assert all(torch.equal(value, parent.ema.model.state_dict()[name])
               for name, value in trainer.ema.model.state_dict().items())
    trainer.fit()
    assert trainer.step == 5 and (tmp_path / "child" / "checkpoint.pt").is_file()


def test_the_report_names_the_command_of_the_run_it_continued(finished: tuple[Path, SequenceTrainer]) -> None:
    parent_dir, _ = finished
    parent = finished_run(parent_dir)  # the values a run was not given (None) are left out of its command
    assert parent == {"command": f"python -m trainer.dictation.fit --run-dir {parent_dir} --max-steps 3 --seed 0",
                      "steps": 3, "wall_time_s": 90.0}
    assert continued_from_lines({"continued_from": parent}) == [
        f"- Continued from the run of `{parent['command']}` (3 optimizer steps, 1.5 min in all), whose checkpoint "
        "it started from."]
    assert continued_from_lines({}) == []
    grandparent = {"command": "python -m trainer.dictation.fit --run-dir first", "steps": 2, "wall_time_s": 60.0}
    chain = {"continued_from": {**parent, "continued_from": grandparent}}
    assert continued_from_lines(chain)[1] == (f"- That run continued from the run of `{grandparent['command']}` (2 "
                                              "optimizer steps, 1.0 min in all), whose checkpoint it started from.")
    assert runs_of(chain) == 3 and runs_of({}) == 1


@pytest.mark.parametrize(("max_steps", "seed", "minutes", "flag"), [
    (3, 0, 0.0, "give --max-steps above it"),
    (5, 1, 0.0, "other model flags or another --seed"),
    (5, 0, 1e-6, "give --minutes above that, or 0"),  # the finished run's minutes count towards --minutes
])
def test_a_run_that_cannot_continue_is_refused_with_the_flag_to_change(
    finished: tuple[Path, SequenceTrainer], tmp_path: Path, max_steps: int, seed: int, minutes: float, flag: str
) -> None:
    trainer = _trainer(tmp_path / "child", max_steps=max_steps, seed=seed, minutes=minutes)
    with pytest.raises(SystemExit, match=flag):
        start_from(trainer, finished[0])
    assert not trainer.checkpoint_path.exists()  # nothing left that a later run would resume


def test_a_run_cannot_continue_itself(finished: tuple[Path, SequenceTrainer]) -> None:
    with pytest.raises(SystemExit, match="this run's own folder: give another --run-dir"):
        main(["--run-dir", str(finished[0]), "--continue-from", str(finished[0] / ".")])


def test_only_a_finished_run_can_be_continued(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"no metrics\.json there"):
        finished_run(tmp_path)
    with pytest.raises(SystemExit, match=r"no checkpoint\.pt there"):
        start_from(_trainer(tmp_path / "child", max_steps=5), tmp_path)


def test_train_max_chars_chooses_the_training_lines_and_the_bar_keeps_max_chars() -> None:
    """A run continued on longer lines (--train-max-chars) than its bar's (--max-chars)."""
    lines = ["x = 1", "y = compute(a, b)", "z = some_function_name(first_argument, second_argument)"]
    corpus = Corpus({"train": [CodeLine("a.py", i, line, line) for i, line in enumerate(lines)], "val": [], "test": []},
                    seed=0)
    default = parse_args(["--run-dir", "run", "--max-chars", "20"])
    assert training_lines(corpus, default) == lines[:2]
    longer = parse_args(["--run-dir", "run", "--max-chars", "20", "--train-max-chars", "120"])
    assert training_lines(corpus, longer) == lines and longer.max_chars == 20


def test_a_run_continued_twice_records_both_runs_before_it(finished: tuple[Path, SequenceTrainer],
                                                           tmp_path: Path) -> None:
    parent_dir, _ = finished
    child = tmp_path / "child"
    child.mkdir()
    args = {"run_dir": str(child), "continue_from": str(parent_dir), "max_steps": "5", "seed": "0"}
    (child / "metrics.json").write_text(json.dumps({"args": args, "training": {"steps": 5}, "wall_time_s": 30.0,
                                                    "continued_from": finished_run(parent_dir)}))
    assert finished_run(child)["continued_from"] == finished_run(parent_dir)
