"""The sequence TRM as two ONNX graphs (docs/BUNDLE.md, task "sequence"): the server owns both loops.

- ``encode.onnx``: source ids [B, S] -> the input cache: `source_keys`, `source_values`
  [B, layers, heads, S, head_dim] and `pointer_keys` [B, S, d].
- ``step.onnx``: one refinement step of each row's current token: the input cache (with the source ids,
  which give the mask and what the pointer copies), the token emitted before it (`previous` [B]), its
  output `position` [B], its states `y`, `z` [B, d], and the prefix cache entries of the step each row is
  at (`prefix_keys`, `prefix_values` [B, slots, heads, P, head_dim], `prefix_mask` [B, P], false where a
  row's prefix is shorter) -> `y_next`, `z_next`, `log_probs` [B, V], `halt_logit` [B], and the token's
  entries for this step, `step_keys`, `step_values` [B, slots, heads, head_dim].

Exported without constant folding, so initializers keep their PyTorch parameter names.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from trainer.sequence.model import KV, SequenceTRM, SourceCache
from trainer.sequence.vocab import BOS_ID, PAD_ID
from trm_bundle.manifest import (
    ENCODE_FILE,
    ENCODE_INPUTS,
    ENCODE_OUTPUTS,
    SEQUENCE_STEP_FILE,
    SEQUENCE_STEP_INPUTS,
    SEQUENCE_STEP_OUTPUTS,
)

OPSET = 17


class EncodeGraph(nn.Module):
    def __init__(self, model: SequenceTRM) -> None:
        super().__init__()
        self.model = model

    def forward(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cache = self.model.encode(source)
        return (torch.stack([kv.k for kv in cache.layers], 1), torch.stack([kv.v for kv in cache.layers], 1),
                cache.pointer_keys)


class StepGraph(nn.Module):
    def __init__(self, model: SequenceTRM) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, source: torch.Tensor, source_keys: torch.Tensor, source_values: torch.Tensor,
        pointer_keys: torch.Tensor, previous: torch.Tensor, position: torch.Tensor, y: torch.Tensor,
        z: torch.Tensor, prefix_keys: torch.Tensor, prefix_values: torch.Tensor, prefix_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        model = self.model
        mask = source != PAD_ID
        layers = [KV(source_keys[:, i], source_values[:, i], mask) for i in range(model.cfg.num_layers)]
        prefix = [KV(prefix_keys[:, s], prefix_values[:, s], prefix_mask) for s in range(model.cfg.slots)]
        out = model.step(model.embed_tokens(previous), y, z, position, SourceCache(layers, pointer_keys, source),
                         prefix)
        return (out.y, out.z, out.logits, out.halt_logit, torch.stack([k[:, :, 0] for k, _ in out.own], 1),
                torch.stack([v[:, :, 0] for _, v in out.own], 1))


def example_inputs(model: SequenceTRM, batch: int = 2, source_len: int = 7, prefix_len: int = 3) -> dict:
    """Inputs of both graphs for a random batch (for tracing and parity checks), the lengths within the model's
    limits (a model sized to a user's short rows reads fewer than `source_len` characters)."""
    cfg = model.cfg
    source_len = min(source_len, cfg.max_source_len)
    prefix_len = max(1, min(prefix_len, cfg.max_target_len - 1))
    generator = torch.Generator().manual_seed(0)
    source = torch.randint(3, cfg.vocab_size, (batch, source_len), generator=generator)
    source[0, -2:] = PAD_ID
    with torch.no_grad():
        keys, values, pointer_keys = EncodeGraph(model)(source)
    entries = (batch, cfg.slots, cfg.num_heads, prefix_len, cfg.head_dim)
    prefix_mask = torch.ones(batch, prefix_len, dtype=torch.bool)
    prefix_mask[0, prefix_len - 1:] = False  # row 0 has a shorter prefix
    return {"source": source, "source_keys": keys, "source_values": values, "pointer_keys": pointer_keys,
            "previous": torch.full((batch,), BOS_ID, dtype=torch.long),
            "position": torch.full((batch,), prefix_len, dtype=torch.long),
            "y": torch.randn(batch, cfg.hidden_size, generator=generator),
            "z": torch.randn(batch, cfg.hidden_size, generator=generator),
            "prefix_keys": torch.randn(*entries, generator=generator),
            "prefix_values": torch.randn(*entries, generator=generator), "prefix_mask": prefix_mask}


def export_graphs(model: SequenceTRM, directory: Path) -> tuple[Path, Path]:
    """Write ENCODE_FILE and SEQUENCE_STEP_FILE of `model` (CPU, eval mode) into `directory`, dynamic axes for the
    batch, the source length and the prefix length."""
    model = model.to("cpu").eval()
    inputs = example_inputs(model)
    encode_axes = {"source": {0: "batch", 1: "source"}, "source_keys": {0: "batch", 3: "source"},
                   "source_values": {0: "batch", 3: "source"}, "pointer_keys": {0: "batch", 1: "source"}}
    per_row = ("previous", "position", "y", "z", *SEQUENCE_STEP_OUTPUTS)
    step_axes = {**encode_axes, **{name: {0: "batch"} for name in per_row},
                 "prefix_keys": {0: "batch", 3: "prefix"}, "prefix_values": {0: "batch", 3: "prefix"},
                 "prefix_mask": {0: "batch", 1: "prefix"}}
    encode_path, step_path = directory / ENCODE_FILE, directory / SEQUENCE_STEP_FILE
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(EncodeGraph(model), (inputs["source"],), str(encode_path), input_names=list(ENCODE_INPUTS),
                          output_names=list(ENCODE_OUTPUTS), dynamic_axes=encode_axes, opset_version=OPSET,
                          do_constant_folding=False, dynamo=False)
        torch.onnx.export(StepGraph(model), tuple(inputs[name] for name in SEQUENCE_STEP_INPUTS), str(step_path),
                          input_names=list(SEQUENCE_STEP_INPUTS), output_names=list(SEQUENCE_STEP_OUTPUTS),
                          dynamic_axes=step_axes, opset_version=OPSET, do_constant_folding=False, dynamo=False)
    return encode_path, step_path
