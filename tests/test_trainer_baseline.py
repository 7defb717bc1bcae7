"""The built-in linear baseline and the data of the fit bars (few-shot sample, CSV files)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from trainer.bar_sets import few_shot_indices, write_text_csv
from trainer.baseline import BaselineResult, comparison, fit_linear_baseline, main, score_linear_baseline
from trainer.config import TrainConfig
from trainer.data.text import TextSplit, load_text_file
from trainer.prepare import text_splits

TOPICS = {"hockey": ["goalie", "puck", "season"], "space": ["orbit", "launch", "nasa"],
          "computers": ["driver", "kernel", "disk"]}
FILLER = ["the", "a", "this", "about", "some", "news", "today", "people", "think"]
NONSENSE = ["banana", "violin", "umbrella", "pepper", "tulip", "glacier"]


def corpus(seed: int, per_label: int, oos: int = 0) -> tuple[list[str], list[str]]:
    """Filler around two words of the label's topic; `oos` texts of other words labelled "oos"."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, words in TOPICS.items():
        for _ in range(per_label):
            texts.append(" ".join([*rng.choice(FILLER, 5), *rng.choice(words, 2)]))
            labels.append(label)
    for _ in range(oos):
        texts.append(" ".join([*rng.choice(FILLER, 5), *rng.choice(NONSENSE, 2)]))
        labels.append("oos")
    return texts, labels


def test_the_baseline_learns_a_topic_task() -> None:
    train, test = corpus(0, per_label=30), corpus(1, per_label=20)
    result = score_linear_baseline(*train, *test)
    assert result.accuracy >= 0.95
    assert (result.in_scope_accuracy, result.oos_recall) == (None, None)
    assert (result.train_rows, result.test_rows) == (90, 60)


def test_out_of_scope_figures_count_in_scope_and_out_of_scope_rows_apart() -> None:
    train, (test_texts, test_labels) = corpus(0, per_label=30, oos=30), corpus(1, per_label=10, oos=10)
    test_texts[-1] = "the goalie and the puck"  # labelled oos, read as hockey
    result = score_linear_baseline(*train, test_texts, test_labels, oos_label="oos")
    predicted = fit_linear_baseline(*train).predict(test_texts)
    truth = np.array(test_labels, dtype=object)
    out = truth == "oos"
    assert result.in_scope_accuracy == (predicted == truth)[~out].mean()
    assert result.oos_recall == (predicted == "oos")[out].mean()
    assert result.accuracy == (predicted == truth).mean()
    assert result.oos_recall == 0.9 and result.in_scope_accuracy == 1.0


def test_character_ngrams_read_words_never_seen_in_training() -> None:
    """Misspelt and inflected topic words share character n-grams with the training words."""
    train = corpus(0, per_label=30)
    test = (["the goalies today", "orbits and launches", "kernels and drivers", "the pucks this season"],
            ["hockey", "space", "computers", "hockey"])
    assert score_linear_baseline(*train, *test).accuracy == 1.0


def test_the_baseline_depends_on_its_seed_only() -> None:
    train, test = corpus(0, per_label=30, oos=10), corpus(1, per_label=10, oos=10)
    predictions = []
    for global_seed in (1, 2):
        np.random.seed(global_seed)
        predictions.append(fit_linear_baseline(*train, seed=0).decision_function(test[0]))
    np.testing.assert_array_equal(predictions[0], predictions[1])


def test_the_summary_line_puts_the_figures_first() -> None:
    result = BaselineResult(accuracy=0.794, in_scope_accuracy=0.92533, oos_recall=0.203, train_rows=15100,
                            test_rows=5500, wall_time_s=25.2)
    assert result.summary() == (
        "linear baseline (TF-IDF word 1-2-grams + character 2-5-grams, LinearSVC): accuracy 79.40%, "
        "in-scope 92.53%, out-of-scope recall 20.30% (15,100 training rows, 25 s)"
    )


def test_the_command_scores_a_seeded_hold_out_of_one_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts, labels = corpus(0, per_label=30, oos=30)
    write_text_csv(tmp_path / "train.csv", TextSplit(texts, labels))
    assert main([str(tmp_path / "train.csv")]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    config = TrainConfig(name="baseline", task="text", data=str(tmp_path / "train.csv"))
    fit_train, _, fit_test = text_splits(config)  # the rows trm-train fit trains and tests on
    assert printed["out_of_scope_label"] == "oos"
    assert (printed["train_rows"], printed["test_rows"]) == (len(fit_train.texts), len(fit_test.texts)) == (96, 12)
    assert printed["in_scope_accuracy"] >= 0.9 and printed["oos_recall"] is not None


def test_two_labels_that_could_be_out_of_scope_ask_for_the_flag_that_names_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`oos` and `none` both read as out of scope: a data error naming --oos-label (it was a traceback), and the
    flag then picks one, as the fit's does."""
    texts, labels = corpus(0, per_label=30, oos=30)
    labels = ["none" if label == "hockey" else label for label in labels]
    write_text_csv(tmp_path / "train.csv", TextSplit(texts, labels))
    assert main([str(tmp_path / "train.csv")]) == 2
    assert "name the one to use with --oos-label" in capsys.readouterr().err
    assert main([str(tmp_path / "train.csv"), "--oos-label", "oos"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["out_of_scope_label"] == "oos"
    assert main([str(tmp_path / "train.csv"), "--oos-label", "other"]) == 2
    assert "--oos-label 'other' is not a label of the training data" in capsys.readouterr().err


# --- the bars' data -------------------------------------------------------------------------------------
def test_a_few_shot_sample_keeps_k_per_label_and_out_of_scope_at_the_same_rate() -> None:
    labels = ["a"] * 20 + ["oos"] * 40 + ["b"] * 20 + ["c"] * 3
    picked = few_shot_indices(labels, per_label=5, seed=0, oos_label="oos")
    counts = Counter(labels[i] for i in picked)
    # a and b keep 5 of 20, c all 3: 13 of 43 in-scope rows, so round(13 / 43 * 40) = 12 oos rows
    assert counts == {"a": 5, "b": 5, "c": 3, "oos": 12}
    assert list(picked) == sorted(set(picked.tolist()))


def test_a_few_shot_sample_is_fixed_by_its_seed() -> None:
    labels = [f"intent{i % 15}" for i in range(1500)] + ["oos"] * 100
    first = few_shot_indices(labels, 10, seed=0, oos_label="oos")
    np.testing.assert_array_equal(first, few_shot_indices(labels, 10, seed=0, oos_label="oos"))
    assert not np.array_equal(first, few_shot_indices(labels, 10, seed=1, oos_label="oos"))
    assert Counter(labels[i] for i in first)["oos"] == 10  # 10 of 100 per intent: 10 of the 100 oos rows


def test_without_an_out_of_scope_label_every_label_keeps_k() -> None:
    labels = ["oos"] * 10 + ["b"] * 10
    assert Counter(labels[i] for i in few_shot_indices(labels, 4, seed=0)) == {"oos": 4, "b": 4}


def test_written_csvs_read_back_as_the_same_texts(tmp_path: Path) -> None:
    """Posts hold newlines, commas and quotes: the CSV quotes them and the user-file loader reads them."""
    split = TextSplit(['Re: "hello", world\nquoted > text\n\nbody, more', "plain"], ["alt.atheism", "sci.space"])
    assert load_text_file(write_text_csv(tmp_path / "out" / "posts.csv", split)) == split


def test_the_verdict_weighs_in_scope_accuracy_and_names_both_out_of_scope_recalls() -> None:
    """A tie in in-scope accuracy is not the whole story where the TRM also rejects more out-of-scope inputs."""
    metrics = {"test_accuracy": 0.8824, "test_in_scope_accuracy": 0.875, "test_oos_recall": 0.5,
               "baseline_test_accuracy": 0.8235, "baseline_test_in_scope_accuracy": 0.875,
               "baseline_test_oos_recall": 0.4167}
    assert comparison(metrics) == ("TRM 87.50%, linear baseline 87.50% (in-scope test accuracy): a tie; out-of-scope "
                                   "recall 50.0% against 41.7%")
    assert comparison({"test_accuracy": 0.9, "baseline_test_accuracy": 0.8}) == (
        "TRM 90.00%, linear baseline 80.00% (test accuracy): the TRM is ahead by 10.00 points")
    assert comparison({"test_accuracy": 0.9}) is None


def test_the_verdict_weighs_the_int8_step_where_the_server_runs_it() -> None:
    """A bundle that ships model.int8.onnx is served by it: its figures, not fp32's, face the baseline."""
    metrics = {"test_in_scope_accuracy": 0.9, "test_oos_recall": 0.5, "int8_test_in_scope_accuracy": 0.85,
               "int8_test_oos_recall": 0.6, "baseline_test_in_scope_accuracy": 0.875, "baseline_test_oos_recall": 0.4}
    assert comparison(metrics, int8_served=True, max_steps=4) == (
        "TRM 85.00% (the int8 step the server runs), linear baseline 87.50% (in-scope test accuracy): the baseline "
        "wins by 2.50 points: serve the TRM only for what the baseline lacks (anytime steps, halting, one server for "
        "every model); out-of-scope recall 60.0% against 40.0%")
    assert comparison(metrics).startswith("TRM 90.00%, linear baseline 87.50% (in-scope test accuracy): the TRM")
    # a bundle measured before the int8 figures were recorded keeps its fp32 verdict
    assert comparison({"test_accuracy": 0.9, "baseline_test_accuracy": 0.8}, int8_served=True) == (
        "TRM 90.00%, linear baseline 80.00% (test accuracy): the TRM is ahead by 10.00 points")


def test_the_command_refuses_a_file_the_fit_refuses_with_the_fits_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_text_csv(tmp_path / "one.csv", TextSplit(["hi", "hello", "bye"], ["greet", "greet", "leave"]))
    assert main([str(tmp_path / "one.csv")]) == 2
    err = capsys.readouterr().err
    assert err == (f"python -m trainer.baseline: data error: {tmp_path / 'one.csv'}:4: label 'leave' has 1 example: "
                   "every label needs at least 2 examples; add examples of it or remove its rows\n")


def test_with_a_test_file_the_command_trains_on_the_fits_training_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts, labels = corpus(0, per_label=30, oos=30)
    write_text_csv(tmp_path / "train.csv", TextSplit(texts, labels))
    write_text_csv(tmp_path / "test.csv", TextSplit(texts[:20], labels[:20]))
    assert main([str(tmp_path / "train.csv"), str(tmp_path / "test.csv")]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    config = TrainConfig(name="b", task="text", data=str(tmp_path / "train.csv"), test_data=str(tmp_path / "test.csv"))
    fit_train, _, _ = text_splits(config)
    assert (printed["train_rows"], printed["test_rows"]) == (len(fit_train.texts), 20) == (108, 20)


def test_a_one_step_model_that_loses_is_not_advised_for_its_anytime_steps() -> None:
    """QA, a file of standard-library docstrings: a one-step TRM 6 points behind was told to be served for its
    anytime steps and halting, which it does not have."""
    verdict = comparison({"test_accuracy": 0.7189, "baseline_test_accuracy": 0.7802}, max_steps=1)
    assert verdict is not None and "anytime steps, halting" not in verdict
    assert verdict.endswith("baseline lacks (one server for every model, a calibrated confidence); this model runs "
                            "one step, so it has no anytime steps to offer; more data or the other text preset "
                            "(--preset) may close the gap")


@pytest.mark.parametrize(
    "texts",
    [["1003 1005 3009", "1006 1008 3018", "1009 1011 3027", "1012 1014 3036"], ["😀", "😀 🎉", "🎉 🙂", "🙂"]],
    ids=["numbers seen once", "emoji"],
)
def test_texts_of_no_recurring_word_are_read_by_their_characters(texts: list[str]) -> None:
    """TfidfVectorizer refuses words that no two texts share (or none at all): the baseline then reads characters."""
    vectorizer = fit_linear_baseline(texts, ["a", "b", "a", "b"]).named_steps["features"]
    assert [name for name, part in vectorizer.transformer_list if part != "drop"] == ["chars"]


def test_texts_that_share_nothing_are_refused_saying_so() -> None:
    with pytest.raises(ValueError, match="no word and no run of characters is in two of the training texts"):
        fit_linear_baseline(["a", "b", "c", "d"], ["x", "y", "x", "y"])
