"""An autoregressive TRM with per-token refinement: written answers one character at a time.

The input is encoded once; each layer of the tiny network f keeps the encoding's keys and values
(the input cache). The outer loop emits one output token at a time. For the current token the TRM
refines that token's own latent z and answer state y, exactly as ``trainer.model.TRM`` refines a whole
answer (each supervision step: T rounds of n updates of z, then one of y; gradients through the last
round only), while every call of f attends to the input cache and to the prefix cache: the keys and
values of the tokens already emitted. A halting head on y says when the token is settled; its final
step's keys and values (those of the last call of f, the one that updated y) are then committed to the
prefix cache and the token is emitted. Work per refinement step grows linearly with the prefix, and
memory is the two caches plus the weights.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from trainer.model import RotaryEmbedding, SelfAttention, SwiGLU, _init_linear, rms_norm
from trainer.sequence.vocab import PAD_ID, VOCAB_SIZE


@dataclass
class SequenceConfig:
    """Architecture and recursion hyper-parameters of a sequence TRM."""

    vocab_size: int = VOCAB_SIZE
    max_source_len: int = 256  # input characters
    max_target_len: int = 64  # output tokens, the end mark included
    hidden_size: int = 128
    num_heads: int = 4
    encoder_layers: int = 2
    num_layers: int = 2  # layers of the refined network f
    expansion: float = 4.0
    n: int = 2  # latent updates per round
    T: int = 2  # rounds per refinement step
    N_sup: int = 4  # most refinement steps per token

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.n < 0 or self.T < 1 or self.N_sup < 1:
            raise ValueError(f"need n >= 0, T >= 1 and N_sup >= 1, got n={self.n} T={self.T} N_sup={self.N_sup}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class KV:
    """Keys and values of one layer: [B, heads, positions, head_dim] each, and which positions count
    ([B, positions] bool; None when all do)."""

    k: torch.Tensor
    v: torch.Tensor
    mask: torch.Tensor | None = None

    def rows(self, index: torch.Tensor) -> KV:
        """The entries of some batch rows."""
        return KV(self.k[index], self.v[index], None if self.mask is None else self.mask[index])

    def appended(self, k: torch.Tensor, v: torch.Tensor) -> KV:
        """This cache with one more position per row (k, v: [B, heads, head_dim]) that counts."""
        mask = None
        if self.mask is not None:
            mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        return KV(torch.cat([self.k, k[:, :, None]], dim=2), torch.cat([self.v, v[:, :, None]], dim=2), mask)


@dataclass
class StepOutput:
    """One refinement step of the current token: new states, answer logits, halting logit, and the
    keys and values (per layer, [B, heads, head_dim]) that are committed if the token is emitted now."""

    y: torch.Tensor
    z: torch.Tensor
    logits: torch.Tensor
    halt_logit: torch.Tensor
    commit: list[tuple[torch.Tensor, torch.Tensor]]


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position of x [B, heads, head_dim] at each row's own position (cos, sin: [B, head_dim])."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None] + rotated * sin[:, None]


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
    own: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """One query per row, q [B, heads, head_dim], over k, v [B, heads, P, head_dim] (and the row's
    own key and value, if given, without copying the cache) -> [B, heads * head_dim].

    Written as broadcast products rather than matrix products: with one query per row, batched matmuls
    (``scaled_dot_product_attention``, ``bmm``) are slow on CPU, their backward most of all."""
    q = q / math.sqrt(q.shape[-1])
    scores = (q[:, :, None] * k).sum(-1)  # [B, heads, P]
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
    if own is not None:
        scores = torch.cat([scores, (q * own[0]).sum(-1, keepdim=True)], dim=-1)
    weights = scores.softmax(-1)
    out = (weights[..., : k.shape[2], None] * v).sum(2)  # [B, heads, head_dim]
    if own is not None:
        out = out + weights[..., -1:] * own[1]
    return out.reshape(out.shape[0], -1)


class EncoderBlock(nn.Module):
    """Bidirectional self-attention over the input, then SwiGLU, post-norm (as ``trainer.model.Block``)."""

    def __init__(self, cfg: SequenceConfig) -> None:
        super().__init__()
        self.attention = SelfAttention(cfg.hidden_size, cfg.num_heads, cfg.max_source_len)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.expansion)

    def forward(self, h: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        h = rms_norm(h + self.attention(h, key_mask))
        return rms_norm(h + self.mlp(h))


class RefinementLayer(nn.Module):
    """One layer of f for the current token: causal self-attention (prefix cache + itself, rotary
    positions), cross-attention to the input cache, SwiGLU; post-norm residuals."""

    def __init__(self, cfg: SequenceConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.self_qkv = _init_linear(nn.Linear(d, 3 * d, bias=False))
        self.self_out = _init_linear(nn.Linear(d, d, bias=False))
        self.cross_q = _init_linear(nn.Linear(d, d, bias=False))
        self.cross_kv = _init_linear(nn.Linear(d, 2 * d, bias=False))
        self.cross_out = _init_linear(nn.Linear(d, d, bias=False))
        self.mlp = SwiGLU(d, cfg.expansion)

    def input_cache(self, encoded: torch.Tensor, key_mask: torch.Tensor) -> KV:
        """This layer's keys and values of the encoded input [B, S, d]."""
        batch, seq, _ = encoded.shape
        kv = self.cross_kv(encoded).view(batch, seq, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return KV(kv[0].contiguous(), kv[1].contiguous(), key_mask)

    def forward(
        self, h: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], source: KV, prefix: KV
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """h [B, d] -> (h, this layer's own key and value for the prefix cache)."""
        batch = h.shape[0]
        q, k, v = self.self_qkv(h).view(batch, 3, self.heads, self.head_dim).unbind(1)
        q, k = _rotate(q, *rotary), _rotate(k, *rotary)
        h = rms_norm(h + self.self_out(_attend(q, prefix.k, prefix.v, prefix.mask, own=(k, v))))
        cross_q = self.cross_q(h).view(batch, self.heads, self.head_dim)
        h = rms_norm(h + self.cross_out(_attend(cross_q, source.k, source.v, source.mask)))
        return rms_norm(h + self.mlp(h)), (k, v)


class SequenceTRM(nn.Module):
    """Encoder + per-token refinement; ``encode`` fills the input cache, ``step`` is one refinement step."""

    def __init__(self, cfg: SequenceConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        self.scale = math.sqrt(d)
        self.source_embedding = nn.Embedding(cfg.vocab_size, d)
        self.encoder = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.encoder_layers))
        self.token_embedding = nn.Embedding(cfg.vocab_size, d)
        for table in (self.source_embedding, self.token_embedding):
            nn.init.trunc_normal_(table.weight, std=1.0 / math.sqrt(d))
        self.layers = nn.ModuleList(RefinementLayer(cfg) for _ in range(cfg.num_layers))
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.max_target_len)
        self.head = _init_linear(nn.Linear(d, cfg.vocab_size, bias=False))
        self.q_head = nn.Linear(d, 1)
        nn.init.zeros_(self.q_head.weight)
        nn.init.constant_(self.q_head.bias, -5.0)  # start by never halting early, as the TRM does

    # --- caches -------------------------------------------------------------------------------------
    def encode(self, source: torch.Tensor) -> list[KV]:
        """The input cache: per layer of f, keys and values of the encoded source ids [B, S]."""
        key_mask = source != PAD_ID
        h = self.source_embedding(source) * self.scale
        for block in self.encoder:
            h = block(h, key_mask)
        return [layer.input_cache(h, key_mask) for layer in self.layers]

    def empty_prefix(self, batch: int, device: torch.device | None = None, masked: bool = False) -> list[KV]:
        """The prefix cache before any token is emitted (with `masked`, rows may later differ in length)."""
        shape = (batch, self.cfg.num_heads, 0, self.cfg.head_dim)
        mask = torch.zeros(batch, 0, dtype=torch.bool, device=device) if masked else None
        return [KV(torch.zeros(shape, device=device), torch.zeros(shape, device=device), mask)
                for _ in self.layers]

    def initial_state(self, batch: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """y and z of a token before its first step: zeros [B, d]."""
        shape = (batch, self.cfg.hidden_size)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def embed_tokens(self, previous: torch.Tensor) -> torch.Tensor:
        """x of the current token: the embedding of the token emitted before it (BOS_ID first) [B, d]."""
        return self.token_embedding(previous) * self.scale

    # --- one refinement step ----------------------------------------------------------------------
    def _f(
        self, h: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], source: list[KV], prefix: list[KV]
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        own = []
        for layer, source_kv, prefix_kv in zip(self.layers, source, prefix, strict=True):
            h, kv = layer(h, rotary, source_kv, prefix_kv)
            own.append(kv)
        return h, own

    def _round(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        z: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        source: list[KV],
        prefix: list[KV],
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        for _ in range(self.cfg.n):
            z, _ = self._f(z + y + x, rotary, source, prefix)
        y, own = self._f(y + z, rotary, source, prefix)
        return y, z, own

    def step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        z: torch.Tensor,
        position: torch.Tensor,
        source: list[KV],
        prefix: list[KV],
    ) -> StepOutput:
        """One refinement step of the current token (x, y, z: [B, d]; position: [B] output index).

        T rounds, the first T-1 without gradients; the heads read y."""
        rotary = (self.rotary.cos[position], self.rotary.sin[position])
        if self.cfg.T > 1:
            with torch.no_grad():
                for _ in range(self.cfg.T - 1):
                    y, z, _ = self._round(x, y, z, rotary, source, prefix)
        y, z, own = self._round(x, y, z, rotary, source, prefix)
        return StepOutput(y, z, self.head(y), self.q_head(y).squeeze(-1), own)
