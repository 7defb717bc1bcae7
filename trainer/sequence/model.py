"""An autoregressive TRM with per-token refinement: written answers one character at a time.

The input is encoded once; each layer of the tiny network f keeps the encoding's keys and values
(the input cache). The outer loop emits one output token at a time. For the current token the TRM
refines that token's own latent z and answer state y, as ``trainer.model.TRM`` refines a whole answer
(each supervision step: T rounds of n updates of z, then one of y; gradients through the last round
only), and every call of f attends to the input cache and to the prefix cache.

The prefix cache holds, for every emitted token, the keys and values of each of its calls of f at each
of its first K refinement steps (K = ``prefix_steps``, N_sup unless set): one *slot* per (round, call,
layer), one entry per step. Step s of the current token reads the entries of step min(s, K) and the
same slot; a token that halted after h < K steps reads as its step-h entries at every later step (its
state no longer changes). So a token's step s sees every earlier token as it was at step min(s, K): the
same computation whether the tokens run one after another (serving, with the cache) or all at once
(training, teacher-forced, ``forward_parallel``), which makes training a few batched passes instead of
a Python loop over characters. With K = N_sup the later steps refine the whole prefix with the token;
with K = 1 a token's later steps refine the token alone, over a prefix settled at its first step, so
what a later step gains is that token's own (docs/EXPERIMENTS.md, "Where the later steps' gain is").
Work per refinement step grows linearly with the prefix, and memory is the caches (K x slots entries per
token) plus the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
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
    n: int = 1  # latent updates per round
    T: int = 1  # rounds per refinement step
    N_sup: int = 3  # most refinement steps per token
    prefix_steps: int | None = None  # refinement steps whose entries the prefix cache keeps; None: all N_sup

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.n < 0 or self.T < 1 or self.N_sup < 1:
            raise ValueError(f"need n >= 0, T >= 1 and N_sup >= 1, got n={self.n} T={self.T} N_sup={self.N_sup}")
        if self.prefix_steps is not None and not 1 <= self.prefix_steps <= self.N_sup:
            raise ValueError(f"prefix_steps {self.prefix_steps} is outside 1..N_sup ({self.N_sup})")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def slots(self) -> int:
        """Calls of f's layers per refinement step: the prefix cache keeps one entry per slot and step."""
        return self.T * (self.n + 1) * self.num_layers

    @property
    def cache_steps(self) -> int:
        """Refinement steps whose entries the prefix cache keeps (K): step s reads those of step min(s, K)."""
        return self.prefix_steps or self.N_sup

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class KV:
    """Keys and values [B, heads, positions, head_dim] each, and which positions count ([B, positions]
    bool; None when all do)."""

    k: torch.Tensor
    v: torch.Tensor
    mask: torch.Tensor | None = None

    def rows(self, index: torch.Tensor) -> KV:
        """The entries of some batch rows."""
        return KV(self.k[index], self.v[index], None if self.mask is None else self.mask[index])


@dataclass
class SourceCache:
    """The encoded input: per layer of f its keys and values (`layers`), the pointer's keys [B, S, d] and
    the source ids [B, S] (what the pointer copies)."""

    layers: list[KV]
    pointer_keys: torch.Tensor
    ids: torch.Tensor

    def rows(self, index: torch.Tensor) -> SourceCache:
        """The entries of some batch rows."""
        return SourceCache([kv.rows(index) for kv in self.layers], self.pointer_keys[index], self.ids[index])


Own = tuple[torch.Tensor, torch.Tensor]  # a call's own keys and values [B, heads, L, head_dim]
# Given a slot and the current tokens' own keys and values: the keys, values and mask [B, L, P] they attend to.
Context = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]


@dataclass
class StepOutput:
    """One refinement step of the current tokens: new states, answer log-probabilities, halting logits, and per slot
    the keys and values [B, heads, L, head_dim] that stand for these tokens in later tokens' attention."""

    y: torch.Tensor
    z: torch.Tensor
    logits: torch.Tensor
    halt_logit: torch.Tensor
    own: list[Own]


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """q [B, heads, L, hd] over k, v [B, heads, P, hd] where mask [B, L, P] allows -> [B, L, heads * hd]."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None], float("-inf"))
    out = scores.softmax(-1) @ v
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


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
    """One layer of f for the current tokens: causal self-attention (the prefix as given by the context,
    rotary positions), cross-attention to the input cache, SwiGLU; post-norm residuals."""

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
        return KV(kv[0], kv[1], key_mask)

    def forward(
        self, h: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], source: KV,
        context: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    ) -> tuple[torch.Tensor, Own]:
        """h [B, L, d] -> (h, these tokens' own keys and values)."""
        batch, length, _ = h.shape
        qkv = self.self_qkv(h).view(batch, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = (_rotate(qkv[0], *rotary), _rotate(qkv[1], *rotary), qkv[2])
        keys, values, mask = context(k, v)
        h = rms_norm(h + self.self_out(_attend(q, keys, values, mask)))
        cross_q = self.cross_q(h).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        source_mask = None if source.mask is None else source.mask[:, None, :].expand(-1, length, -1)
        h = rms_norm(h + self.cross_out(_attend(cross_q, source.k, source.v, source_mask)))
        return rms_norm(h + self.mlp(h)), (k, v)


class AnswerHead(nn.Module):
    """Log-probabilities of the current token [B, L, V] from y: a gated mixture of a vocabulary head and a
    pointer that copies a source character (one attention of y over the encoded input)."""

    def __init__(self, cfg: SequenceConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.vocab_size, self.scale = cfg.vocab_size, math.sqrt(d)
        self.vocabulary = _init_linear(nn.Linear(d, cfg.vocab_size, bias=False))
        self.pointer_query = _init_linear(nn.Linear(d, d, bias=False))
        self.copy_gate = nn.Linear(d, 1)

    def forward(self, y: torch.Tensor, source: SourceCache) -> torch.Tensor:
        scores = self.pointer_query(y) @ source.pointer_keys.transpose(1, 2) / self.scale  # [B, L, S]
        scores = scores.masked_fill(~source.layers[0].mask[:, None, :], float("-inf"))
        copied = scores.softmax(-1) @ F.one_hot(source.ids, self.vocab_size).to(y.dtype)
        gate = _row_aligned(torch.sigmoid, self.copy_gate(y))
        return _row_aligned(torch.log, gate * self.vocabulary(y).softmax(-1) + (1 - gate) * copied + 1e-9)


VECTOR_LANES = 16
"""The widest CPU vector of float32 (AVX-512). ONNX Runtime computes an elementwise exp, log or sigmoid over a
whole tensor, whole vectors first and the rest one value at a time, which rounds differently: a row whose values
are not whole vectors would get other bits batched than alone."""


def _row_aligned(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """`function(x)` computed on rows padded (with ones) to whole vectors of VECTOR_LANES values, so that each
    row's values take the same path through the kernel in any batch."""
    width = x.shape[-1]
    padded = F.pad(x, (0, -width % VECTOR_LANES), value=1.0)
    return function(padded)[..., :width]


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary positions of x [B, heads, L, hd] (cos, sin: [B, L, hd], each token's own position)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None] + rotated * sin[:, None]


class SequenceTRM(nn.Module):
    """Encoder + per-token refinement: ``encode`` fills the input cache, ``step`` is one refinement step of
    each row's current token given the prefix cache, ``forward_parallel`` one step of every token at once."""

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
        self.source_position = nn.Parameter(torch.randn(cfg.max_source_len, d) * 0.02)
        self.layers = nn.ModuleList(RefinementLayer(cfg) for _ in range(cfg.num_layers))
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.max_target_len)
        self.pointer_key = _init_linear(nn.Linear(d, d, bias=False))
        self.answer = AnswerHead(cfg)
        self.q_head = nn.Linear(d, 1)
        nn.init.zeros_(self.q_head.weight)
        nn.init.constant_(self.q_head.bias, -5.0)  # start by never halting early, as the TRM does

    def encode(self, source: torch.Tensor) -> SourceCache:
        """The input cache of source ids [B, S]."""
        key_mask = source != PAD_ID
        h = self.source_embedding(source) * self.scale + self.source_position[: source.shape[1]]
        for block in self.encoder:
            h = block(h, key_mask)
        return SourceCache([layer.input_cache(h, key_mask) for layer in self.layers], self.pointer_key(h), source)

    def embed_tokens(self, previous: torch.Tensor) -> torch.Tensor:
        """x of the current tokens: the embedding of the token emitted before each (BOS_ID first)."""
        return self.token_embedding(previous) * self.scale

    def _refine(
        self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, position: torch.Tensor, source: SourceCache,
        context: Context,
    ) -> StepOutput:
        """One refinement step of tokens x, y, z [B, L, d] at output positions [B, L]: T rounds (the first
        T-1 without gradients) of n updates of z and one of y; the heads read y."""
        rotary = (self.rotary.cos[position], self.rotary.sin[position])
        slot = 0
        own: list[Own] = []

        def f(h: torch.Tensor) -> torch.Tensor:
            nonlocal slot
            for layer, source_kv in zip(self.layers, source.layers, strict=True):
                h, kv = layer(h, rotary, source_kv, lambda k, v, s=slot: context(s, k, v))
                own.append(kv)
                slot += 1
            return h

        for round_index in range(self.cfg.T):
            with torch.set_grad_enabled(torch.is_grad_enabled() and round_index == self.cfg.T - 1):
                for _ in range(self.cfg.n):
                    z = f(z + y + x)
                y = f(y + z)
        return StepOutput(y, z, self.answer(y, source), self.q_head(y).squeeze(-1), own)

    def step(
        self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, position: torch.Tensor, source: SourceCache,
        prefix: list[KV],
    ) -> StepOutput:
        """One refinement step of each row's current token (x, y, z: [B, d]; position: [B]), attending to
        `prefix`: per slot, the earlier tokens' entries for this step [B, heads, P, hd] (mask: [B, P])."""

        def context(slot: int, k: torch.Tensor, v: torch.Tensor):
            # the token's own entry first, the prefix's padding last: a padded sum adds its zeros after every
            # real term, so a row's sums do not depend on its batch's longest prefix
            cached = prefix[slot]
            keys, values = torch.cat([k, cached.k], dim=2), torch.cat([v, cached.v], dim=2)
            if cached.mask is None:
                return keys, values, None
            own_mask = torch.ones_like(k[:, 0, :, 0], dtype=torch.bool)  # [B, 1]
            return keys, values, torch.cat([own_mask, cached.mask], dim=1)[:, None]

        out = self._refine(x[:, None], y[:, None], z[:, None], position[:, None], source, context)
        return StepOutput(out.y[:, 0], out.z[:, 0], out.logits[:, 0], out.halt_logit[:, 0], out.own)

    def forward_parallel(
        self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, source: SourceCache, active: torch.Tensor,
        settled: list[Own] | None, past_cache: bool = False,
    ) -> StepOutput:
        """One refinement step of every token of the answers at once (x, y, z: [B, L, d], teacher-forced).

        Tokens that have halted (not `active` [B, L]) stand in the attention of later tokens by `settled`,
        their entries of the step they halted at (per slot, from the previous call); the returned `own`
        entries are those for the next call: active tokens' new ones, the halted tokens' settled ones.
        `past_cache`: a step after the cache's last (``cache_steps``): every earlier token stands by its
        `settled` entries, each token attends to itself as it is now, and `own` stays `settled`."""
        batch, length, _ = x.shape
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()[None]
        keep = active[:, None, :, None]
        if past_cache:
            earlier = torch.ones(length, length, dtype=torch.bool, device=x.device).tril(-1)
            itself = torch.eye(length, dtype=torch.bool, device=x.device)
            earlier_then_itself = torch.cat([earlier, itself], dim=1)[None]

        def context(slot: int, k: torch.Tensor, v: torch.Tensor):
            if settled is None:
                return k, v, causal
            if past_cache:
                return (torch.cat([settled[slot][0], k], dim=2), torch.cat([settled[slot][1], v], dim=2),
                        earlier_then_itself)
            return torch.where(keep, k, settled[slot][0]), torch.where(keep, v, settled[slot][1]), causal

        position = torch.arange(length, device=x.device).expand(batch, length)
        out = self._refine(x, y, z, position, source, context)
        if past_cache:
            out.own = settled
        elif settled is not None:
            out.own = [(torch.where(keep, k, old_k), torch.where(keep, v, old_v))
                       for (k, v), (old_k, old_v) in zip(out.own, settled, strict=True)]
        return out
