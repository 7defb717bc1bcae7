"""Resuming a run: the data stream goes on where it stopped, and a checkpoint of other data is not resumed."""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_trainer_multistep import fixed_batch, text_config

import trainer.checkpoint_file
from trainer.checkpoint_file import NoRoomForCheckpoint
from trainer.config import TrainConfig
from trainer.data.files import data_hashes
from trainer.data.sudoku import GridSplit
from trainer.export import int8_decision
from trainer.fit import from_checkpoint
from trainer.model import TRM
from trainer.sequence.train import SequenceTrainConfig, SequenceTrainer
from trainer.tasks import SudokuStream, TextStream
from trainer.testing import random_sequence_model
from trainer.train import Trainer


def _through_a_checkpoint(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # as `checkpoint_file.read_checkpoint` reads them


def test_a_restored_text_stream_draws_what_the_uninterrupted_one_would() -> None:
    tokens, targets = np.arange(10)[:, None].repeat(3, axis=1), np.arange(10)
    uninterrupted, interrupted = TextStream(tokens, targets, seed=0), TextStream(tokens, targets, seed=0)
    for stream in (uninterrupted, interrupted):
        stream.draw(3), stream.draw(3)
    resumed = TextStream(tokens, targets, seed=0)
    resumed.restore(_through_a_checkpoint(interrupted.state()))
    expected = [uninterrupted.draw(3)["targets"] for _ in range(5)]  # across the end of the first epoch
    assert all(np.array_equal(resumed.draw(3)["targets"], batch) for batch in expected)


def test_a_restored_sudoku_stream_draws_what_the_uninterrupted_one_would() -> None:
    digits = "953168742862734951417952836746893125281645397395271468138529674574386219629417583"
    solution = np.array([int(c) for c in digits])
    split = GridSplit(np.where(np.arange(81) % 3 == 0, solution, 0)[None].astype(np.uint8).repeat(4, axis=0),
                      solution[None].astype(np.uint8).repeat(4, axis=0))
    uninterrupted, interrupted = (SudokuStream(split, 0, 30, 50, 0.1) for _ in range(2))
    uninterrupted.draw(2), interrupted.draw(2)
    resumed = SudokuStream(split, 0, 30, 50, 0.1)
    resumed.restore(_through_a_checkpoint(interrupted.state()))
    assert np.array_equal(resumed.draw(2)["tokens"], uninterrupted.draw(2)["tokens"])


def test_a_checkpoint_of_other_data_or_another_model_is_not_resumed(tmp_path: Path) -> None:
    cfg = TrainConfig(name="r", task="text", data="d", out_dir=str(tmp_path), device="cpu")
    trained = Trainer(cfg, TRM(text_config()), fixed_batch(), data_sha256={"train.csv": "aa"})
    trained.step = 7
    trained.save_checkpoint()

    def resumed_step(data: dict[str, str], seed: int = cfg.seed, **model: int) -> int | None:
        again = Trainer(dataclasses.replace(cfg, seed=seed), TRM(text_config(**model)), fixed_batch(), data_sha256=data)
        return again.step if again.load_checkpoint() else None

    assert resumed_step({"train.csv": "aa"}) == 7
    assert resumed_step({"train.csv": "bb"}) is None  # the file was edited: start over
    assert resumed_step({"train.csv": "aa"}, num_outputs=9) is None  # other labels: another model
    assert resumed_step({"train.csv": "aa"}, seed=cfg.seed + 1) is None  # other held-out rows: another run


def test_int8_ships_when_it_loses_exactly_half_a_point() -> None:
    def accuracy(value: float) -> dict:
        return {"test": {"accuracy": value}}

    assert int8_decision(accuracy(0.93), accuracy(0.925), bundle_bytes=1)[1]
    assert not int8_decision(accuracy(0.93), accuracy(0.9249), bundle_bytes=1)[1]


def test_a_test_file_named_as_the_training_file_is_hashed_too(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    (tmp_path / "a" / "data.csv").write_text("text,label\nx,1\n")
    (tmp_path / "b" / "data.csv").write_text("text,label\ny,2\n")
    hashes = data_hashes(tmp_path / "a" / "data.csv", tmp_path / "b" / "data.csv")
    assert set(hashes) == {"data.csv", "test/data.csv"} and len(set(hashes.values())) == 2


def _text_trainer(tmp_path: Path) -> Trainer:
    cfg = TrainConfig(name="r", task="text", data="d", out_dir=str(tmp_path), device="cpu")
    return Trainer(cfg, TRM(text_config()), fixed_batch(), data_sha256={"train.csv": "aa"})


def _sequence_trainer(tmp_path: Path) -> SequenceTrainer:
    torch.manual_seed(0)
    model = random_sequence_model(0, max_source_len=64, max_target_len=16, n=1, T=1, N_sup=2, prefix_steps=1)
    return SequenceTrainer(SequenceTrainConfig(run_dir=tmp_path / "sequence"), model, lambda _step: iter(()),
                           data_sha256={"pairs.csv": "aa"}, log=lambda _: None)


TRAINERS = [pytest.param(_text_trainer, id="text"), pytest.param(_sequence_trainer, id="sequence")]


@pytest.mark.parametrize("make", TRAINERS)
def test_a_checkpoint_the_disk_cannot_take_leaves_the_last_one_and_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make
) -> None:
    """QA: on a full disk torch said "unexpected pos 6094016 vs 6093904", in a traceback, and left checkpoint.tmp
    filling the disk (the sequence trainer still did so after the text trainer's fix)."""
    trained = make(tmp_path)
    trained.step = 7
    trained.save_checkpoint()

    def full_disk(state: dict, file) -> None:
        file.write(b"part of a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 6094016 vs 6093904")

    monkeypatch.setattr(torch, "save", full_disk)
    trained.step = 9
    with pytest.raises(OSError, match=r"cannot write the checkpoint .*checkpoint\.tmp \(\[enforce fail .* MB free "
                                      r"there\)"):
        trained.save_checkpoint()
    assert not trained.checkpoint_path.with_suffix(".tmp").exists()
    monkeypatch.undo()
    again = make(tmp_path)
    assert again.load_checkpoint() and again.step == 7


@pytest.mark.parametrize("make", TRAINERS)
def test_a_link_planted_at_the_temporary_checkpoint_is_not_written_through(tmp_path: Path, make) -> None:
    """Probe: a symbolic link planted at a shared run folder's checkpoint.tmp made the fit write its checkpoint over
    the link's target, and checkpoint.pt became that link."""
    trained = make(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("IMPORTANT DATA")
    trained.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    trained.checkpoint_path.with_suffix(".tmp").symlink_to(victim)
    trained.step = 7
    trained.save_checkpoint()
    assert victim.read_text() == "IMPORTANT DATA"
    assert not trained.checkpoint_path.is_symlink() and make(tmp_path).load_checkpoint()


@pytest.mark.parametrize("damage", [b"", b"not a checkpoint", "half"], ids=["emptied", "another file", "cut short"])
@pytest.mark.parametrize("make", TRAINERS)
def test_a_damaged_checkpoint_is_named_with_the_flag_that_starts_over(tmp_path: Path, make, damage) -> None:
    """QA: a checkpoint cut short (a copy, a full disk outside the trainer) or emptied ended the fit in a traceback
    ("PytorchStreamReader failed reading zip archive", "Ran out of input") naming no way on."""
    trained = make(tmp_path)
    trained.step = 7
    trained.save_checkpoint()
    whole = trained.checkpoint_path.read_bytes()
    trained.checkpoint_path.write_bytes(whole[: len(whole) // 2] if damage == "half" else damage)
    with pytest.raises(ValueError, match=r"the checkpoint .*checkpoint\.pt is damaged \(.*\): --restart trains anew"):
        make(tmp_path).load_checkpoint()


class _RunsCode:
    """What a checkpoint planted in a shared run folder could hold: unpickling it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("make", TRAINERS)
def test_a_checkpoint_that_would_run_code_is_refused_unread(tmp_path: Path, make) -> None:
    """Probe: checkpoints were read with torch.load(weights_only=False), so a checkpoint that another user put in a
    run folder, or gave to `export --checkpoint`, ran its code as the user who resumed or exported it."""
    trained = make(tmp_path)
    trained.step = 7
    trained.save_checkpoint()
    state = torch.load(trained.checkpoint_path, weights_only=True)  # the trainers write tensors and numbers only
    marker = tmp_path / "ran"
    torch.save({**state, "history": [_RunsCode(marker)]}, trained.checkpoint_path)
    with pytest.raises(ValueError, match=r"the checkpoint .*checkpoint\.pt holds Python objects besides tensors and "
                                         r"numbers \(posix\.system\), which reading could run as code: .* --restart"):
        make(tmp_path).load_checkpoint()
    with pytest.raises(ValueError, match=r"^--checkpoint .*: not a training checkpoint \(it holds Python objects "
                                         r"besides tensors and numbers \(posix\.system\), which reading could run as "
                                         r"code: .*\)$"):
        from_checkpoint(trained.checkpoint_path, {}, "", "")
    assert not marker.exists()


@pytest.mark.parametrize("make", TRAINERS)
def test_a_run_folder_without_room_for_a_checkpoint_is_told_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make
) -> None:
    """QA: a run folder too small for a checkpoint failed at the first save, after the data's preparation and the
    steps before it."""
    trained = make(tmp_path)
    full = shutil.disk_usage(tmp_path)._replace(free=1 << 10)
    monkeypatch.setattr(trainer.checkpoint_file.shutil, "disk_usage", lambda _path: full)
    with pytest.raises(NoRoomForCheckpoint, match=r"^the run folder .* has 0\.0 MB free and this run's checkpoint "
                                                  r"takes at least 0\.\d MB: .* --run-dir$"):
        trained.fit(resume=False)
    assert trained.step == 0 and not trained.checkpoint_path.exists()


def test_the_room_a_run_folder_is_asked_for_is_less_than_a_real_checkpoint(tmp_path: Path) -> None:
    """The check may refuse only folders that a checkpoint cannot fit: what it asks is at most the real size."""
    trained = _text_trainer(tmp_path)
    trained.cfg = dataclasses.replace(trained.cfg, max_steps=2, batch_size=6)
    trained.fit(resume=False)
    free = trained.checkpoint_path.stat().st_size
    disk = shutil.disk_usage(tmp_path)._replace(free=free)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer.checkpoint_file.shutil, "disk_usage", lambda _path: disk)
        trainer.checkpoint_file.check_room(trained.checkpoint_path, trained.model)  # no NoRoomForCheckpoint
        patch.setattr(trainer.checkpoint_file.shutil, "disk_usage", lambda _path: disk._replace(free=free // 5))
        with pytest.raises(NoRoomForCheckpoint):
            trainer.checkpoint_file.check_room(trained.checkpoint_path, trained.model)
