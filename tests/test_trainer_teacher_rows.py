"""MiniLM teaching part of a large file (`teacher.max_rows`): which rows it reads, the loss of the rest, the plan."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_trainer_multistep import text_config

from trainer import teacher as teacher_lib
from trainer.config import TeacherConfig, TrainConfig
from trainer.model import TRM
from trainer.prepare import prepare_text
from trainer.presets import FILE_READS_S_PER_ROW, SHORT_TEXT, DataProfile, size_run
from trainer.tasks import TextStream
from trainer.train import Trainer

pytestmark = pytest.mark.skipif(not teacher_lib.available(), reason="the MiniLM teacher is not installed")

ROWS, TAUGHT = 12, 6


def _batch(rows: int, classes: int, dim: int, seed: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    soft = rng.dirichlet(np.ones(classes), rows).astype(np.float32)
    return {"tokens": torch.as_tensor(rng.integers(2, 50, (rows, 12))),
            "targets": torch.as_tensor(rng.integers(0, 5, rows)), "soft_targets": torch.as_tensor(soft),
            "teacher_embeddings": torch.as_tensor(rng.normal(size=(rows, dim)).astype(np.float32))}


def test_untaught_rows_train_on_their_labels_and_taught_rows_weigh_as_in_a_fully_taught_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    mcfg = text_config(N_sup=1)
    teacher = TeacherConfig(soft_label_weight=1.0, temperature=2.0, embedding_weight=1.0)
    cfg = TrainConfig(name="t", task="text", data="d", out_dir=str(tmp_path), device="cpu", teacher=teacher)
    stream = TextStream(np.zeros((ROWS, 12), dtype=np.int64), np.zeros(ROWS, dtype=np.int64), seed=0)
    trainer = Trainer(cfg, TRM(mcfg), stream, embedding_projection=torch.nn.Linear(mcfg.hidden_size, 8))
    batch = _batch(ROWS, mcfg.num_outputs, 8, seed=1)
    y, z = trainer.model.initial_state(ROWS)
    y, z, logits, halt_logit = trainer.model.step(batch["tokens"], y, z)

    def loss(b: dict[str, torch.Tensor]) -> float:
        return trainer._loss(b, y, logits, halt_logit)[0].item()

    taught = torch.tensor([1.0] * TAUGHT + [0.0] * (ROWS - TAUGHT))
    masked = {**batch, "taught": taught}
    other_targets = _batch(ROWS, mcfg.num_outputs, 8, seed=2)
    changed_untaught = {**masked, **{key: torch.where(taught.bool()[:, None], masked[key], other_targets[key])
                                     for key in ("soft_targets", "teacher_embeddings")}}
    assert loss(changed_untaught) == pytest.approx(loss(masked), rel=1e-6)  # their teacher targets are not read
    assert loss(masked) != pytest.approx(loss(batch), rel=1e-3)
    # where the untaught rows' targets are the model's own answer (no teacher loss in any case), the masked
    # loss is the loss of the whole batch: each taught row weighs as it would with every row taught
    with torch.no_grad():
        own_answer = F.softmax(logits.float() / teacher.temperature, -1)
        own_embedding = trainer.embedding_projection(trainer.model.answer_features(y))
    agreeing = {**batch, "soft_targets": torch.where(taught.bool()[:, None], batch["soft_targets"], own_answer),
                "teacher_embeddings": torch.where(taught.bool()[:, None], batch["teacher_embeddings"], own_embedding)}
    assert loss({**agreeing, "taught": taught}) == pytest.approx(loss(agreeing), rel=1e-5)


def test_the_teacher_reads_a_seeded_sample_of_max_rows_and_the_stream_marks_it(tmp_path: Path) -> None:
    texts = [f"please {verb} the {thing} now" for verb in ("open", "close", "paint") for thing in ("door", "window",
                                                                                                "gate", "box")]
    labels = [text.split()[1] for text in texts]
    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in zip(texts * 3, labels * 3, strict=True)))
    (tmp_path / "test.csv").write_text(data.read_text())
    teacher = TeacherConfig(soft_label_weight=1.0, embedding_weight=1.0, max_rows=10)
    cfg = TrainConfig(name="t", task="text", data=str(data), test_data=str(tmp_path / "test.csv"),
                      out_dir=str(tmp_path), device="cpu", teacher=teacher, vocab_size=64, max_tokens=8)
    stream = prepare_text(cfg).stream
    assert stream.taught is not None and stream.taught.sum() == 10 and len(stream.taught) > 10
    read = stream.taught.astype(bool)
    assert np.all(stream.teacher_embeddings[~read] == 0) and np.all(stream.soft_targets[~read] == 1 / 3)
    norms = np.linalg.norm(stream.teacher_embeddings[read], axis=1)
    assert np.allclose(norms, 1.0, atol=1e-2)  # MiniLM's normalised sentence embeddings
    assert np.allclose(stream.soft_targets[read].sum(1), 1.0, atol=1e-5)
    whole = prepare_text(dataclasses.replace(cfg, teacher=dataclasses.replace(teacher, max_rows=0))).stream
    assert whole.taught is None and np.all(np.linalg.norm(whole.teacher_embeddings, axis=1) > 0.99)
    # the rows read carry the sentence embeddings the teacher gives them when it reads every row
    assert np.allclose(stream.teacher_embeddings[read], whole.teacher_embeddings[read], atol=1e-3)


def test_the_plan_counts_the_teachers_time_by_the_tokens_it_reads_up_to_max_rows() -> None:
    def outside_s(rows: int, median_tokens: float) -> float:
        profile = DataProfile(kind="text", rows=rows, labels=20, min_per_label=rows // 40, median_per_label=rows // 20,
                              median_tokens=median_tokens, p98_tokens=40, distinct_words=9_000, test_rows=1_000)
        return size_run(SHORT_TEXT, profile).overhead_minutes * 60

    per_token = SHORT_TEXT.overhead.per_1k_taught_tokens_s / 1000
    cap = SHORT_TEXT.settings["teacher"]["max_rows"]
    rows = 10_000  # all taught (1,000 held out for validation; the test file is apart)
    assert outside_s(rows, 20) - outside_s(rows, 10) == pytest.approx(per_token * 9_000 * 10)
    beyond = 4 * cap  # past the cap, a row costs the rest of preparing only
    assert outside_s(beyond, 20) - outside_s(beyond, 10) == pytest.approx(per_token * cap * 10)
    assert outside_s(beyond + 1_000, 20) - outside_s(beyond, 20) == pytest.approx(
        SHORT_TEXT.overhead.per_1k_rows_s + 1_000 * FILE_READS_S_PER_ROW)  # and reading them
