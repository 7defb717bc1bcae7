"""Text loaders: CLINC150, 20 Newsgroups, the user's CSV/TSV/JSONL/JSON files, and the dispatcher."""

from __future__ import annotations

import gzip
import json
import os
import zipfile
from pathlib import Path

import pytest

from trainer.config import TrainConfig
from trainer.data.files import DataError
from trainer.data.text import (
    MAX_TEXT_CHARS,
    TextSplit,
    check_label_coverage,
    load_clinc150,
    load_newsgroups,
    load_text_dataset,
    load_text_file,
)
from trainer.prepare import prepare_text, text_splits
from trainer.presets import file_kind
from trainer.sequence.pairs import load_pairs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HEADER_MARKER = "LEAKY-HEADER-MARKER"


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def newsgroup_row(index: int, label: str) -> str:
    return json.dumps(
        {
            "id": f"{label}/{index}",
            "split": "train",
            "label": label,
            "subject": f"subject {index}",
            "headers": f"From: someone\nNewsgroups: {label}\nOrganization: {HEADER_MARKER}",
            "body": f"body of message {index}",
        }
    )


@pytest.fixture
def newsgroups_folder(tmp_path: Path) -> Path:
    labels = ["sci.space"] * 20 + ["rec.autos"] * 10
    train = "\n".join(newsgroup_row(i, label) for i, label in enumerate(labels)) + "\n"
    write(tmp_path / "train.jsonl", train)
    write(tmp_path / "test.jsonl", newsgroup_row(100, "sci.space") + "\n\n" + newsgroup_row(101, "rec.autos"))
    return tmp_path


# --- DataError -------------------------------------------------------------------------------------


def test_data_error_formats_path_line_and_problem() -> None:
    error = DataError(Path("a/b.csv"), 7, "empty text")
    assert str(error) == "a/b.csv:7: empty text"
    assert (error.path, error.line, error.problem) == ("a/b.csv", 7, "empty text")
    assert isinstance(error, ValueError)
    assert str(DataError("a/b.csv", None, "file is empty")) == "a/b.csv: file is empty"


# --- CLINC150 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("split", "in_scope", "out_of_scope"),
    [("train", 15_000, 100), ("val", 3_000, 100), ("test", 4_500, 1_000)],
)
def test_clinc150_counts_include_the_matching_oos_split(split: str, in_scope: int, out_of_scope: int) -> None:
    data = load_clinc150(SHARED / "clinc150", split)  # type: ignore[arg-type]
    assert len(data.texts) == len(data.labels) == in_scope + out_of_scope
    assert data.labels.count("oos") == out_of_scope
    assert len(set(data.labels) - {"oos"}) == 150
    assert data.labels[-1] == "oos" and data.labels[0] != "oos"


def test_clinc150_unknown_split_is_a_data_error() -> None:
    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_clinc150(SHARED / "clinc150", "dev")  # type: ignore[arg-type]


def test_clinc150_malformed_pair_is_named(tmp_path: Path) -> None:
    write(
        tmp_path / "data_full.json", json.dumps({"train": [["hi", "greet"], ["only text"]], "oos_train": []})
    )
    with pytest.raises(DataError, match=r"train\[1\] is not a \[text, intent\] pair"):
        load_clinc150(tmp_path, "train")


def test_dispatcher_recognises_clinc150_folder() -> None:
    assert len(load_text_dataset(SHARED / "clinc150", "test").texts) == 5_500


# --- 20 Newsgroups ---------------------------------------------------------------------------------


def test_newsgroups_text_is_subject_and_body_never_headers(newsgroups_folder: Path) -> None:
    data = load_newsgroups(newsgroups_folder, "train")
    assert data.texts[3] == "subject 3\nbody of message 3"
    assert not any(HEADER_MARKER in text for text in data.texts)
    assert data.labels[:2] == ["sci.space", "sci.space"]


def test_newsgroups_line_numbers_skip_blank_lines(newsgroups_folder: Path) -> None:
    assert load_newsgroups(newsgroups_folder, "test").lines == [1, 3]


def test_newsgroups_val_is_a_seeded_stratified_ten_percent(newsgroups_folder: Path) -> None:
    train = load_text_dataset(newsgroups_folder, "train")
    val = load_text_dataset(newsgroups_folder, "val")
    full = load_text_dataset(newsgroups_folder, "train_full")
    assert (val.labels.count("sci.space"), val.labels.count("rec.autos")) == (2, 1)
    assert sorted(train.texts + val.texts) == sorted(full.texts)
    assert not set(train.texts) & set(val.texts)
    assert load_text_dataset(newsgroups_folder, "val").texts == val.texts
    other_seeds = {tuple(load_text_dataset(newsgroups_folder, "val", seed=s).texts) for s in range(1, 6)}
    assert other_seeds - {tuple(val.texts)}


@pytest.mark.parametrize("train_on_val", [False, True])
def test_train_on_val_trains_on_half_the_validation_split_and_holds_out_the_rest(
    newsgroups_folder: Path, train_on_val: bool
) -> None:
    cfg = TrainConfig(name="ng", task="text", data=str(newsgroups_folder), max_tokens=8, vocab_size=64,
                      train_on_val=train_on_val)
    train, val, _ = text_splits(cfg)
    whole_val = load_text_dataset(newsgroups_folder, "val")
    assert len(whole_val.texts) == 3
    assert (len(train.texts), len(val.texts)) == ((29, 1) if train_on_val else (27, 3))
    assert not set(val.texts) & set(train.texts)  # what validation chooses on is never trained on
    assert sorted(train.texts + val.texts) == sorted(load_text_dataset(newsgroups_folder, "train_full").texts)
    prepared = prepare_text(cfg)
    assert (len(prepared.stream.tokens), len(prepared.val.tokens)) == (len(train.texts), len(val.texts))


def test_real_newsgroups_test_split() -> None:
    data = load_text_dataset(SHARED / "newsgroups20", "test")
    assert len(data.texts) == 7_532
    assert len(set(data.labels)) == 20


def test_newsgroups_unknown_split(newsgroups_folder: Path) -> None:
    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_text_dataset(newsgroups_folder, "dev")


def test_newsgroups_row_without_body(tmp_path: Path) -> None:
    write(tmp_path / "train.jsonl", newsgroup_row(0, "a") + "\n" + json.dumps({"label": "a", "subject": "s"}))
    write(tmp_path / "test.jsonl", newsgroup_row(1, "a"))
    with pytest.raises(DataError) as caught:
        load_text_dataset(tmp_path, "train_full")
    assert (Path(caught.value.path).name, caught.value.line) == ("train.jsonl", 2)
    assert caught.value.problem == "missing field 'body' (the object has: label, subject)"


# --- dispatcher ------------------------------------------------------------------------------------


def test_folder_that_is_neither_dataset(tmp_path: Path) -> None:
    write(tmp_path / "train.jsonl", '{"text": "hi", "label": "greet"}\n')
    write(tmp_path / "test.jsonl", '{"text": "hi", "label": "greet"}\n')
    with pytest.raises(DataError) as caught:
        load_text_dataset(tmp_path, "train")
    assert caught.value.path == str(tmp_path)
    assert "neither CLINC150" in caught.value.problem and "20 Newsgroups" in caught.value.problem


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        load_text_dataset(tmp_path / "nope", "train")
    os.mkfifo(tmp_path / "pipe.csv")  # probe: `eval --data pipe.csv` said "no such file or folder"
    with pytest.raises(DataError, match=r"pipe\.csv: not a plain file or a folder \(a pipe or a device\?\)"):
        load_text_dataset(tmp_path / "pipe.csv", "train")


def test_dispatcher_loads_a_file_and_ignores_split(tmp_path: Path) -> None:
    path = write(tmp_path / "mine.jsonl", '{"text": "hi", "label": "greet"}\n')
    assert load_text_dataset(path, "whatever") == TextSplit(["hi"], ["greet"])


# --- the user's files ------------------------------------------------------------------------------


def test_csv_with_quotes_extra_columns_and_any_column_order(tmp_path: Path) -> None:
    path = write(
        tmp_path / "data.csv",
        'id,label,text\n1,greet,"hello, there"\n2,bye,"see you\nlater"\n\n3,greet,"say ""hi"""\n',
    )
    data = load_text_file(path)
    assert data.texts == ["hello, there", "see you\nlater", 'say "hi"']
    assert data.labels == ["greet", "bye", "greet"]
    assert data.lines == [2, 3, 6]


def test_a_text_longer_than_any_model_reads_is_read_as_its_first_characters(tmp_path: Path) -> None:
    """Probe: one cell of 290 MB (a pasted file) took 23 GB in the tokenizer before the plan, and the global OOM
    killer ended the fit; a 5 MB one was planned as "texts of up to 5,000,000 characters served"."""
    long_text = "word " * 60_000  # 300,000 characters
    path = tmp_path / "long.csv"
    path.write_text("text,label\n" + f"{long_text},a\n" + "short one,b\n")
    split = load_text_file(path)
    assert split.texts == [long_text[:MAX_TEXT_CHARS], "short one"]


def test_labels_that_differ_only_in_spacing_are_one_label(tmp_path: Path) -> None:
    """A double space, or a non-breaking one pasted from the web, made a second label that no note named (and a
    test file's error named a label that, as printed, the training file plainly had)."""
    path = write(tmp_path / "data.csv", "text,label\na,set timer\nb,set  timer\nc, set\u00a0timer\t\nd,translate\n")
    assert load_text_file(path).labels == ["set timer"] * 3 + ["translate"]


def test_labels_that_differ_only_in_unicode_form_are_one_label(tmp_path: Path) -> None:
    """QA: 'réservation' with a combining accent (NFD, as macOS tools may write it) beside the composed one (NFC)
    made a 15th label of a 14-intent file, unnamed by any note, and a test file written in NFD was refused: "label
    'réservation' never appears in the training data", printed exactly as the training data wrote it."""
    composed, decomposed = "r\u00e9servation", "re\u0301servation"
    train = write(tmp_path / "train.csv", f"text,label\na,{composed}\nb,{decomposed}\nc,pago\n")
    test = write(tmp_path / "test.csv", f"text,label\nd,{decomposed}\ne,pago\n")
    assert load_text_file(train).labels == [composed, composed, "pago"]
    check_label_coverage(load_text_file(train), load_text_file(test, test=True), test)  # raises on a label it lacks


def test_labels_no_bundle_can_hold_are_named_before_training(tmp_path: Path) -> None:
    """A label over a bundle's 1,000 characters, or labels over its 262,144 together, ended a whole fit at the
    bundle's write."""
    long = write(tmp_path / "long.csv", "text,label\na,greet\nb," + "x" * 1_001 + "\n")
    with pytest.raises(DataError, match=r"long\.csv:3: a label of 1,001 characters \(a bundle's labels have at most "):
        load_text_file(long)
    many = write(tmp_path / "many.csv", "text,label\n" + "".join(f"t{i},{i:0999d}\n" for i in range(263)))
    with pytest.raises(DataError, match=r"its 263 labels hold 262,737 characters together, more than a bundle's "):
        load_text_file(many)


def test_jsonl_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "data.jsonl",
        '{"text": "hi", "label": "greet", "extra": 1}\n\n{"text": "bye", "label": "go"}',
    )
    data = load_text_file(path)
    assert (data.texts, data.labels, data.lines) == (["hi", "bye"], ["greet", "go"], [1, 3])


def test_a_json_array_as_pandas_writes_it_loads_as_its_json_lines_do(tmp_path: Path) -> None:
    """`df.to_json(orient="records")` (one line) and a pretty-printed array, each object located by the line it
    starts on; JSON Lines named .json (as Hugging Face's `to_json` writes them) load too."""
    rows = [{"text": "hi", "label": "greet"}, {"text": "bye", "label": 2}]
    lines = load_text_file(write(tmp_path / "data.jsonl", "".join(json.dumps(row) + "\n" for row in rows)))
    flat = load_text_file(write(tmp_path / "flat.json", json.dumps(rows)))
    pretty = load_text_file(write(tmp_path / "pretty.json", json.dumps(rows, indent=2)))
    named_json = load_text_file(write(tmp_path / "hf.json", "".join(json.dumps(row) + "\n" for row in rows)))
    assert flat.texts == pretty.texts == named_json.texts == lines.texts == ["hi", "bye"]
    assert flat.labels == pretty.labels == named_json.labels == lines.labels == ["greet", "2"]
    assert (flat.lines, pretty.lines, named_json.lines) == ([1, 1], [2, 6], [1, 2])


def test_a_bad_row_of_a_one_line_json_array_is_named_by_its_item_too(tmp_path: Path) -> None:
    """QA: every row of pandas' one-line array was reported at line 1, whichever it was."""
    rows = [{"text": "hi", "label": "greet"}, {"text": "yo", "label": "greet"}, {"text": "", "label": "go"}]
    with pytest.raises(DataError, match=r"flat\.json:1 \(item 3\): empty text"):
        load_text_file(write(tmp_path / "flat.json", json.dumps(rows)))
    pairs = [{"source": "x equals one", "target": "x = 1"}, {"source": "y equals two", "target": ""}]
    with pytest.raises(DataError, match=r"pairs\.json:1 \(item 2\): empty target"):
        load_pairs(write(tmp_path / "pairs.json", json.dumps(pairs)), 512, 127)
    with pytest.raises(DataError, match=r"pretty\.json:10: empty text"):  # items on lines of their own: the line
        load_text_file(write(tmp_path / "pretty.json", json.dumps(rows, indent=1)))


JSON_ARRAY_CASES = [
    ('[\n {"text": "a", "label": "x"},\n {"text": "b", "label": \n]\n', 4, "invalid JSON: Expecting value at column 1"),
    ('[\n {"text": "a", "label": "x"},\n]\n', 2, "invalid JSON: a comma after the array's last item: remove it"),
    ('{"text": {"0": "a", "1": "b"}, "label": {"0": "x", "1": "y"}}', 1, "every field holds an object: columns of "
     "{row: value}, as pandas' to_json() writes by default; write one object per line: df.to_json(FILE, "
     'orient="records", lines=True)'),
    ('[\n {"text": "a", "label": "x"}\n {"text": "b", "label": "y"}\n]\n', 3,
     "invalid JSON: expected ',' or ']' after an item of the array"),
    ('[{"text": "a", "label": "x"}]\n\n[]\n', 3, "invalid JSON: text after the array's closing ']'"),
    ('[\n {"text": "a", "label": "x"},\n ["b", "x"]\n]', 3,
     "expected a JSON object (a row, its columns as fields), got an array"),
    ('[\n {"text": "a", "label": "x"},\n {"text": "b"}\n]', 3, "missing field 'label' (the object has: text); "
     "the rows before it have it: give it on this row too, or remove the row"),  # not: name other columns
    ("[]", None, "no data rows"),
    ('{\n "text": "a",\n "label": "x"\n}\n', None, "one JSON object over many lines: expected a JSON array of "
     "objects, or JSON Lines (one object per line)"),
]


@pytest.mark.parametrize(("name", "content", "told"), [
    ("deep.jsonl", '{"text": "hi", "label": "a"}\n' + "[" * 200_000 + "]" * 200_000 + "\n",
     r"deep\.jsonl:2: JSON nested too deeply to read"),
    ("deep.json", '[{"text": "hi", "label": "a"},\n' + "[" * 200_000 + "]" * 200_000 + "]",
     r"deep\.json:2: JSON nested too deeply to read"),
    ("digits.jsonl", '{"text": "hi", "label": "a"}\n{"text": "ho", "label": ' + "9" * 5000 + "}\n",
     r"digits\.jsonl:2: a number of more than 4,300 digits, which Python's JSON reader does not take: write it in "
     r"quotes, as text$"),
])
def test_json_that_pythons_reader_refuses_is_named_by_file_and_line(tmp_path: Path, name: str, content: str,
                                                                   told: str) -> None:
    """Probe: nesting 200,000 deep ended `fit`, `eval` and the plan in a RecursionError traceback, and a label of 5,000
    digits said only "Exceeds the limit (4300 digits) for integer string conversion"."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=told):
        load_text_file(path)


def test_jsonl_class_ids_are_labels(tmp_path: Path) -> None:
    """Exported data sets often store a label as its class id: a JSON integer is read as its decimal text."""
    path = write(tmp_path / "ids.jsonl", '{"text": "great film", "label": 1}\n{"text": "dull", "label": 0}\n'
                                         '{"text": "loved it", "label": "1"}\n')
    assert load_text_file(path).labels == ["1", "0", "1"]


def test_other_columns_are_read_when_named(tmp_path: Path) -> None:
    sheet = write(tmp_path / "sst.csv", "Sentence,Sentiment,text\na fine film,pos,ignored\ndull,neg,ignored\n")
    assert load_text_file(sheet, ("sentence", "SENTIMENT")).texts == ["a fine film", "dull"]
    lines = write(tmp_path / "sst.jsonl", '{"utterance": "hi", "intent": 4}\n')
    assert load_text_file(lines, ("utterance", "intent")).labels == ["4"]
    with pytest.raises(DataError) as caught:
        load_text_file(lines, ("Utterance", "intent"))  # JSON fields match exactly
    assert caught.value.problem == ("missing field 'Utterance' (the object has: utterance, intent); --text-column "
                                    "and --label-column name other columns")


def test_tsv_file_loads_as_its_csv_does(tmp_path: Path) -> None:
    rows = [("hello, there", "greet"), ('say "hi"', "greet"), ("bye", "farewell")]
    tsv = write(tmp_path / "data.tsv", "id\tText\tlabel\n" + "".join(f"{i}\t{t}\t{lab}\n" for i, (t, lab) in
                                                                    enumerate(rows)))
    csv_file = write(tmp_path / "data.csv", 'id,Text,label\n0,"hello, there",greet\n1,"say ""hi""",greet\n2,bye,'
                                            "farewell\n")
    tsv_data, csv_data = load_text_file(tsv), load_text_file(csv_file)
    assert (tsv_data.texts, tsv_data.labels) == (csv_data.texts, csv_data.labels) == ([t for t, _ in rows],
                                                                                       [lab for _, lab in rows])


def test_a_test_file_without_the_training_files_columns_is_told_to_rename_them(tmp_path: Path) -> None:
    """The column flags name the columns of both files, so they cannot fix a test file whose columns differ."""
    other = write(tmp_path / "test.csv", "utterance,intent\nhello,greet\n")
    with pytest.raises(DataError) as caught:
        load_text_file(other, ("Text", "label"), test=True)
    assert caught.value.problem == ("missing column 'Text' (the header has: utterance, intent); a test file has the "
                                    "training file's columns (Text, label): rename them in one of the files")


def test_an_excel_separator_line_names_the_delimiter(tmp_path: Path) -> None:
    """Excel's `sep=X` first line: the file is read by that delimiter, its header is the next line, and errors
    name the file's own lines."""
    semicolons = write(tmp_path / "sheet.csv", "sep=;\r\nText;Label\r\nhello, there;greet\r\nbye;farewell\r\n")
    data = load_text_file(semicolons)
    assert (data.texts, data.labels, data.lines) == (["hello, there", "bye"], ["greet", "farewell"], [3, 4])
    assert file_kind(semicolons) == "text"
    grid = write(tmp_path / "grids.csv", "sep=,\nquestion,answer\n" + "." * 81 + "," + "1" * 81 + "\n")
    assert file_kind(grid) == "grid"
    with pytest.raises(DataError) as caught:
        load_text_file(write(tmp_path / "gap.csv", "sep=,\ntext,label\nhello,greet\nbye,\n"))
    assert (caught.value.line, caught.value.problem) == (4, "empty label")


def test_a_spreadsheets_csv_loads_as_written(tmp_path: Path) -> None:
    """Header names in any case, spaces after the commas, and the empty rows a spreadsheet leaves at the end."""
    path = write(tmp_path / "sheet.csv", "Text, Label\nhello there, greet\nbye,farewell \nhi,greet\n,\n  ,  \n")
    data = load_text_file(path)
    assert (data.texts, data.labels, data.lines) == (["hello there", "bye", "hi"], ["greet", "farewell", "greet"],
                                                     [2, 3, 4])


CSV_CASES = [
    ("text,category\nhello,greet\n", 1, "missing column 'label' (the header has: text, category); --text-column and "
     "--label-column name other columns"),
    ("label\ngreet\n", 1, "missing column 'text' (the header has: label); --text-column and --label-column name "
     "other columns"),
    ('text,label\nhello,greet\n"two\nlines",x\n  ,greet\n', 5, "empty text"),
    ("text,label\nhello,greet\n\u200b\u200b,greet\n", 3, "text of invisible characters only (control, zero-width or "
     "U+FFFD)"),
    ("text,label\nhello,greet\n\x07\x01,greet\n", 3, "text of invisible characters only (control, zero-width or "
     "U+FFFD)"),
    ("text,label\nhello,greet\nbye,\n", 3, "empty label"),
    ("text,label,Text\nhello,greet,hi\n", 1, "the header names column 'text' 2 times (columns 1, 3): name each "
     "column once"),
    ("text,label\nhello,greet\nhello, there,greet\n", 3, "row has 3 fields but the header has 2 "
     "(a field holding a comma or a line break goes in double quotes)"),
    ("text;label\nhello;greet\n", 1, "missing column 'text' (the header has: text;label); the file seems to separate "
     "its columns with semicolons: save it with commas, or make its first line sep=;"),
    ("text\tlabel\nhello\tgreet\n", 1, "missing column 'text' (the header has: text\tlabel); the file seems to "
     "separate its columns with tabs: name it .tsv"),
    ('text,label\nhello,greet\n"an unclosed quote,greet\nbye,farewell\n', 3, "a double quote opens a field here that "
     "no later double quote closes (the rest of the file would be read as one text): close it, or write a quote "
     'inside a field as two ("")'),
    ('text,label\nhello,greet\n"a stray quote,greet\nbye,farewell\n"hi" she said,greet\n', 3, "a double quote opens a "
     "field here that the next double quote, 2 lines further on, closes inside a text (the rows between would be "
     "read as one text): remove a stray quote, or put the whole field in double quotes and write each quote inside "
     'it as two (""' '"hi"" she said")'),
    ('text,label\n"hi" she said,greet\n', 2, 'a field starts with a double quote that closes before the field ends '
     '("hi" she said): put the whole field in double quotes and write each quote inside it as two '
     '(""' '"hi"" she said")'),
    ("good morning to you,greet\nhi,greet\n", 1, "missing column 'text' (the header has: good morning to you, "
     "greet); if the first line is data, add a header line first: text,label; --text-column and --label-column "
     "name other columns"),
    ("text,label\n", None, "no data rows"),
    ("", None, "file is empty"),
    ("  \n\n", None, "file is empty"),
]


JSONL_CASES = [
    ('{"train": [["hello", "greet"]], "test": [["bye", "farewell"]]}\n', 1, "missing field 'text' (the object has: "
     "train, test); rows inside its lists are not read: give one object per row, as JSON Lines or a JSON array of "
     "objects with a field 'text'"),
    (
        '{"text": "a", "label": "x"}\n{"text": "b", "label": \n',
        2,
        "invalid JSON: Expecting value at column 24",
    ),
    ('{"text": "a", "label": "x"}\n["b", "x"]\n', 2,
     "expected a JSON object (a row, its columns as fields), got an array"),
    ('["a", "x"]\n["b", "x"]\n', 1, "expected a JSON object (a row, its columns as fields), got an array"),
    ('{"text": "a", "label": "x"}\n\n{"text": "b"}\n', 3, "missing field 'label' (the object has: text); "
     "the rows before it have it: give it on this row too, or remove the row"),
    ('{"label": "x"}\n', 1, "missing field 'text' (the object has: label); --text-column and --label-column name "
     "other columns"),
    ('{"text": "a", "label": 1.5}\n', 1, "field 'label' must be a string, a whole number or true / false, got 1.5"),
    ('{"text": "a", "label": ["x"]}\n', 1, "field 'label' must be a string, a whole number or true / false, got an "
     "array; a row has one label: a task of several labels per row (multi-label) is not one this trainer fits"),
    ('{"text": null, "label": "x"}\n', 1, "field 'text' must be a string, got null"),
    ('{"text": 3, "label": "x"}\n', 1, "field 'text' must be a string, got 3"),
    ('{"text": "a", "label": "x"}\n{"text": "", "label": "x"}\n', 2, "empty text"),
    ('{"text": "a", "label": " "}\n', 1, "empty label"),
    ("\n\n", None, "file is empty"),
]


@pytest.mark.parametrize(("name", "content", "line", "problem"), [
    *(("user.csv", *case) for case in CSV_CASES),
    *(("user.jsonl", *case) for case in JSONL_CASES),
    *(("user.json", *case) for case in JSON_ARRAY_CASES),
])
def test_file_errors_name_the_file_and_line(tmp_path: Path, name: str, content: str, line: int | None,
                                            problem: str) -> None:
    path = write(tmp_path / name, content)
    with pytest.raises(DataError) as caught:
        load_text_file(path)
    assert (caught.value.path, caught.value.line, caught.value.problem) == (str(path), line, problem)


def test_every_empty_cell_is_named_in_one_error(tmp_path: Path) -> None:
    rows = ["text,label", "a,x", ",x", "b,", "c,y", *([",z"] * 6)]
    path = write(tmp_path / "user.csv", "\n".join(rows) + "\n")
    with pytest.raises(DataError) as caught:
        load_text_file(path)
    assert (caught.value.line, caught.value.problem) == (3, "empty text (also line 4: empty label, line 6: empty "
                                                             "text, line 7: empty text, line 8: empty text, line 9: "
                                                             "empty text and 2 more)")


def test_a_nested_field_is_told_to_come_to_the_top_level(tmp_path: Path) -> None:
    path = write(tmp_path / "user.jsonl", '{"id": 1, "data": {"text": "a"}, "label": "x"}\n')
    with pytest.raises(DataError) as caught:
        load_text_file(path, ("data.text", "label"))
    assert caught.value.problem.startswith("missing field 'data.text' (the object has: id, data, label); fields "
                                           "inside an object are not read: put 'text' of 'data' at the top level")


def test_whole_number_and_true_false_labels_read_as_their_text(tmp_path: Path) -> None:
    """Class ids as pandas writes them (5.0) are the ids of the file that writes 5; true / false for yes / no."""
    path = write(tmp_path / "user.jsonl", '{"text": "a", "label": 5.0}\n{"text": "b", "label": 5}\n'
                                          '{"text": "c", "label": true}\n{"text": "d", "label": false}\n')
    assert load_text_file(path).labels == ["5", "5", "true", "false"]


def test_a_folder_is_told_to_give_the_file(tmp_path: Path) -> None:
    path = tmp_path / "folder.csv"
    path.mkdir()
    with pytest.raises(DataError) as caught:
        load_text_file(path)
    assert caught.value.problem == "a folder: give the data file itself (.csv, .tsv, .jsonl or .json)"


def test_unknown_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "data.txt", "text,label\nhi,greet\n")
    with pytest.raises(DataError) as caught:
        load_text_file(path)
    assert str(caught.value) == f"{path}: unknown file extension '.txt': expected .csv, .tsv, .jsonl or .json"


def test_a_plain_tsv_files_quotes_are_its_texts(tmp_path: Path) -> None:
    """QA: CLINC150's own row `"please set 5 minute timer` and `"The Matrix" is a great film` were refused with
    CSV's quoting advice; plain TSV has no quoting. A file that parses with CSV's quoting is still read so."""
    texts = ['"The Matrix" is a great film', '"please set 5 minute timer', 'say "hi" twice']
    plain = write(tmp_path / "plain.tsv", "text\tlabel\n" + "".join(f"{text}\tx\n" for text in texts))
    assert load_text_file(plain).texts == texts
    quoted = write(tmp_path / "quoted.tsv", 'text\tlabel\n"a tab\there"\tx\n"say ""hi"""\tx\n')
    assert load_text_file(quoted).texts == ["a tab\there", 'say "hi"']


@pytest.mark.parametrize(("content", "problem"), [
    ("text,label\nhi,greet\n", "missing column 'text' (the header has: text,label); the file seems to separate "
                               "its columns with commas: name it .csv"),
    ("text\tlabel\nhello there\n", "row has 1 field but the header has 2 (a field holding a tab or a line break "
                                  "goes in double quotes)"),
])
def test_tsv_errors_speak_of_tabs(tmp_path: Path, content: str, problem: str) -> None:
    path = write(tmp_path / "data.tsv", content)
    with pytest.raises(DataError) as caught:
        load_text_file(path)
    assert caught.value.problem == problem


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.csv"
    with pytest.raises(DataError) as caught:
        load_text_file(path)
    assert (caught.value.path, caught.value.line) == (str(path), None)
    assert caught.value.problem.startswith("cannot read file")


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", b"text,label\nhi,greet\ncaf\xe9,greet\n")
    with pytest.raises(DataError) as caught:
        load_text_file(path)
    assert (caught.value.line, caught.value.problem) == (3, "not valid UTF-8 text: save the file as UTF-8 (in Excel: "
                                                            "CSV UTF-8)")


def test_utf16_text_is_named_as_such(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", "text,label\nhi,greet\n".encode("utf-16"))
    with pytest.raises(DataError) as caught:
        load_text_file(path)
    assert caught.value.problem == ('UTF-16 text (a spreadsheet\'s "Unicode text"): save the file as UTF-8 (in '
                                    "Excel: CSV UTF-8)")


def test_a_compressed_file_a_workbook_or_standard_input_is_named_as_such(tmp_path: Path) -> None:
    """QA: a gzip file and an .xlsx named .csv were "not valid UTF-8 text"; `--train -` an "unknown file extension"."""
    gzipped = write(tmp_path / "data.csv", gzip.compress(b"text,label\nhi,greet\n"))
    workbook = tmp_path / "book.csv"
    with zipfile.ZipFile(workbook, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    told = {}
    for path in (gzipped, workbook, Path("-")):
        with pytest.raises(DataError) as caught:
            load_text_file(path)
        told[path.name] = caught.value.problem
    assert told == {
        "data.csv": "a gzip-compressed file: decompress it first (gunzip, or your archive tool)",
        "book.csv": "a zip archive, as an Excel workbook (.xlsx) is: in Excel, save it as CSV UTF-8; else unzip it",
        "-": "standard input is not read: save the data to a file (.csv, .tsv, .jsonl or .json)",
    }


@pytest.mark.parametrize("kind", ["a link to /dev/zero", "a named pipe"])
def test_a_device_or_a_pipe_is_named_not_read_forever(tmp_path: Path, kind: str) -> None:
    """QA: `--data zero.csv`, a link to /dev/zero, was read until memory ran out (5.1 GB, then MemoryError, the fit
    still running); a named pipe nobody writes to blocked for good."""
    path = tmp_path / "data.csv"
    if kind == "a named pipe":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    assert file_kind(path) == "text"  # the header is not read
    with pytest.raises(DataError, match=r"not a file but a device or a pipe \(which may never end"):
        load_text_file(path)


# --- label coverage --------------------------------------------------------------------------------


def test_label_coverage_names_label_and_first_test_line(tmp_path: Path) -> None:
    train = load_text_file(write(tmp_path / "train.csv", "text,label\na,x\nb,y\n"))
    test_path = write(tmp_path / "test.csv", "text,label\nc,y\nd,z\ne,z\n")
    check_label_coverage(train, load_text_file(write(tmp_path / "ok.csv", "text,label\nc,y\n")), "ok.csv")
    with pytest.raises(DataError) as caught:
        check_label_coverage(train, load_text_file(test_path), test_path)
    assert str(caught.value) == f"{test_path}:3: label 'z' never appears in the training data"


def test_label_coverage_without_line_numbers_names_the_row() -> None:
    with pytest.raises(DataError) as caught:
        check_label_coverage(TextSplit(["a"], ["x"]), TextSplit(["b", "c"], ["x", "w"]), "test.jsonl")
    assert str(caught.value) == "test.jsonl: label 'w' (test row 2) never appears in the training data"


@pytest.mark.parametrize(("trained", "tested", "told"), [  # QA: neither named the label to write instead
    ("thank you", "Thank You", "'thank you' for 'Thank You': they differ only in case"),
    ("1", "1.0", "'1' for '1.0': they write the same number"),
])
def test_a_test_label_spelt_otherwise_names_the_training_datas_spelling(trained: str, tested: str, told: str) -> None:
    with pytest.raises(DataError) as caught:
        check_label_coverage(TextSplit(["a", "b"], [trained, "x"]), TextSplit(["c"], [tested]), "test.csv")
    assert str(caught.value) == (f"test.csv: label '{tested}' (test row 1) never appears in the training data (the "
                                 f"training data writes {told})")
