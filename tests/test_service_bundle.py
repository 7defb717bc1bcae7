"""Bundle loading: checksums verified, corrupt or incompatible bundles refused with a clear reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from onnxruntime.quantization import QuantType, quantize_dynamic

from trm_service.runtime.bundle import BundleError, GridInput, TextInput, load_bundle, sha256_of
from trm_service.runtime.loader import LoadOptions, load_model
from trm_service.runtime.session import SessionSettings

OPTIONS = LoadOptions(SessionSettings(intra_op_threads=1))


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
    assert isinstance(text.bundle.manifest.input, TextInput) and text.encoder is not None
    assert isinstance(grid.bundle.manifest.input, GridInput) and grid.encoder is None
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
        (lambda m: m.update(schema_version=2), r"schema_version 2 is not supported \(this server reads 1\)"),
        (lambda m: m.pop("recursion"), "missing field 'recursion'"),
        (lambda m: m.update(task="speech"), "field 'task' must be one of text_classification, grid"),
        (lambda m: m["files"].update({"../escape": "0" * 64}), "is not a file name inside the bundle"),
        (lambda m: m.update(name="no spaces allowed"), "name 'no spaces allowed' must be"),
        (lambda m: m["halting"].update(threshold=1.5), r"halting\.threshold must be in \(0, 1\]"),
        (lambda m: m["out_of_scope"].update(label="nope"), "out_of_scope.label 'nope' is not one of"),
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
        (lambda m: m["recursion"].update(state_shape=[99, 32]), r"input 'y' has shape .* \[batch, 99, 32\]"),
        (lambda m: m.update(labels=m["labels"][:-1], out_of_scope=None), r"output 'logits' has shape"),
        (lambda m: m["input"].update(max_tokens=8), r"input 'tokens' has shape .* \[batch, 8\]"),
    ],
)
def test_a_manifest_that_does_not_fit_the_onnx_graph_is_incompatible(
    text_bundle: Path, tmp_path: Path, edit, message
):
    folder = _copy(text_bundle, tmp_path)
    _edit_manifest(folder, edit)
    with pytest.raises(BundleError, match=message):
        load_model(folder, OPTIONS)
