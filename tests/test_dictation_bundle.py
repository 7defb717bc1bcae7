"""A dictation training run becomes a bundle: scored on held-out lines, written through trm_bundle, and
loaded by the server's loader; its manifest and REPORT.md carry the run's figures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch

from trainer.dictation.corpus import CodeLine, Corpus
from trainer.dictation.evaluate import GENERATED_NUMBERS, bundle_scores
from trainer.dictation.export import VERSION, export_dictation_bundle
from trainer.dictation.unsure import with_unsure_flag
from trainer.dictation.verbalize import Verbalizer
from trainer.sequence.batches import Batch, to_batch
from trainer.sequence.bundle import sequence_model_from_bundle
from trainer.sequence.train import SequenceTrainConfig, SequenceTrainer
from trainer.testing import random_sequence_model
from trm_service.runtime.loader import LoadOptions, load_model
from trm_service.runtime.session import SessionSettings

LINES = ["x = 1", "return None", "import os", "def parse(path):", "y = x + 42", "print(name)", "pass",
         "for i in range(10):", "self.value = 3.5", "break", "result = compute_total(first_value, second_value)"]


def _corpus() -> Corpus:
    lines = [CodeLine("lib/example.py", number, text, text) for number, text in enumerate(LINES, start=1)]
    return Corpus({"train": lines[:6], "val": lines[6:8], "test": lines[4:]}, seed=0)


def test_a_run_becomes_a_bundle_with_its_figures(tmp_path: Path, monkeypatch) -> None:
    torch.set_num_threads(1)
    corpus, verbalizer = _corpus(), Verbalizer(0)
    run_dir = tmp_path / "run"
    pairs = [(verbalizer.speak(line), line) for line in corpus.texts("train")]

    def batches(_step: int) -> Iterator[Batch]:
        while True:
            yield to_batch(pairs)

    model = random_sequence_model(0, max_source_len=256, max_target_len=48, n=1, T=1, N_sup=3, prefix_steps=1)
    trainer = SequenceTrainer(SequenceTrainConfig(run_dir=run_dir, batch_size=len(pairs), max_steps=3,
                                                  warmup_steps=1, log_every=100), model, batches, log=lambda _: None)
    final = trainer.fit()
    report = bundle_scores(final, corpus, verbalizer, max_chars=40, max_source_chars=200, lines=4, seed=0,
                           calibration_lines=2)
    args = {"max_source_chars": 200, "max_chars": 40, "seed": 0, "minutes": 1.0}
    (run_dir / "metrics.json").write_text(json.dumps({
        "args": args, "training": {"steps": 3, "minutes": 0.1, "lines_seen": 18}, "history": [], **report}))

    bundle = export_dictation_bundle(run_dir, tmp_path / "code-dictation", wall_time_s=12.0)

    metrics = bundle.manifest.metrics
    assert metrics["test_exact_match"] == report["test_short"]["exact_match"]
    assert metrics["test_cer"] == report["test_short"]["cer"]
    assert metrics["numbers_alpha2digit_exact"] == report["numbers"]["alpha2digit"]
    names = report["names"]  # a sample of the test lines' names said alone, scored with the unsure flag
    assert names["count"] == 4 and metrics["names_exact"] == names["exact_match"]
    assert 0 <= names["wrong_not_unsure"] <= round(4 * (1 - names["exact_match"]))
    short_names = report["short_names"]  # every name of at most 3 characters of the test lines: i, x and y
    assert short_names["count"] == short_names["single_count"] == 3
    assert metrics["short_names_exact"] == short_names["exact_match"]
    generated = report["numbers_generated"]  # whole numbers of every size said alone
    assert generated["count"] == GENERATED_NUMBERS and metrics["numbers_generated_exact"] == generated["model"]
    assert 0 < generated["up_to_6_digits"]["count"] < GENERATED_NUMBERS
    assert [point["steps"] for point in report["fixed_steps"]] == [1, 2, 3]
    assert len(report["halting_curve"]) >= 5 and all(1 <= p["mean_steps"] <= 3 for p in report["halting_curve"])
    assert bundle.manifest.training.optimizer_steps == 3 and bundle.manifest.training.wall_time_s == 12.0
    assert bundle.manifest.input.max_chars == 200 and bundle.manifest.sequence.slots == 4
    assert bundle.manifest.sequence.prefix_steps == 1
    assert bundle.manifest.halt_threshold == report["calibration"]["threshold"] == report["test_short"]["threshold"]
    text = (bundle.path / "REPORT.md").read_text()
    assert bundle.manifest.version == VERSION and text.startswith(f"# code-dictation {VERSION}\n")
    assert f"{100 * report['test_short']['exact_match']:.2f}%" in text and "python -m trainer.dictation.fit" in text
    assert "entries of its first step, so later steps refine a character alone" in text
    assert (f"Names said alone (a sample of the test files' names, one phrasing each; 4): "
            f"{100 * names['exact_match']:.1f}% exact") in text
    assert (f"Short names said alone (every name of at most 3 characters of the test files, one phrasing each; 3): "
            f"{100 * short_names['exact_match']:.1f}% exact; single characters (3) "
            f"{100 * short_names['single_exact_match']:.1f}%; {short_names['wrong_not_unsure']} wrong answers not "
            "marked unsure.") in text
    assert (f"Whole numbers of 1 to 12 digits drawn at random, said alone (1000; up to 6 digits as a cardinal or digit "
            f"by digit, longer ones digit by digit): model {100 * generated['model']:.1f}% exact") in text
    assert (bundle.path / "anytime.png").stat().st_size > 10_000
    read_back = sequence_model_from_bundle(bundle.path).state_dict()
    assert all(torch.equal(value, read_back[name]) for name, value in final.state_dict().items())
    loaded = load_model(bundle.path, LoadOptions(SessionSettings()))
    assert loaded.onnx_file == "step.onnx" and loaded.warm_step_s > 0

    # the unsure threshold: chosen on validation lines with the calibrated halting, in the manifest and REPORT.md
    unsure = report["unsure"]
    assert unsure["lines"] == 2 and bundle.manifest.sequence.unsure_below == unsure["unsure_below"]
    assert report["test_short"]["unsure"]["unsure_below"] == unsure["unsure_below"] and "## Unsure answers" in text
    # chosen again for the written bundle without its run, from its own weights: the same threshold and figures
    monkeypatch.setattr("trainer.dictation.unsure.load_corpus", lambda _cache, _seed: corpus)
    rewritten = with_unsure_flag(bundle.path, tmp_path / "cache")
    evaluation = json.loads((rewritten.path / "evaluation.json").read_text())
    assert rewritten.manifest.sequence.unsure_below == unsure["unsure_below"] and evaluation["unsure"] == unsure
    same = json.dumps(evaluation["test_longer"]["unsure"]) == json.dumps(report["test_longer"]["unsure"])  # NaN too
    assert same
    assert evaluation["names"] == names and rewritten.manifest.metrics["names_exact"] == names["exact_match"]
    assert evaluation["short_names"] == short_names
    assert rewritten.manifest.metrics["short_names_exact"] == short_names["exact_match"]
    assert (rewritten.path / "REPORT.md").read_text() == text
