"""The bundle contract (trm_bundle): manifests round-trip byte for byte, the writer refuses what the server
would refuse, the training record is typed, the padding-trim rule, and the softmax answers report."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from trm_bundle import BundleError
from trm_bundle.manifest import VariableLength, load_bundle, manifest_json, parse_manifest
from trm_bundle.probabilities import softmax
from trm_bundle.writer import write_bundle

MODELS = Path(__file__).resolve().parents[1] / "trm_service" / "models"


@pytest.mark.parametrize("name", ["intent-clinc150", "routing-20ng", "sudoku", "code-dictation"])
def test_shipped_manifests_round_trip_byte_for_byte(name: str) -> None:
    text = (MODELS / name / "manifest.json").read_text()
    assert json.dumps(manifest_json(parse_manifest(json.loads(text))), indent=2) + "\n" == text


def test_an_undefined_metric_is_left_out_so_that_the_manifest_is_strict_json() -> None:
    manifest = parse_manifest(json.loads((MODELS / "intent-clinc150" / "manifest.json").read_text()))
    undefined = dataclasses.replace(manifest, metrics={**manifest.metrics, "test_answered_accuracy": float("nan")})
    written = json.dumps(manifest_json(undefined), allow_nan=False)  # raises on a NaN
    assert json.loads(written)["metrics"] == manifest.metrics


def test_the_writer_fills_in_the_checksums_and_replaces_an_earlier_bundle(text_bundle: Path, tmp_path: Path) -> None:
    source = load_bundle(text_bundle)
    files = {name: text_bundle / name for name in source.manifest.files}
    unfilled = dataclasses.replace(source.manifest, files={})
    written = write_bundle(tmp_path / "copy", unfilled, files)
    assert written.path == tmp_path / "copy" and written.manifest == source.manifest
    assert (tmp_path / "copy" / "manifest.json").read_bytes() == (text_bundle / "manifest.json").read_bytes()

    renamed = write_bundle(tmp_path / "copy", dataclasses.replace(unfilled, description="second"), files)
    assert load_bundle(tmp_path / "copy").manifest == renamed.manifest
    assert renamed.manifest.description == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]  # no staging folder left behind


@pytest.mark.parametrize(("umask", "folder_mode"), [(0o022, 0o755), (0o077, 0o700), (0o027, 0o750)])
def test_the_bundle_folder_follows_the_umask_as_its_files_do(text_bundle: Path, tmp_path: Path, umask: int,
                                                              folder_mode: int) -> None:
    """It was made 0755 whatever the umask: a user's umask 077 left the folder listable by anyone."""
    source = load_bundle(text_bundle)
    files = {name: text_bundle / name for name in source.manifest.files}
    before = os.umask(umask)
    try:
        write_bundle(tmp_path / "copy", dataclasses.replace(source.manifest, files={}), files)
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "copy").stat().st_mode) == folder_mode
    assert {stat.S_IMODE(f.stat().st_mode) for f in (tmp_path / "copy").iterdir()} == {0o666 & ~umask}


def test_a_swap_that_fails_leaves_the_earlier_bundle_in_place(text_bundle: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The earlier bundle is renamed aside before the new one is renamed in; when that second rename fails (a
    full disk's metadata, a signal), the earlier one is put back, whole, and no staging folder is left."""
    source = load_bundle(text_bundle)
    files = {name: text_bundle / name for name in source.manifest.files}
    unfilled = dataclasses.replace(source.manifest, files={})
    write_bundle(tmp_path / "copy", unfilled, files)
    rename = Path.rename

    def staging_rename_fails(self: Path, target: Path) -> Path:
        if Path(target) == tmp_path / "copy" and self.name.startswith(".copy.") and not self.name.endswith(".old"):
            raise OSError("the rename failed")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", staging_rename_fails)
    with pytest.raises(OSError, match="the rename failed"):
        write_bundle(tmp_path / "copy", dataclasses.replace(unfilled, description="second"), files)
    assert load_bundle(tmp_path / "copy").manifest == source.manifest
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]


_KILLED_MID_SWAP = """
import dataclasses, os, signal, sys
from pathlib import Path
from trm_bundle import writer
from trm_bundle.manifest import load_bundle

def killed_between_the_renames(staging, folder):
    folder.rename(staging.with_name(staging.name + ".old"))
    os.kill(os.getpid(), signal.SIGKILL)

writer._swap_in = killed_between_the_renames
source = load_bundle(Path(sys.argv[1]))
files = {name: Path(sys.argv[1]) / name for name in source.manifest.files}
writer.write_bundle(Path(sys.argv[2]), dataclasses.replace(source.manifest, files={}), files)
"""


def test_the_next_writer_removes_what_a_writer_killed_mid_swap_left(text_bundle: Path, tmp_path: Path) -> None:
    """A writer SIGKILLed between its two renames left the earlier bundle and the new one in hidden folders
    beside a missing bundle, for good; the next writer of that bundle removes them (and nothing else hidden)."""
    source = load_bundle(text_bundle)
    files = {name: text_bundle / name for name in source.manifest.files}
    unfilled = dataclasses.replace(source.manifest, files={})
    write_bundle(tmp_path / "copy", unfilled, files)
    (tmp_path / ".copy.mine").mkdir()  # a hidden folder of the user's, not a writer's
    killed = subprocess.run([sys.executable, "-c", _KILLED_MID_SWAP, str(text_bundle), str(tmp_path / "copy")],
                            cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(list(tmp_path.glob(".copy.*"))) == 3 and not (tmp_path / "copy").exists()

    write_bundle(tmp_path / "copy", unfilled, files)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".copy.mine", "copy"]
    assert load_bundle(tmp_path / "copy").manifest == source.manifest


def test_writers_of_one_folder_take_turns(text_bundle: Path, tmp_path: Path) -> None:
    """A writer waits while another holds the folder, then writes."""
    source = load_bundle(text_bundle)
    files = {name: text_bundle / name for name in source.manifest.files}
    descriptor = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        written = pool.submit(write_bundle, tmp_path / "copy", dataclasses.replace(source.manifest, files={}), files)
        time.sleep(0.5)
        assert not written.done() and not list(tmp_path.iterdir())
        os.close(descriptor)
        assert written.result(timeout=30).manifest == source.manifest


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_the_writer_never_replaces_what_is_not_a_bundle(text_bundle: Path, tmp_path: Path, kind: str) -> None:
    source = load_bundle(text_bundle)
    files = {name: text_bundle / name for name in source.manifest.files}
    target = tmp_path / "target"
    if kind == "folder":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    else:
        target.write_text("mine")
    with pytest.raises(ValueError, match=f"exists and is a {kind}, not a bundle"):
        write_bundle(target, source.manifest, files)
    assert (target / "notes.txt" if kind == "folder" else target).read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["target"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: dataclasses.replace(m, recursion=dataclasses.replace(m.recursion, state_shape=(99, 32))),
         "implies 17 state rows at max_tokens"),
        (lambda m: dataclasses.replace(m, name="no spaces"), "name 'no spaces' must be"),
        (lambda m: dataclasses.replace(m, halt_threshold=0.0), r"halting\.threshold must be in \(0, 1\]"),
    ],
)
def test_the_writer_refuses_a_bundle_the_server_would_refuse_and_keeps_the_earlier_one(
    text_bundle: Path, tmp_path: Path, edit, message: str
) -> None:
    source = load_bundle(text_bundle)
    files = {name: text_bundle / name for name in source.manifest.files}
    write_bundle(tmp_path / "bundle", source.manifest, files)
    with pytest.raises(BundleError, match=message):
        write_bundle(tmp_path / "bundle", edit(source.manifest), files)
    assert load_bundle(tmp_path / "bundle").manifest_sha256 == source.manifest_sha256
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_a_file_the_manifest_names_must_be_written(text_bundle: Path, tmp_path: Path) -> None:
    source = load_bundle(text_bundle)
    files = {name: text_bundle / name for name in source.manifest.files if name != "tokenizer.json"}
    with pytest.raises(BundleError, match=r"input\.tokenizer names 'tokenizer\.json', which has no checksum"):
        write_bundle(tmp_path / "bundle", source.manifest, files)


def test_the_training_record_is_optional_for_serving_and_typed_when_present() -> None:
    data = json.loads((MODELS / "intent-clinc150" / "manifest.json").read_text())
    training = parse_manifest(data).require_training()
    recorded = data["training"]
    assert (training.optimizer_steps, training.device, training.parameters) == (
        recorded["optimizer_steps"], "cpu", recorded["parameters"])
    assert isinstance(training.optimizer_steps, int) and training.optimizer_steps > 0
    assert isinstance(training.parameters, int) and training.parameters > 0
    assert training.model_config["hidden_size"] == 256 and training.config["name"] == "intent-clinc150"

    served = parse_manifest({key: value for key, value in data.items() if key != "training"})
    assert served.training is None
    with pytest.raises(BundleError, match="records no 'training' section"):
        served.require_training()
    data["training"]["optimizer_steps"] = "many"
    with pytest.raises(BundleError, match=r"'training\.optimizer_steps' must be an integer"):
        parse_manifest(data)


def test_an_integer_beyond_the_wires_uint32_is_refused() -> None:
    """ModelInfo carries the limits as uint32: a larger one loaded, served, and then failed every ListModels call."""
    data = json.loads((MODELS / "intent-clinc150" / "manifest.json").read_text())
    data["input"]["max_chars"] = 2**32
    with pytest.raises(BundleError, match=r"field 'input\.max_chars' must be an integer from 1 to 4294967295, got "):
        parse_manifest(data)
    data["input"]["max_chars"] = 2**32 - 1
    assert parse_manifest(data).input.max_chars == 2**32 - 1


def test_an_abstain_threshold_needs_no_out_of_scope_label_but_a_named_label_must_exist() -> None:
    data = json.loads((MODELS / "intent-clinc150" / "manifest.json").read_text())
    data["out_of_scope"] = {"label": None, "threshold": 0.62}
    abstain = parse_manifest(data).out_of_scope
    assert abstain is not None and (abstain.label, abstain.threshold) == (None, 0.62)
    assert manifest_json(parse_manifest(data))["out_of_scope"] == {"label": None, "threshold": 0.62}
    data["out_of_scope"] = {"label": "unknown", "threshold": 0.62}
    with pytest.raises(BundleError, match=r"out_of_scope\.label 'unknown' is not one of the labels"):
        parse_manifest(data)


@pytest.mark.parametrize(
    ("multiple", "rows_before", "used", "length", "rows"),
    [
        (1, 1, 3, 3, 4),  # one row per token after the answer slot
        (4, 2, 3, 4, 3),  # pooled by 4, answer and document slots: one chunk
        (4, 2, 9, 12, 5),  # rounded up to whole chunks
        (4, 2, 0, 4, 3),  # an empty input still has one chunk
        (4, 2, 16, 16, 6),  # a full input: all of it
    ],
)
def test_the_padding_trim_rule(multiple: int, rows_before: int, used: int, length: int, rows: int) -> None:
    trim = VariableLength(token_multiple=multiple, rows_before_tokens=rows_before)
    tokens = np.array([7] * used + [0] * (16 - used), dtype=np.int64)
    assert trim.trimmed_length(tokens, pad_id=0) == length
    assert trim.trimmed_length(tokens[None, :], pad_id=0) == length  # a batch of one
    assert trim.state_rows(length) == rows


def test_the_padding_token_inside_a_text_does_not_shorten_it() -> None:
    trim = VariableLength(token_multiple=1, rows_before_tokens=1)
    assert trim.trimmed_length(np.array([0, 0, 7, 8, 0, 0], dtype=np.int64), pad_id=0) == 4


@pytest.mark.parametrize(("field", "value", "told"), [
    ("schema_version", True, "schema_version True is not supported"),
    ("schema_version", 1.0, "schema_version 1.0 is not supported"),
    ("name", "intent-clinc150\n", "must be 1-128 characters"),
    ("version", "9" * 4301, r"version '9999.*\.\.\. \(4,303 characters\) must be 1-64 characters"),  # QA: the
    ("version", "1.0\n\x1b[31mRED", "must be 1-64 characters of letters"),  # server stopped; a terminal's escapes
    # QA: a 6 MB description made ListModels fail for every model (over gRPC's 1 MiB), and with it every LLM tool
    ("description", "x" * 10_001, "field 'description' has 10,001 characters, more than 10,000"),
    ("labels", ["a", "b" * 1_001], "a label of 'labels' has 1,001 characters, more than 1,000"),
    ("labels", [f"{i:0999d}" for i in range(263)], "'labels' hold 262,737 characters, more than 262,144"),
])
def test_values_that_only_look_valid_are_refused(field: str, value: object, told: str) -> None:
    data = json.loads((MODELS / "intent-clinc150" / "manifest.json").read_text())
    data[field] = value
    with pytest.raises(BundleError, match=told):
        parse_manifest(data)


def test_a_state_shape_beyond_uint32_and_grid_labels_that_are_not_the_alphabet_are_refused() -> None:
    """QA: a state_shape of 2^40 rows was taken (a warm-up of terabytes stopped the server); grid labels in another
    order than input.alphabet were served, their answers in the wrong symbols."""
    data = json.loads((MODELS / "sudoku" / "manifest.json").read_text())
    data["recursion"]["state_shape"] = [2**40, 256]
    with pytest.raises(BundleError, match=r"'recursion\.state_shape' must be two integers from 1 to 4294967295, got "
                                          r"\[1099511627776, 256\]"):
        parse_manifest(data)
    data = json.loads((MODELS / "sudoku" / "manifest.json").read_text())
    data["labels"][1:3] = data["labels"][2:0:-1]
    with pytest.raises(BundleError, match=r"labels are a blank symbol, then input\.alphabet symbol by symbol \(labels"
                                          r"\[i \+ 1\] = alphabet\[i\]\): '0213456789' against blank"):
        parse_manifest(data)


@pytest.mark.parametrize(("manifest", "told"), [
    ("[" * 100_000 + "]" * 100_000, "manifest.json nests arrays or objects deeper than a reader goes"),  # QA: they
    ('{"schema_version": ' + "9" * 5000 + "}", "manifest.json is not valid JSON: Exceeds the limit"),  # stopped the
])  # server
def test_a_manifest_python_cannot_read_is_a_refused_bundle(tmp_path: Path, manifest: str, told: str) -> None:
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(BundleError, match=told):
        load_bundle(tmp_path)


def test_softmax_is_float64_and_stable_for_large_logits() -> None:
    probabilities = softmax(np.array([[1000.0, 999.0, -1000.0], [0.0, 0.0, 0.0]], dtype=np.float32))
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=0, atol=1e-15)
    assert probabilities[0, 0] == pytest.approx(1 / (1 + np.exp(-1.0)), rel=1e-12)
    np.testing.assert_allclose(probabilities[1], 1 / 3, rtol=1e-15)
