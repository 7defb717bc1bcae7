"""A file too large to prepare within two thirds of its time budget trains on a stratified sample of its rows
(`max_train_rows`): the sample, the plan that sizes it, the fit that reads it, and the time its linear reader
takes after the loop; a large file's profile counts tokens on a sample, and a fit reads the file once."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import pytest
from trainer_support import write_keyword_csv

import trainer.prepare
import trainer.presets
from trainer.config import TrainConfig
from trainer.data.holdout import SAMPLE_ROWS_KEPT_PER_LABEL, sample_indices, stratified_sample
from trainer.data.text import load_text_file
from trainer.fit import fit, fit_baseline
from trainer.prepare import prepare_text, sampled_training_rows, text_splits
from trainer.presets import (
    BYTES_PER_TRAINING_CHAR,
    BYTES_PER_TRAINING_ROW,
    FILE_READS_S_PER_ROW,
    LONG_TEXT,
    MAX_MEMORY_SHARE,
    MAX_PREPARING_SHARE,
    MIN_SAMPLED_ROWS,
    SHORT_TEXT,
    DataProfile,
    available_memory,
    choose_preset,
    describe_choice,
    profile_texts,
    size_run,
)


@pytest.fixture(autouse=True)
def roomy_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """64 GB available, so that only a test's own `memory_bytes` bounds a sample by memory on any machine."""
    monkeypatch.setattr(trainer.presets, "available_memory", lambda: 64.0 * 2**30)


def big_profile(rows: int, median_tokens: float = 22, preset_long: bool = False) -> DataProfile:
    return DataProfile(kind="text", rows=rows, labels=20, min_per_label=rows // 40, median_per_label=rows // 20,
                       median_tokens=median_tokens, p98_tokens=600 if preset_long else 50, distinct_words=90_000)


def test_a_sample_keeps_each_labels_share_and_every_row_of_a_rare_label() -> None:
    labels = ["big"] * 30_000 + ["mid"] * 9_000 + ["rare"] * 40 + ["small"] * 200
    sample = stratified_sample(labels, 10_000, seed=3)
    counts = Counter(labels[i] for i in sample)
    assert len(set(sample.tolist())) == len(sample) and np.all(np.diff(sample) > 0)  # distinct rows, sorted
    share = 10_000 / len(labels)
    assert counts["big"] == round(share * 30_000) and counts["mid"] == round(share * 9_000)
    assert counts["rare"] == 40  # a label of at most SAMPLE_ROWS_KEPT_PER_LABEL rows keeps them all
    assert counts["small"] == SAMPLE_ROWS_KEPT_PER_LABEL  # its share would be 51 rows
    assert abs(len(sample) - 10_000) <= 20 * len(counts)
    assert np.array_equal(stratified_sample(labels, 10_000, seed=3), sample)  # the seed gives the same rows
    assert not np.array_equal(stratified_sample(labels, 10_000, seed=4), sample)
    assert np.array_equal(stratified_sample(labels, len(labels), seed=3), np.arange(len(labels)))  # none left out


def one_more_rows(sampled: int) -> int:
    """A file's rows whose training rows are `sampled` and one more (2,000 held out)."""
    return sampled + 2_000 + 1


def test_a_file_too_large_for_its_budgets_share_is_sampled_and_the_plan_says_so() -> None:
    profile = big_profile(376_704)
    every_row = size_run(SHORT_TEXT, profile, budget_minutes=60)  # preparing every row fits this budget's share
    assert "max_train_rows" not in every_row.settings and every_row.every_row_overhead_minutes is None
    sizing = size_run(SHORT_TEXT, profile)  # the default 15 minutes
    rows = sizing.settings["max_train_rows"]
    assert MIN_SAMPLED_ROWS < rows < profile.rows - 2_000
    # the most rows whose estimate outside the loop is within the budget's share: one row more is not
    assert sizing.overhead_minutes <= MAX_PREPARING_SHARE * 15
    one_more = size_run(SHORT_TEXT, dataclasses.replace(profile, rows=one_more_rows(rows)), budget_minutes=15)
    # with the reading of the rows the first file has beyond it (the whole file is read, however few rows sampled)
    beyond = (profile.rows - one_more_rows(rows)) * FILE_READS_S_PER_ROW / 60
    assert (one_more.every_row_overhead_minutes or one_more.overhead_minutes) + beyond > MAX_PREPARING_SHARE * 15
    assert sizing.every_row_overhead_minutes == every_row.overhead_minutes
    assert sizing.settings["max_minutes"] == pytest.approx(15 * (1 - MAX_PREPARING_SHARE), abs=0.01)  # the rest
    description = describe_choice(SHORT_TEXT, ["a reason"], sizing)
    needed = math.ceil(every_row.overhead_minutes / MAX_PREPARING_SHARE)
    assert f"a stratified sample of {rows:,} of the training rows (max_train_rows)" in description
    assert f"--time-budget {needed} reads them all" in description
    assert "max_train_rows" not in size_run(SHORT_TEXT, profile, budget_minutes=needed).settings


@pytest.mark.parametrize(("preset", "rows"), [(SHORT_TEXT, 15_100), (SHORT_TEXT, 40_000), (LONG_TEXT, 11_314),
                                             (LONG_TEXT, 45_256)])
def test_files_of_the_measured_sizes_read_every_row(preset, rows: int) -> None:
    # CLINC150, the first 40,000 sentences of docs/EXPERIMENTS.md's large file, 20 Newsgroups, its training posts
    # four times (sampled until its estimate outside the loop, 2.3 times too long, was measured: 8.4 min for every row)
    profile = big_profile(rows, median_tokens=300 if preset is LONG_TEXT else 22, preset_long=preset is LONG_TEXT)
    assert "max_train_rows" not in size_run(preset, profile).settings


def test_a_sample_is_never_below_its_floor() -> None:
    sizing = size_run(LONG_TEXT, big_profile(100_000, median_tokens=300, preset_long=True), budget_minutes=7)
    assert sizing.settings["max_train_rows"] == MIN_SAMPLED_ROWS


def test_a_negative_max_train_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="max_train_rows must be 0 \\(every training row\\) or more, got -1"):
        TrainConfig(name="x", task="text", data="x.csv", max_train_rows=-1)


def test_the_fit_trains_its_teachers_reader_and_baseline_on_the_sample_and_holds_out_the_same_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "keywords.csv"
    write_keyword_csv(data, rows=2_000, seed=5)
    every = TrainConfig(name="kw", task="text", data=str(data), max_tokens=16, vocab_size=200)
    sampled = dataclasses.replace(every, max_train_rows=600)
    whole, val, test = text_splits(every)
    every_row, sampled_val, sampled_test = text_splits(sampled)
    train = sampled_training_rows(every_row, sampled)
    assert (sampled_val, sampled_test) == (val, test)  # the hold-outs come from the whole file first
    whole_rows = Counter(zip(whole.texts, whole.labels, strict=True))
    assert all(whole_rows[row] for row in zip(train.texts, train.labels, strict=True))  # rows of the training split
    assert abs(len(train) - 600) <= len(set(whole.labels)) and set(train.labels) == set(whole.labels)
    assert len(prepare_text(sampled).stream.tokens) == len(train)  # the TRM's stream reads the sample
    baseline = fit_baseline(sampled)
    assert baseline.train_rows == len(train)
    assert (f"{len(train):,} rows to train on (a stratified sample of the {len(whole):,} outside the hold-outs: "
            "max_train_rows)") in capsys.readouterr().out


def test_the_loop_of_a_large_file_leaves_its_linear_readers_fit_more_time() -> None:
    """A file of 238,521 training rows wrote its bundle 1.2 min after a 15-min budget: the reader's fit took 81 s
    after the loop, where the reserve was 15 s for any file."""
    small, large = big_profile(15_100), big_profile(240_521)
    reserve = SHORT_TEXT.overhead.after_fixed_s / 60
    assert size_run(SHORT_TEXT, small).after_minutes == pytest.approx(reserve)  # CLINC150's size: as before
    sizing = size_run(SHORT_TEXT, large)
    beyond = sizing.settings.get("max_train_rows", 240_521 - 2_000) - SHORT_TEXT.overhead.after_fixed_rows
    assert sizing.after_minutes == pytest.approx(reserve + SHORT_TEXT.overhead.after_per_1k_rows_s * beyond / 1000 / 60)
    assert sizing.after_minutes * 60 > 81 + SHORT_TEXT.overhead.after_fixed_s


def test_a_long_text_loop_of_many_rows_leaves_its_linear_readers_fit_more_time() -> None:
    """45,256 posts, every row read (43,258 to train on): 25 s after the loop, the reader's fit 17.5 of them, and
    the bundle 6 s after the 30-min budget, whose reserve was 15 s for any file; 20 Newsgroups' reserve stays."""
    reserve_s = LONG_TEXT.overhead.after_fixed_s
    newsgroups = size_run(LONG_TEXT, big_profile(11_314, median_tokens=300, preset_long=True))
    assert newsgroups.after_minutes * 60 == pytest.approx(reserve_s)
    assert size_run(LONG_TEXT, big_profile(45_256, median_tokens=300, preset_long=True)).after_minutes * 60 > 25


def test_a_large_files_tokens_are_counted_on_a_sample_and_its_rows_and_labels_on_every_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Counting every text's tokens took 73 s of the 91 before the plan of a file of 1,506,816 sentences."""
    monkeypatch.setattr(trainer.presets, "PROFILED_TEXTS", 50)
    texts = [" ".join(["word"] * (1 + i % 7) + [f"name{i}"]) for i in range(300)]  # 2 to 8 tokens, a word each
    labels = ["a", "b", "c"] * 100
    profile = profile_texts(texts, labels)
    counted = [1 + i % 7 + 1 for i in sample_indices(300, 50, seed=0)]
    assert profile.median_tokens == np.median(counted) and profile.p98_tokens == np.percentile(counted, 98)
    assert profile.distinct_words == 1 + 50  # "word" and the sample's own names: a floor of the file's 301
    assert (profile.rows, profile.labels, profile.min_per_label) == (300, 3, 100)  # every row
    assert profile.characters == sum(map(len, texts))
    _, reasons = choose_preset(profile)
    assert reasons[0].startswith("300 texts of median 5 tokens (counted on 50 of them), 3 labels")
    assert "counted on" not in choose_preset(profile_texts(texts[:50], labels[:50]))[1][0]  # every text counted


def test_a_fit_reads_and_splits_its_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading and splitting took 30 s for 1,506,816 sentences, which the baseline and the TRM each did."""
    data = tmp_path / "keywords.csv"
    write_keyword_csv(data, rows=400, seed=5)
    reads = []
    monkeypatch.setattr(trainer.prepare, "load_text_file",
                        lambda *args, **kwargs: reads.append(args) or load_text_file(*args, **kwargs))
    config = TrainConfig(name="kw", task="text", data=str(data), out_dir=str(tmp_path / "runs"), max_tokens=16,
                         vocab_size=200, max_steps=2, batch_size=16, eval_every=1000, max_train_rows=200,
                         model={"hidden_size": 32, "num_heads": 2, "n": 1, "T": 1, "N_sup": 1})
    fitted = fit(config, resume=False)
    assert len(reads) == 1
    assert fitted.baseline.train_rows == len(fitted.prepared.stream.tokens) < 400  # both read the same sample


GB = 2**30


def test_a_file_whose_baselines_ngrams_would_not_fit_in_memory_is_sampled_to_what_fits() -> None:
    """The baseline's n-grams took 4.9 GB for 374,704 sentences; a file of millions of rows with a budget of hours
    would have asked for more memory than a machine has."""
    profile = dataclasses.replace(big_profile(150_000), characters=150_000 * 112)  # 2,000 rows held out each
    needed = 148_000 * (BYTES_PER_TRAINING_ROW + BYTES_PER_TRAINING_CHAR * 112)
    assert "max_train_rows" not in size_run(SHORT_TEXT, profile, memory_bytes=64 * GB).settings  # time and memory
    sizing = size_run(SHORT_TEXT, profile, memory_bytes=2 * GB)
    assert sizing.settings["max_train_rows"] == int(148_000 * MAX_MEMORY_SHARE * 2 * GB / needed)
    assert sizing.every_row_overhead_minutes is None  # its time was within the budget's share
    assert sizing.overhead_minutes < size_run(SHORT_TEXT, profile, memory_bytes=64 * GB).overhead_minutes
    description = describe_choice(SHORT_TEXT, ["a reason"], sizing)
    assert (f"a stratified sample of {sizing.settings['max_train_rows']:,} of the training rows (max_train_rows): "
            f"the built-in baseline's n-grams of every row would take about {needed / GB:.1f} GB of memory, more than "
            "60% of the 2.0 GB available.") in description
    assert size_run(SHORT_TEXT, profile, memory_bytes=GB / 10).settings["max_train_rows"] == MIN_SAMPLED_ROWS


def test_a_larger_budget_is_not_offered_where_every_rows_ngrams_would_not_fit_in_memory() -> None:
    profile = dataclasses.replace(big_profile(376_704), characters=376_704 * 112)  # 3.6 GB for every row
    roomy, tight = (size_run(SHORT_TEXT, profile, memory_bytes=memory) for memory in (64 * GB, 5 * GB))
    assert tight.settings["max_train_rows"] == roomy.settings["max_train_rows"]  # time binds first here
    assert "reads them all" in describe_choice(SHORT_TEXT, ["a reason"], roomy)
    description = describe_choice(SHORT_TEXT, ["a reason"], tight)
    assert "more than 67% of the budget, and the built-in baseline's n-grams of every row" in description
    assert "--time-budget" not in description


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_a_containers_memory_limit_bounds_the_memory_a_plan_counts_on(tmp_path: Path, version: str) -> None:
    """psutil reads the host's memory inside a container, where the container's limit is what a fit may take."""
    limit, usage = ("memory.max", "memory.current") if version == "v2" else (
        "memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")
    (tmp_path / limit).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / limit).write_text(f"{GB}\n")
    (tmp_path / usage).write_text(f"{GB // 4}\n")
    assert available_memory(tmp_path) == 0.75 * GB  # the machine has more
    (tmp_path / limit).write_text("max\n" if version == "v2" else f"{2**63 - 4096}\n")  # no limit: the machine's
    assert available_memory(tmp_path) == pytest.approx(psutil.virtual_memory().available, rel=0.1)
    assert available_memory(tmp_path / "none") == pytest.approx(psutil.virtual_memory().available, rel=0.1)


def test_an_address_space_limit_bounds_the_memory_a_plan_counts_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Probe: the plan read a container's limit, not `ulimit -v`, under which a large file's fit sized its sample to
    the machine's memory."""
    mapped = psutil.Process().memory_info().vms
    monkeypatch.setattr(trainer.presets.resource, "getrlimit", lambda _which: (mapped + GB, -1))
    assert available_memory() == pytest.approx(GB, abs=64 * 2**20)  # what this process has mapped aside
