"""Bundles: ONNX parity with PyTorch, checksums that catch tampering, and the exact weights round trip."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from trainer_support import random_tokens

from trainer import evaluate as ev
from trainer.evaluate import torch_step_fn
from trainer.export import export_step, torch_model_from_bundle, trimmed_step_diff
from trainer.model import TRM, ModelConfig, count_parameters
from trainer.testing import make_random_bundle, random_model
from trm_bundle import BundleError
from trm_bundle.manifest import FP32_FILE, load_bundle

torch.set_num_threads(1)

CONFIGS = {
    "text": ModelConfig(task="text", vocab_size=300, seq_len=24, num_outputs=9, hidden_size=64, num_heads=4, n=2, T=2,
                        N_sup=4, embed_dim=32),
    "pooled-text": ModelConfig(task="text", vocab_size=300, seq_len=64, num_outputs=5, hidden_size=48, num_heads=4,
                               n=2, T=2, N_sup=3, pool=8, doc_slot=True),
    "grid": ModelConfig(task="grid", vocab_size=10, seq_len=81, num_outputs=10, hidden_size=64, mixer="mlp", n=2, T=2,
                        N_sup=4),
    "reader-pooled-text": ModelConfig(task="text", vocab_size=300, seq_len=64, num_outputs=5, hidden_size=48,
                                      num_heads=4, n=2, T=2, N_sup=3, pool=8, doc_slot=True, reader_rows=120),
}




@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_onnx_step_matches_pytorch(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = CONFIGS[name]
    model = random_model(cfg)
    export_step(model, tmp_path / FP32_FILE)
    tokens = random_tokens(cfg, 200, seed=1)
    state = np.random.default_rng(2).normal(size=(200, *cfg.state_shape)).astype(np.float32)
    ours = torch_step_fn(model)(tokens, state, state)
    theirs = ev.onnx_step_fn(tmp_path / FP32_FILE)(tokens, state, state)
    for a, b in zip(ours, theirs, strict=True):
        assert np.abs(a - b).max() <= 1e-4


@pytest.mark.parametrize("name", ["text", "pooled-text", "reader-pooled-text"])
def test_text_step_trimmed_to_each_input_matches_the_full_length_step(name: str, tmp_path: Path) -> None:
    """What lets the server run a batch at its longest input: trimming padding changes no output."""
    torch.manual_seed(0)
    cfg = CONFIGS[name]
    export_step(random_model(cfg), tmp_path / FP32_FILE)
    step = ev.onnx_step_fn(tmp_path / FP32_FILE)
    tokens = random_tokens(cfg, 40, seed=3)
    zeros = np.zeros((len(tokens), *cfg.state_shape), dtype=np.float32)
    assert trimmed_step_diff(step, cfg, tokens, step(tokens, zeros, zeros)) <= 1e-4
    dims = input_dims(tmp_path / FP32_FILE)
    assert dims["tokens"] == ["batch", "tokens"] and dims["y"] == ["batch", "rows", cfg.hidden_size]


def test_grid_step_keeps_fixed_length(tmp_path: Path) -> None:
    export_step(TRM(CONFIGS["grid"]).eval(), tmp_path / FP32_FILE)
    assert input_dims(tmp_path / FP32_FILE)["tokens"] == ["batch", 81]


def input_dims(path: Path) -> dict[str, list[int | str]]:
    """Each graph input's axes: fixed sizes, or the names of dynamic axes."""
    graph = onnx.load(str(path)).graph
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}


@pytest.mark.parametrize("name", ["text", "pooled-text", "reader-pooled-text"])  # grids: test_shipped_bundles
def test_full_recursion_agrees_with_pytorch(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = CONFIGS[name]
    model = random_model(cfg)
    with torch.no_grad():  # random weights give near-tied logits; a decisive head makes argmax meaningful
        model.head.weight.mul_(20.0)
    export_step(model, tmp_path / FP32_FILE)
    tokens = random_tokens(cfg, 200, seed=1)
    full_torch = ev.run_recursion(torch_step_fn(model), tokens, cfg.state_shape, cfg.N_sup)
    full_onnx = ev.run_recursion(ev.onnx_step_fn(tmp_path / FP32_FILE), tokens, cfg.state_shape, cfg.N_sup)
    agreement = (full_torch.predictions == full_onnx.predictions).mean()
    assert agreement >= 0.995


def test_int8_token_table_rounds_each_row_and_the_step_runs_what_it_stores(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = replace(CONFIGS["pooled-text"], embedding_storage="int8")
    trained = TRM(cfg).eval()
    stored = TRM(cfg).eval()
    stored.load_state_dict(trained.state_dict())
    stored.store_embeddings()
    table = trained.embed.tokens.weight.detach()
    rounded = stored.embed.tokens(torch.arange(cfg.vocab_size))
    half_level = table.abs().amax(1, keepdim=True) / 254  # rows span 255 levels of their largest |value|
    assert ((rounded - table).abs() <= half_level * 1.0001).all()
    assert not torch.equal(rounded, table)
    export_step(stored, tmp_path / FP32_FILE)
    graph = onnx.load(str(tmp_path / FP32_FILE)).graph
    stored_types = {init.name: init.data_type for init in graph.initializer}
    assert stored_types["embed.tokens.codes"] == onnx.TensorProto.INT8 and "embed.tokens.weight" not in stored_types
    tokens = random_tokens(cfg, 100, seed=1)
    state = np.random.default_rng(2).normal(size=(100, *cfg.state_shape)).astype(np.float32)
    ours = torch_step_fn(stored)(tokens, state, state)
    theirs = ev.onnx_step_fn(tmp_path / FP32_FILE)(tokens, state, state)
    assert max(np.abs(a - b).max() for a, b in zip(ours, theirs, strict=True)) <= 1e-4
    assert count_parameters(stored) == count_parameters(trained)


@pytest.mark.parametrize("task", ["text", "grid"])
def test_manifest_lists_every_file_with_its_checksum(task: str, tmp_path: Path) -> None:
    bundle = make_random_bundle(tmp_path, task)
    manifest = load_bundle(bundle).manifest
    on_disk = {p.name for p in bundle.iterdir()} - {"manifest.json"}
    assert set(manifest.files) == on_disk
    assert json.loads((bundle / "manifest.json").read_text())["schema_version"] == 1
    model_config = ModelConfig(**manifest.require_training().model_config)
    assert manifest.recursion.state_shape == TRM(model_config).cfg.state_shape


@pytest.mark.parametrize("damage", ["flip a byte", "delete"])
def test_tampered_bundle_is_refused(damage: str, tmp_path: Path) -> None:
    bundle = make_random_bundle(tmp_path, "text")
    target = bundle / FP32_FILE
    if damage == "delete":
        target.unlink()
    else:
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=FP32_FILE):
        load_bundle(bundle)


def test_bundle_rebuilds_the_exact_pytorch_model(tmp_path: Path) -> None:
    bundle = make_random_bundle(tmp_path, "grid", seed=5)
    model, manifest = torch_model_from_bundle(bundle)
    tokens = random_tokens(model.cfg, 8, seed=4)
    y = np.zeros((8, *model.cfg.state_shape), dtype=np.float32)
    ours = torch_step_fn(model)(tokens, y, y)
    theirs = ev.onnx_step_fn(bundle / manifest.onnx_fp32)(tokens, y, y)
    assert max(np.abs(a - b).max() for a, b in zip(ours, theirs, strict=True)) <= 1e-4
    assert json.loads((bundle / "manifest.json").read_text())["name"] == "random-sudoku"
