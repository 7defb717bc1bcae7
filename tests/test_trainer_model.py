"""The TRM recursion: shapes, exactly T·(n+1) calls of f per step, gradients only from the last round; the
network's attention and norms as exported."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from trainer.export import export_step
from trainer.model import TRM, ModelConfig, SelfAttention, rms_norm
from trainer.train import exact_correct

torch.set_num_threads(1)


def text_config(**overrides) -> ModelConfig:
    base = dict(task="text", vocab_size=50, seq_len=12, num_outputs=7, hidden_size=32, num_heads=2, n=3, T=2, N_sup=4)
    return ModelConfig(**{**base, **overrides})


def grid_config(**overrides) -> ModelConfig:
    base = dict(task="grid", vocab_size=10, seq_len=81, num_outputs=10, hidden_size=32, mixer="mlp", n=2, T=3, N_sup=4)
    return ModelConfig(**{**base, **overrides})


def count_network_calls(model: TRM) -> list[int]:
    calls = [0]
    model.net.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("cfg", [text_config(), text_config(pool=4, seq_len=16, doc_slot=True), grid_config()])
def test_step_shapes(cfg: ModelConfig) -> None:
    model = TRM(cfg)
    tokens = torch.randint(1, cfg.vocab_size, (3, cfg.seq_len))
    y, z = model.initial_state(3)
    y2, z2, logits, halt = model.step(tokens, y, z)
    assert y2.shape == z2.shape == (3, *cfg.state_shape)
    assert halt.shape == (3,)
    expected = (3, cfg.num_outputs) if cfg.task == "text" else (3, cfg.seq_len, cfg.num_outputs)
    assert logits.shape == expected


@pytest.mark.parametrize(("n", "T"), [(1, 1), (3, 2), (6, 3), (0, 1)])
def test_each_step_calls_the_network_T_times_n_plus_one(n: int, T: int) -> None:
    model = TRM(text_config(n=n, T=T))
    calls = count_network_calls(model)
    tokens = torch.randint(1, 50, (2, 12))
    y, z = model.initial_state(2)
    for step in range(1, 4):
        y, z, _, _ = model.step(tokens, y, z)
        assert calls[0] == step * T * (n + 1)


def test_gradients_flow_only_through_the_last_round() -> None:
    """Changing the no-grad rounds' graph must not change gradients: compare with a manual last round."""
    torch.manual_seed(0)
    model = TRM(text_config(n=2, T=3))
    tokens = torch.randint(1, 50, (4, 12))
    y0, z0 = model.initial_state(4)
    _, _, logits, _ = model.step(tokens, y0, z0)
    logits.sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    x, mask = model.embed(tokens)
    with torch.no_grad():
        y, z = y0, z0
        for _ in range(2):
            y, z = model._round(x, y, z, mask)
    y, z = y.detach(), z.detach()  # nothing before the last round may carry a gradient
    y, z = model._round(x, y, z, mask)
    model.head(y[:, 0]).sum().backward()
    for name, p in model.named_parameters():
        if name in grads:
            torch.testing.assert_close(p.grad, grads[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("T", "state_gets_gradient"), [(1, True), (2, False), (3, False)])
def test_incoming_state_gets_gradient_only_without_no_grad_rounds(T: int, state_gets_gradient: bool) -> None:
    model = TRM(text_config(n=2, T=T))
    tokens = torch.randint(1, 50, (2, 12))
    y, z = (s.requires_grad_(True) for s in model.initial_state(2))
    _, _, logits, _ = model.step(tokens, y, z)
    logits.sum().backward()
    assert (y.grad is not None and z.grad is not None) is state_gets_gradient


def test_padding_does_not_change_the_answer() -> None:
    """Pad positions are masked: the same text padded to the window gives the same logits at any batch mix."""
    torch.manual_seed(0)
    model = TRM(text_config()).eval()
    short = torch.tensor([[5, 6, 7] + [0] * 9])
    other = torch.randint(1, 50, (1, 12))
    y, z = model.initial_state(1)
    alone = model.step(short, y, z)[2]
    yb, zb = model.initial_state(2)
    batched = model.step(torch.cat([short, other]), yb, zb)[2][:1]
    torch.testing.assert_close(alone, batched, rtol=1e-5, atol=1e-5)


def test_pooling_in_the_table_width_equals_projecting_every_token() -> None:
    """Chunk means and the document slot are taken before the token projection: the same x as projecting
    every token first (the projection is linear and bias-free), padding and partly padded chunks included."""
    torch.manual_seed(0)
    cfg = text_config(pool=4, seq_len=16, doc_slot=True, embed_dim=8)
    embed = TRM(cfg).embed
    tokens = torch.randint(1, 50, (3, 16))
    tokens[0, 6:] = cfg.pad_id
    tokens[1, 13:] = cfg.pad_id
    every = embed.project(embed.tokens(tokens))
    valid = (tokens != cfg.pad_id).float()
    chunks = valid.view(3, 4, 4)
    pooled = (chunks[..., None] * every.view(3, 4, 4, -1)).sum(2) / chunks.sum(2, keepdim=True).clamp(min=1.0)
    expected = torch.cat([
        embed.answer_slot.expand(3, -1, -1) * embed.scale,
        rms_norm((valid[..., None] * every).sum(1, keepdim=True)),
        pooled * chunks.amax(2)[..., None] * embed.scale,
    ], dim=1)
    x, key_mask = embed(tokens)
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)
    assert key_mask[0].tolist() == [True, True, True, True, False, False]


def test_text_length_must_be_a_multiple_of_the_pool() -> None:
    with pytest.raises(ValueError, match=r"multiple of model\.pool 8"):
        ModelConfig(task="text", vocab_size=50, seq_len=60, num_outputs=3, pool=8)


def test_halting_target_is_exact_whole_answer_correctness() -> None:
    class_logits = torch.tensor([[2.0, 0.1], [0.1, 2.0]])
    assert exact_correct(class_logits, torch.tensor([0, 0])).tolist() == [True, False]
    cells = torch.zeros(2, 3, 4)
    cells[0, :, 1] = 1.0  # every cell predicts 1
    cells[1, :2, 1] = 1.0
    cells[1, 2, 3] = 1.0  # one cell wrong
    assert exact_correct(cells, torch.ones(2, 3, dtype=torch.long)).tolist() == [True, False]


def test_written_out_attention_equals_the_library_attention() -> None:
    torch.manual_seed(0)
    attention = SelfAttention(dim=32, num_heads=4, seq_len=9)
    x = torch.randn(3, 9, 32)
    key_mask = torch.ones(3, 9, dtype=torch.bool)
    key_mask[1, 5:] = False
    key_mask[2, 2:] = False
    batch, seq, dim = x.shape
    qkv = attention.qkv(x).view(batch, seq, 3, 4, dim // 4).permute(2, 0, 3, 1, 4)
    q, k = attention.rotary(qkv[0]), attention.rotary(qkv[1])
    expected = F.scaled_dot_product_attention(q, k, qkv[2], attn_mask=key_mask[:, None, None, :])
    expected = attention.out(expected.transpose(1, 2).reshape(batch, seq, dim))
    torch.testing.assert_close(attention(x, key_mask), expected, atol=1e-5, rtol=1e-5)


def test_the_exported_step_lets_onnx_runtime_fuse_every_norm(tmp_path: Path) -> None:
    cfg = text_config(n=1, T=1, N_sup=1)
    export_step(TRM(cfg).eval(), tmp_path / "step.onnx")
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(tmp_path / "step.onnx"), options, providers=["CPUExecutionProvider"])
    ops = Counter(node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)
    norms_per_step = 2 * cfg.num_layers * cfg.T * (cfg.n + 1)  # two per block, every call of f
    assert ops["SimplifiedLayerNormalization"] == norms_per_step
    assert ops["ReduceMean"] == ops["Pow"] == 0
