"""Bundle loading: checksums verified, corrupt or incompatible bundles refused with a clear reason."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnxruntime.quantization import QuantType, quantize_dynamic

from trm_bundle.checksums import sha256_of
from trm_bundle.manifest import BundleError, GridInput, TextInput, load_bundle
from trm_service.runtime import loader
from trm_service.runtime.grid_codec import GridCodec
from trm_service.runtime.loader import LoadOptions, load_model
from trm_service.runtime.session import SessionSettings, StepSession
from trm_service.runtime.text_codec import TextCodec

OPTIONS = LoadOptions(SessionSettings(intra_op_threads=1))
SHIPPED = Path(__file__).resolve().parents[1] / "trm_service" / "models"


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / bundle.name))


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_a_text_and_a_grid_bundle_load_with_their_specs(text_bundle: Path, grid_bundle: Path):
    text = load_model(text_bundle, OPTIONS)
    grid = load_model(grid_bundle, OPTIONS)
    assert isinstance(text.bundle.manifest.input, TextInput) and isinstance(text.codec, TextCodec)
    assert isinstance(grid.bundle.manifest.input, GridInput) and isinstance(grid.codec, GridCodec)
    assert grid.bundle.manifest.input.cells == 81
    assert text.onnx_file == "model.onnx" and text.warm_step_s > 0


def test_int8_falls_back_to_fp32_when_the_bundle_has_none(text_bundle: Path):
    assert load_model(text_bundle, LoadOptions(SessionSettings(), int8=True)).onnx_file == "model.onnx"


def test_int8_is_used_when_asked_for_and_shipped(text_bundle: Path, tmp_path: Path):
    folder = _copy(text_bundle, tmp_path)
    quantize_dynamic(str(folder / "model.onnx"), str(folder / "model.int8.onnx"), weight_type=QuantType.QInt8)

    def add_int8(manifest: dict) -> None:
        manifest["onnx"]["int8"] = "model.int8.onnx"
        manifest["files"]["model.int8.onnx"] = sha256_of(folder / "model.int8.onnx")

    _edit_manifest(folder, add_int8)
    assert load_model(folder, LoadOptions(SessionSettings(), int8=True)).onnx_file == "model.int8.onnx"
    assert load_model(folder, LoadOptions(SessionSettings())).onnx_file == "model.onnx"


@pytest.mark.parametrize("kind", ["a link outside", "a pipe", "too large"])
def test_a_manifest_that_is_not_a_plain_file_of_the_bundle_is_refused(text_bundle: Path, tmp_path: Path, kind: str):
    """QA: manifest.json as a link to a file outside the bundle was read; as a named pipe it would block every
    reload for good; it was read whole whatever its size."""
    folder = _copy(text_bundle, tmp_path / "copy")
    manifest = folder / "manifest.json"
    if kind == "a link outside":
        outside = tmp_path / "elsewhere.json"
        outside.write_bytes(manifest.read_bytes())
        manifest.unlink()
        manifest.symlink_to(outside)
        told = "manifest.json is a link to a file outside the bundle"
    elif kind == "a pipe":
        manifest.unlink()
        os.mkfifo(manifest)
        told = r"manifest.json is not a file \(a pipe or a device\?\)"
    else:
        manifest.write_text(manifest.read_text()[:-2] + " " * (4 << 20) + "}\n")
        told = r"manifest\.json has 4,19\d,\d{3} bytes, more than 4,194,304"
    with pytest.raises(BundleError, match=told):
        load_bundle(folder)


def test_a_modified_model_file_fails_its_checksum(text_bundle: Path, tmp_path: Path):
    folder = _copy(text_bundle, tmp_path)
    with (folder / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match=r"checksum mismatch for 'model\.onnx'"):
        load_bundle(folder)


def test_a_missing_file_is_refused(text_bundle: Path, tmp_path: Path):
    folder = _copy(text_bundle, tmp_path)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match=r"file 'tokenizer\.json' listed in the manifest is missing"):
        load_bundle(folder)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(schema_version=8), r"schema_version 8 is not supported \(this server reads 1, 2, .*, 7"),
        (lambda m: m.update(task="sequence"), r"field .task. must be one of text_classification, grid; got .sequence."),
        (lambda m: m.pop("recursion"), "missing field 'recursion'"),
        (lambda m: m.update(task="speech"), "field 'task' must be one of text_classification, grid"),
        (lambda m: m["files"].update({"../escape": "0" * 64}), "is not a file name inside the bundle"),
        # QA: one 32 MB file listed under 100 names (`./x`, `././x`, ...) was hashed 100 times at every (re)load
        (lambda m: m["files"].update({"./tokenizer.json": m["files"]["tokenizer.json"]}),
         r"files: './tokenizer\.json' is not written plainly: write 'tokenizer\.json'"),
        (lambda m: m["files"].update({f"f{i}": "0" * 64 for i in range(100)}), "files: 10[0-9] names, more than 100"),
        (lambda m: m["input"].update(max_tokens=1_000_000),  # QA: 18.6 s and 1.66 GB of loading, then refused
         r"field 'input\.max_tokens' must be an integer from 1 to 16384, got 1000000"),
        (lambda m: m.update(name="no spaces allowed"), "name 'no spaces allowed' must be"),
        (lambda m: m["halting"].update(threshold=1.5), r"halting\.threshold must be in \(0, 1\]"),
        (lambda m: m["out_of_scope"].update(label="nope"), "out_of_scope.label 'nope' is not one of"),
        (lambda m: m["input"]["variable_length"].update(token_multiple=3), r"max_tokens 16 is not a multiple of"),
        (lambda m: m["recursion"].update(state_shape=[99, 32]), "implies 17 state rows at max_tokens"),
        (lambda m: m["input"].update(variable_length=4), "'input.variable_length' must be an object or null"),
    ],
)
def test_an_invalid_manifest_is_refused_naming_the_field(text_bundle: Path, tmp_path: Path, edit, message):
    folder = _copy(text_bundle, tmp_path)
    _edit_manifest(folder, edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(folder)


def test_manifest_that_is_not_json_is_refused(text_bundle: Path, tmp_path: Path):
    folder = _copy(text_bundle, tmp_path)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match=r"manifest\.json is not valid JSON"):
        load_bundle(folder)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["recursion"].update(state_shape=[17, 48]), r"input 'y' has shape .* \[batch, 17, 48\]"),
        (lambda m: m.update(labels=m["labels"][:-1], out_of_scope=None), r"output 'logits' has shape"),
    ],
)
def test_a_manifest_that_does_not_fit_the_onnx_graph_is_incompatible(
    text_bundle: Path, tmp_path: Path, edit, message
):
    folder = _copy(text_bundle, tmp_path)
    _edit_manifest(folder, edit)
    with pytest.raises(BundleError, match=message):
        load_model(folder, OPTIONS)


def test_a_fixed_length_graph_cannot_claim_variable_length(grid_bundle: Path, text_bundle: Path, tmp_path: Path):
    """A graph exported with a fixed token axis must not be trimmed: refused at load, not failing per request."""
    folder = _copy(text_bundle, tmp_path)
    fixed = _copy(grid_bundle, tmp_path / "grid")
    assert load_model(fixed, OPTIONS).session.input_length(np.zeros(81, dtype=np.int64)) == 81
    model = onnx.load(str(folder / "model.onnx"))
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) > 1 and dims[1].dim_param:
            dims[1].dim_value = 16 if value.name == "tokens" else 17
    onnx.save(model, str(folder / "model.onnx"))
    _edit_manifest(folder, lambda m: m["files"].update({"model.onnx": sha256_of(folder / "model.onnx")}))
    with pytest.raises(BundleError, match=r"input\.variable_length is set but model\.onnx has a fixed axis 1"):
        load_model(folder, OPTIONS)
    _edit_manifest(folder, lambda m: m["input"].update(variable_length=None))
    assert load_model(folder, OPTIONS).session.input_length(np.ones(16, dtype=np.int64)) == 16


def test_a_variable_length_session_trims_to_the_used_tokens(text_bundle: Path, long_bundle: Path):
    text, long = load_model(text_bundle, OPTIONS).session, load_model(long_bundle, OPTIONS).session
    three = np.array([5, 6, 7] + [0] * 13, dtype=np.int64)
    assert (text.input_length(three), text.state_rows(3)) == (3, 4)  # answer slot + 3 tokens
    assert (long.input_length(three), long.state_rows(4)) == (4, 3)  # pooled by 4: answer, document, 1 chunk
    assert long.input_length(np.zeros(16, dtype=np.int64)) == 4  # an empty input still has one chunk


def test_a_light_step_keeps_one_thread_and_no_lanes_where_more_are_offered(text_bundle: Path):
    offered = LoadOptions(SessionSettings(intra_op_threads=1), heavy_step_threads=2)
    loaded = load_model(text_bundle, offered)
    assert (loaded.session.intra_op_threads, loaded.lanes) == (1, None)


@pytest.mark.parametrize(("gain", "threads"), [(float("inf"), 2), (0.0, 1)], ids=["faster", "not-faster"])
def test_a_heavy_step_keeps_more_threads_only_where_they_make_it_faster_and_lanes_either_way(
    text_bundle: Path, monkeypatch: pytest.MonkeyPatch, gain: float, threads: int
):
    """A step of one call gets the threads only where they make it faster; the calls of a step of several
    requests run in one lane per offered thread, on a one-thread session, whichever way that went."""
    monkeypatch.setattr(loader, "HEAVY_STEP_S", 0.0)  # every step counts as heavy
    monkeypatch.setattr(loader, "THREADED_GAIN", gain)  # inf: any time is fast enough; 0: none is
    offered = LoadOptions(SessionSettings(intra_op_threads=1), heavy_step_threads=2)
    loaded = load_model(text_bundle, offered)
    assert loaded.session.intra_op_threads == threads
    assert loaded.lanes is not None and (loaded.lanes.count, loaded.lanes.session.intra_op_threads) == (2, 1)


def test_more_threads_give_the_same_step(grid_bundle: Path):
    manifest = load_bundle(grid_bundle).manifest
    one, two = (StepSession(grid_bundle / manifest.onnx_fp32, manifest, SessionSettings(intra_op_threads=n))
                for n in (1, 2))  # fmt: skip
    tokens = np.random.default_rng(0).integers(0, 10, size=(3, one.sequence_length))
    state = np.random.default_rng(1).standard_normal((3, *one.state_shape)).astype(np.float32)
    alone, threaded = one.run(tokens, state, state), two.run(tokens, state, state)
    for name in ("y_next", "z_next", "logits", "halt_logit"):
        np.testing.assert_array_equal(getattr(threaded, name), getattr(alone, name), err_msg=name)


def test_a_graph_input_the_server_does_not_feed_is_refused_at_load(text_bundle: Path, tmp_path: Path):
    """An extra input would fail every step (ONNX Runtime's missing-input ValueError, not a bundle error):
    refused at load, naming it."""
    folder = _copy(text_bundle, tmp_path)
    model = onnx.load(str(folder / "model.onnx"))
    model.graph.input.append(onnx.helper.make_tensor_value_info("temperature", onnx.TensorProto.FLOAT, [1]))
    onnx.save(model, str(folder / "model.onnx"))
    _edit_manifest(folder, lambda m: m["files"].update({"model.onnx": sha256_of(folder / "model.onnx")}))
    with pytest.raises(BundleError, match=r"model\.onnx has inputs the server does not feed: temperature"):
        load_model(folder, OPTIONS)


def _rewrite_graph(folder: Path, model: onnx.ModelProto, **save) -> None:
    """Save `model` as the bundle's model.onnx and list its new checksum."""
    onnx.save(model, str(folder / "model.onnx"), **save)
    _edit_manifest(folder, lambda m: m["files"].update({"model.onnx": sha256_of(folder / "model.onnx")}))


def test_labels_the_graphs_logits_do_not_have_are_refused_where_its_label_axis_is_symbolic(tmp_path: Path):
    """QA: the shipped graphs name their label axis, so intent's manifest without `alarm` loaded and answered
    shifted labels (wake me up at seven: application_status) and INTERNAL for the last; the warm-up's logits tell."""
    folder = _copy(SHIPPED / "intent-clinc150", tmp_path)
    _edit_manifest(folder, lambda m: m["labels"].remove("alarm"))
    with pytest.raises(BundleError, match=r"model\.int8\.onnx answers logits of shape \[151\] per input, where the "
                                          r"manifest's labels imply \[150\]"):
        load_model(folder, LoadOptions(SessionSettings(intra_op_threads=1), int8=True))


def test_a_sequence_bundle_whose_labels_the_step_does_not_write_is_refused(tmp_path: Path):
    """QA: code-dictation without `!` wrote `x equaylde y` for "x equals tilde y"; without `~`, INTERNAL."""
    folder = _copy(SHIPPED / "code-dictation", tmp_path)
    _edit_manifest(folder, lambda m: m["labels"].remove("~"))
    with pytest.raises(BundleError, match=r"the step graph answers 98 log-probabilities per token, where the manifest "
                                          r"has 97 labels"):
        load_model(folder, OPTIONS)


def test_a_graph_whose_weights_lie_in_another_file_is_refused(text_bundle: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    """QA: ONNX external data, a file no checksum covers: damaged, it was served (a Sudoku answer of all 0s at
    confidence 1.000)."""
    folder = _copy(text_bundle, tmp_path)
    model = onnx.load(str(folder / "model.onnx"))
    _rewrite_graph(folder, model, save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (folder / "weights.bin").stat().st_size > 0
    with pytest.raises(BundleError, match=r"its weights lie in another file \(ONNX external data\)"):
        load_model(folder, OPTIONS)
    # QA: ONNX Runtime looked for the file in the server's working directory, and loaded it from there
    shutil.copy(folder / "weights.bin", tmp_path / "weights.bin")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BundleError, match=r"its weights lie in another file \(ONNX external data\)"):
        load_model(folder, OPTIONS)


def test_a_listed_file_that_links_outside_the_folder_is_refused(text_bundle: Path, tmp_path: Path):
    """QA: symbolic links were followed out of the folder, outside files hashed and outside graphs served."""
    folder = _copy(text_bundle, tmp_path / "bundles")
    outside = tmp_path / "elsewhere.onnx"
    (folder / "model.onnx").rename(outside)
    (folder / "model.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match=rf"file 'model\.onnx' is a link to {outside}, outside the bundle's folder"):
        load_bundle(folder)
    (folder / "model.onnx").unlink()
    (folder / "graphs").mkdir()
    (folder / "graphs" / "model.onnx").symlink_to(outside)  # a link that stays inside is a file of the bundle
    (folder / "model.onnx").symlink_to(folder / "graphs" / "model.onnx")
    with pytest.raises(BundleError, match="outside the bundle's folder"):
        load_bundle(folder)
    (folder / "graphs" / "model.onnx").unlink()
    outside.rename(folder / "graphs" / "model.onnx")
    assert load_bundle(folder).manifest.files


def test_a_step_too_large_for_memory_is_refused_not_raised(tmp_path: Path):
    """QA: limits within the contract's range (a state of 2^32 - 1 rows) made the warm-up allocate 4 TiB, and the
    MemoryError stopped the server with every other bundle."""
    folder = _copy(SHIPPED / "intent-clinc150", tmp_path)
    rows = 2**32 - 1

    def huge(manifest: dict) -> None:
        manifest["recursion"]["state_shape"][0] = rows
        manifest["input"]["variable_length"]["rows_before_tokens"] = rows - manifest["input"]["max_tokens"] // (
            manifest["input"]["variable_length"]["token_multiple"])

    _edit_manifest(folder, huge)
    with pytest.raises(BundleError, match=r"needs more memory than there is"):
        load_model(folder, OPTIONS)


def test_a_tokenizer_with_ids_the_token_table_lacks_is_refused(text_bundle: Path, tmp_path: Path):
    """QA: a word of id 50,000 in tokenizer.json, where the step's table has fewer rows: the bundle loaded, and a
    text holding the word was answered INTERNAL (an IndexError)."""
    folder = _copy(text_bundle, tmp_path)
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"]["zzqqx"] = 50_000
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    _edit_manifest(folder, lambda m: m["files"].update({"tokenizer.json": sha256_of(folder / "tokenizer.json")}))
    with pytest.raises(BundleError, match=r"the tokenizer writes ids up to 50000, which model\.onnx cannot read"):
        load_model(folder, OPTIONS)
