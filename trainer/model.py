"""The Tiny Recursive Model: one shared 2-layer network f, a latent z and an answer y.

One supervision step (``TRM.step``) runs T rounds; each round updates the latent n times,
``z = f(z + y + x)``, then the answer once, ``y = f(y + z)``. During training the first T-1
rounds run without gradients. Heads read the answer state y: class or cell logits, and the
halting logit q (ACT: "the current answer is exactly right").

What a step hands the next (``ModelConfig.state_carry``): every row of y and z, as in the TRM, or,
for text, only the slot rows (the answer, and the document slot): token rows then start each step
from zero, so attention cannot blur them over steps (docs/EXPERIMENTS.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trm_bundle.manifest import VariableLength

Task = Literal["text", "grid"]
Mixer = Literal["attention", "mlp"]
EmbeddingStorage = Literal["fp32", "int8"]
StateCarry = Literal["all", "slots"]


@dataclass
class ModelConfig:
    """Architecture and recursion hyper-parameters of a TRM."""

    task: Task
    vocab_size: int  # token ids the input embedding knows (text vocabulary, or 10 for Sudoku cells)
    seq_len: int  # input tokens per example (max_tokens, or rows*cols)
    num_outputs: int  # classes (text) or symbols per cell (grid)
    hidden_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    mixer: Mixer = "attention"
    expansion: float = 4.0
    n: int = 6  # latent updates per round
    T: int = 3  # rounds per supervision step
    N_sup: int = 16  # most supervision steps
    pool: int = 1  # text only: mean-pool tokens in chunks of this size (long documents)
    embed_dim: int = 0  # 0: embeddings of hidden_size; else factorised embed_dim -> hidden_size
    doc_slot: bool = False  # text only: one extra position holding the bag of words of the whole input
    embedding_storage: EmbeddingStorage = "fp32"  # how a bundle stores the token table (TRM.store_embeddings)
    # rows of y and z a step hands the next: all (the TRM), or slots (text: answer and document slots only)
    state_carry: StateCarry = "all"
    pad_id: int = 0
    # text only: rows of the linear reader's table (LinearReader), fitted after training; 0: no reader
    reader_rows: int = 0

    def __post_init__(self) -> None:
        check_model_settings(asdict(self))
        if self.embedding_storage not in get_args(EmbeddingStorage):
            choices = " or ".join(get_args(EmbeddingStorage))
            raise ValueError(f"model.embedding_storage must be {choices}, got {self.embedding_storage!r}")
        if self.state_carry not in get_args(StateCarry):
            choices = " or ".join(get_args(StateCarry))
            raise ValueError(f"model.state_carry must be {choices}, got {self.state_carry!r}")
        if self.state_carry == "slots" and self.task != "text":
            raise ValueError("model.state_carry slots is for text: a grid's answer is in its cell rows")
        if self.reader_rows and self.task != "text":
            raise ValueError("model.reader_rows is for text: a linear reader reads token ids")
        if self.task == "text" and self.seq_len % self.pool:
            raise ValueError(f"max_tokens {self.seq_len} must be a multiple of model.pool {self.pool}")

    @property
    def positions(self) -> int:
        """Input positions after pooling (the answer slot not included)."""
        return self.seq_len // self.pool

    @property
    def variable_length(self) -> bool:
        """Whether the step accepts fewer tokens than seq_len (text with attention; states shrink with them)."""
        return self.task == "text" and self.mixer == "attention"

    @property
    def variable_length_spec(self) -> VariableLength | None:
        """How a server may trim a batch's padding (docs/BUNDLE.md): None for fixed-length steps."""
        if not self.variable_length:
            return None
        return VariableLength(token_multiple=self.pool, rows_before_tokens=self.state_shape[0] - self.positions)

    def served_step_shape(self, tokens: np.ndarray) -> tuple[int, int]:
        """(tokens, state rows) a server runs a batch of encoded inputs [rows, seq_len] at: the longest input's
        trimmed length for variable-length steps, all of them otherwise."""
        trim = self.variable_length_spec
        if trim is None:
            return self.seq_len, self.state_shape[0]
        length = trim.trimmed_length(tokens, self.pad_id)
        return length, trim.state_rows(length)

    @property
    def slot_rows(self) -> int:
        """Rows of y and z before the input positions: the answer slot (+ the document slot)."""
        return 1 + int(self.doc_slot)

    @property
    def state_shape(self) -> tuple[int, int]:
        """Shape of y and z per example: answer slot (+ document slot) + input positions, hidden size."""
        return (self.positions + self.slot_rows, self.hidden_size)

    def to_dict(self) -> dict:
        return asdict(self)


_AT_LEAST = {"hidden_size": 1, "num_layers": 1, "num_heads": 1, "n": 0, "T": 1, "N_sup": 1, "pool": 1, "embed_dim": 0,
             "reader_rows": 0}
_AT_MOST = {"hidden_size": 4096, "num_layers": 64, "num_heads": 256, "embed_dim": 4096}


def check_model_settings(settings: dict[str, Any]) -> None:
    """Raise ValueError naming a model.* setting out of its range (a whole or a partial set of ModelConfig's
    fields, their types already right), before anything is built from it."""
    for key, least in _AT_LEAST.items():
        if key in settings and settings[key] < least:
            raise ValueError(f"model.{key} must be at least {least}, got {settings[key]}")
    for key, most in _AT_MOST.items():
        if key in settings and settings[key] > most:
            raise ValueError(f"model.{key} must be at most {most} (a tiny recursive model served on CPUs), got "
                             f"{settings[key]}")
    if settings.get("expansion", 1.0) <= 0:
        raise ValueError(f"model.expansion must be above 0, got {settings['expansion']}")
    hidden, heads = settings.get("hidden_size"), settings.get("num_heads")
    if settings.get("mixer", "attention") == "attention" and hidden and heads and hidden % heads:
        raise ValueError(f"model.hidden_size {hidden} must be a multiple of model.num_heads {heads}")


def rms_norm(x: torch.Tensor, ones: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm without a learned scale (as in the official TRM).

    `ones`, a constant of ones over the last axis, changes nothing but the exported graph: written as
    x / sqrt(mean(x²) + eps) * ones, ONNX Runtime fuses the norm into one node (docs/EXPERIMENTS.md,
    2026-12-01, "Intent at 64 callers")."""
    normed = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return normed if ones is None else normed * ones


def _init_linear(layer: nn.Linear, std: float | None = None) -> nn.Linear:
    std = std if std is not None else 1.0 / math.sqrt(layer.in_features)
    nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class SwiGLU(nn.Module):
    """Gated feed-forward: down(silu(gate(x)) * up(x)) over the last axis."""

    def __init__(self, dim: int, expansion: float) -> None:
        super().__init__()
        inner = max(8, round(expansion * dim * 2 / 3))
        self.gate_up = _init_linear(nn.Linear(dim, 2 * inner, bias=False))
        self.down = _init_linear(nn.Linear(inner, dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding tables for a fixed sequence length."""

    def __init__(self, head_dim: int, seq_len: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotates x of shape [..., S, head_dim], S at most the table's length."""
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        seq = x.shape[-2]
        return x * self.cos[:seq] + rotated * self.sin[:seq]


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention with rotary positions."""

    def __init__(self, dim: int, num_heads: int, seq_len: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = _init_linear(nn.Linear(dim, 3 * dim, bias=False))
        self.out = _init_linear(nn.Linear(dim, dim, bias=False))
        self.rotary = RotaryEmbedding(dim // num_heads, seq_len)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Attention written out rather than `scaled_dot_product_attention`, whose export computes the scale
        from the shape and masks twice: the exported step has a quarter fewer nodes, and ONNX Runtime runs one
        row 13 % faster (docs/EXPERIMENTS.md, 2026-12-01, "Intent at 64 callers"). Keys outside `key_mask` get
        no weight; the answer slot is always a key, so no row is all masked."""
        batch, seq, dim = x.shape
        qkv = self.qkv(x).view(batch, seq, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = self.rotary(qkv[:2])
        scores = (q * self.scale) @ k.transpose(-1, -2)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        out = scores.softmax(-1) @ qkv[2]
        return self.out(out.transpose(1, 2).reshape(batch, seq, dim))


class SequenceMLP(nn.Module):
    """MLP-mixer token mixing: a SwiGLU across the sequence axis (fixed-length inputs)."""

    def __init__(self, seq_len: int, expansion: float) -> None:
        super().__init__()
        self.mlp = SwiGLU(seq_len, expansion)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        return self.mlp(x.transpose(1, 2)).transpose(1, 2)


class Block(nn.Module):
    """Post-norm residual block: mixer, then SwiGLU, each followed by RMSNorm."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        seq = cfg.state_shape[0]
        self.mixer: nn.Module = (
            SelfAttention(cfg.hidden_size, cfg.num_heads, seq)
            if cfg.mixer == "attention"
            else SequenceMLP(seq, cfg.expansion)
        )
        self.mlp = SwiGLU(cfg.hidden_size, cfg.expansion)
        self.register_buffer("norm_ones", torch.ones(cfg.hidden_size), persistent=False)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        x = rms_norm(x + self.mixer(x, key_mask), self.norm_ones)
        return rms_norm(x + self.mlp(x), self.norm_ones)


class Network(nn.Module):
    """The tiny shared network f: ``num_layers`` blocks."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))

    def forward(self, h: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        for block in self.blocks:
            h = block(h, key_mask)
        return h


def int8_rows(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of `table` as int8 codes times one scale (symmetric: 255 levels over its largest absolute
    value), computed in `table`'s dtype; returns (codes, scales [rows, 1])."""
    scales = table.abs().amax(1, keepdim=True).clamp(min=1e-12) / 127
    return torch.round(table / scales).clamp(-127, 127).to(torch.int8), scales


class Int8Embedding(nn.Module):
    """A frozen token table stored as int8 rows with one fp32 scale per row (symmetric): a quarter of
    the fp32 bytes, which lets a large text vocabulary fit a bundle's size budget."""

    def __init__(self, num_embeddings: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("codes", torch.zeros(num_embeddings, dim, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(num_embeddings, 1))

    @classmethod
    def from_embedding(cls, table: nn.Embedding) -> Int8Embedding:
        """Rounds each row of `table` to 255 levels spanning its largest absolute value."""
        weight = table.weight.detach().float()
        stored = cls(*weight.shape).to(weight.device)
        codes, scales = int8_rows(weight)
        stored.codes.copy_(codes)
        stored.scales.copy_(scales)
        return stored

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.codes[ids].to(self.scales.dtype) * self.scales[ids]


class InputEmbedding(nn.Module):
    """Tokens -> x of shape [B, S, d]: scaled embeddings, optional chunk pooling, answer slot first.

    With ``doc_slot`` the second position is the whole input's bag of words (the RMS-normalised sum
    of its token embeddings): every token reaches the recursion in one place however the input is
    pooled, which long documents need (a learned, TF-IDF-like view; token norms act as weights).

    Text with the attention mixer takes any multiple of ``pool`` tokens up to ``seq_len``: padding
    is masked out of attention, so cutting trailing padding off changes no valid position (the
    server runs each batch at its longest input, see ``ModelConfig.variable_length``).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.embed_dim or cfg.hidden_size
        self.tokens = nn.Embedding(cfg.vocab_size, dim)
        nn.init.trunc_normal_(self.tokens.weight, std=1.0 / math.sqrt(dim))
        self.project = (
            _init_linear(nn.Linear(dim, cfg.hidden_size, bias=False)) if cfg.embed_dim else nn.Identity()
        )
        self.answer_slot = nn.Parameter(torch.zeros(1, 1, cfg.hidden_size))
        self.scale = math.sqrt(cfg.hidden_size)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns x and the key mask (None for grids, where every cell is a position)."""
        cfg = self.cfg
        emb = self.tokens(tokens)
        key_mask = None
        if cfg.task == "text":
            valid = (tokens != cfg.pad_id).to(emb.dtype)
            # Sums over tokens are written as matrix products: ONNX Runtime's ReduceSum over a middle axis adds
            # in another order for a batch of one, and the int8 step would round that difference up. They are
            # taken in the table's width, before the (linear, bias-free) projection: the same function, and a
            # long document projects 17 rows instead of 512 (routing-20ng: training steps 1.43x faster).
            doc = rms_norm(self.project(valid[:, None, :] @ emb)) if cfg.doc_slot else None
            if cfg.pool > 1:  # any multiple of pool tokens: the server may trim padding off a batch
                emb = emb.view(emb.shape[0], -1, cfg.pool, emb.shape[-1])
                valid = valid.view(valid.shape[0], -1, cfg.pool)
                emb = (valid[..., None, :] @ emb).squeeze(2) / valid.sum(2, keepdim=True).clamp(min=1.0)
                valid = valid.amax(2)
            emb = self.project(emb) * valid[..., None] * self.scale
            slot_valid = valid.new_ones(valid.shape[0], 1 + int(cfg.doc_slot))
            key_mask = torch.cat([slot_valid, valid], dim=1) > 0
            if doc is not None:
                emb = torch.cat([doc, emb], dim=1)
        else:
            emb = self.project(emb) * self.scale
        x = torch.cat([self.answer_slot.expand(emb.shape[0], -1, -1) * self.scale, emb], dim=1)
        return x, key_mask


class LinearReader(nn.Module):
    """A linear classifier over the step's own token ids, whose answer the step mixes into the TRM's.

    Its features are those of a sublinear TF-IDF: each token id a text holds counts once, with weight
    idf(id) * (1 + ln count), and the vector is L2-normalised. Scores are that vector times a table of
    per-class weights plus a bias. An id maps to a table row (`row_of`); row 0 reads nothing (padding, and
    ids without a weight: idf 0). A row is stored as int8 codes times one scale; `row_values` holds each
    row's (idf * scale, idf). Every sum runs over the text's own tokens, so rows of a batch stay independent
    and trimming padding off changes nothing, not even the rounding. The step's answer becomes
    log(w_trm * softmax(TRM logits) + w_reader * softmax(scores)): log-probabilities, which a server's softmax
    turns back into the mixed probabilities. Fitted by trainer/reader.py."""

    MAX_ROWS = 2**15 - 1  # `row_of` is int16

    def __init__(self, vocab_size: int, rows: int, num_classes: int, max_tokens: int) -> None:
        super().__init__()
        if rows > self.MAX_ROWS:
            raise ValueError(f"a linear reader holds at most {self.MAX_ROWS} rows, got {rows}")
        self.register_buffer("row_of", torch.zeros(vocab_size, dtype=torch.int16))
        self.register_buffer("row_values", torch.zeros(rows, 2))
        self.register_buffer("codes", torch.zeros(rows, num_classes, dtype=torch.int8))
        self.register_buffer("bias", torch.zeros(num_classes))
        self.register_buffer("trm_weight", torch.tensor(0.5))  # the TRM's share of the mix; the reader's: the rest
        self.max_tokens = max_tokens  # the longest text it reads: every sum runs over this many positions
        # constants of the graph: 1 + ln(count) for every count a text can hold, and the log's padding (forward)
        counts = torch.arange(max_tokens + 1, dtype=torch.float32).clamp(min=1.0)
        self.register_buffer("sublinear_tf", 1.0 + torch.log(counts), persistent=False)
        self.register_buffer("log_padding", torch.ones(1, -num_classes % 64), persistent=False)

    def scores(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, L] token ids -> [B, classes] scores."""
        rows = self.row_of[tokens].long()
        # Every sum runs over max_tokens positions, those past the text's reading row 0 (nothing): ONNX Runtime's
        # products add a shorter row in another order, so a text cut to its own length and the same text padded
        # in a batch came out up to 1e-6 apart.
        rows = torch.cat([rows, rows.new_zeros(rows.shape[0], self.max_tokens - rows.shape[1])], dim=1)
        counts = torch.zeros(rows.shape[0], self.row_values.shape[0], device=rows.device)
        counts = counts.scatter_add(1, rows, torch.ones_like(rows, dtype=counts.dtype)).gather(1, rows)
        values = self.row_values[rows]
        tf = self.sublinear_tf[counts.long()]  # looked up: an element-wise log could differ in a batch (forward)
        code_weights = values[..., 0] * tf / counts  # an id's positions each carry 1/count of its feature
        squares = (values[..., 1] * tf) ** 2 / counts  # summed as a product, as in InputEmbedding
        norm = torch.sqrt(squares[:, None, :] @ torch.ones_like(squares)[:, :, None]).squeeze(-1)
        weighted = (code_weights[:, None, :] @ self.codes[rows].to(counts.dtype)).squeeze(1)
        return weighted / norm.clamp(min=1e-12) + self.bias

    def forward(self, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The TRM's `logits` mixed with the reader's answer, as log-probabilities (at least ln 1e-30)."""
        reader = self.scores(tokens).softmax(-1)
        mixed = (reader + self.trm_weight * (logits.softmax(-1) - reader)).clamp(min=1e-30)
        # The log runs over rows padded to a multiple of 64 values: ONNX Runtime's element-wise Log takes
        # other code paths for a row's values at other places in the tensor, so a row alone and the same
        # row in a batch came out up to 2.4e-7 apart.
        padded = torch.cat([mixed, self.log_padding.expand(mixed.shape[0], -1)], dim=1)
        return torch.log(padded)[:, : mixed.shape[1]]


class TRM(nn.Module):
    """Tiny Recursive Model; ``step`` is one supervision step, the unit the server loops over."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = InputEmbedding(cfg)
        self.net = Network(cfg)
        self.head = _init_linear(nn.Linear(cfg.hidden_size, cfg.num_outputs, bias=False))
        self.q_head = nn.Linear(cfg.hidden_size, 1)
        nn.init.zeros_(self.q_head.weight)
        nn.init.constant_(self.q_head.bias, -5.0)  # start by never halting, as the official code does
        self.reader = (LinearReader(cfg.vocab_size, cfg.reader_rows, cfg.num_outputs, cfg.seq_len)
                       if cfg.reader_rows else None)

    def store_embeddings(self) -> TRM:
        """Switches the token table to the storage a bundle uses (``cfg.embedding_storage``), in place.

        Evaluation and export run on the stored model, so the measured metrics are those of the
        bundle's own weights. A no-op for fp32 storage; returns self."""
        if self.cfg.embedding_storage == "int8" and isinstance(self.embed.tokens, nn.Embedding):
            self.embed.tokens = Int8Embedding.from_embedding(self.embed.tokens)
        return self

    def with_reader(self, reader: LinearReader) -> TRM:
        """Mixes `reader` into every step's answer (in place; the config records its size); returns self."""
        self.cfg = replace(self.cfg, reader_rows=reader.row_values.shape[0])
        self.reader = reader
        return self

    def initial_state(self, batch: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """y and z at the first step: zeros of [batch, S, d]."""
        shape = (batch, *self.cfg.state_shape)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def _round(
        self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, key_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for _ in range(self.cfg.n):
            z = self.net(z + y + x, key_mask)
        y = self.net(y + z, key_mask)
        return y, z

    def step(
        self, tokens: torch.Tensor, y: torch.Tensor, z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One supervision step: returns (y, z, logits, halt_logit). Gradients flow through the last round only."""
        if self.cfg.state_carry == "slots":
            y, z = self._slots_only(y), self._slots_only(z)
        x, key_mask = self.embed(tokens)
        if self.cfg.T > 1:
            with torch.no_grad():
                for _ in range(self.cfg.T - 1):
                    y, z = self._round(x, y, z, key_mask)
        y, z = self._round(x, y, z, key_mask)
        logits = self.head(y[:, 0]) if self.cfg.task == "text" else self.head(y[:, 1:])
        if self.reader is not None:
            logits = self.reader(logits, tokens)
        halt_logit = self.q_head(y[:, 0]).squeeze(-1)
        return y, z, logits, halt_logit

    def _slots_only(self, state: torch.Tensor) -> torch.Tensor:
        """The state with its token rows zeroed (any number of rows: trimmed steps keep working)."""
        rows = self.cfg.slot_rows
        return torch.cat([state[:, :rows], torch.zeros_like(state[:, rows:])], dim=1)

    def answer_features(self, y: torch.Tensor) -> torch.Tensor:
        """The answer-slot vector the heads read (used for embedding distillation)."""
        return y[:, 0]

    def forward(
        self, tokens: torch.Tensor, y: torch.Tensor, z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.step(tokens, y, z)


def count_parameters(model: nn.Module) -> int:
    """Weights of the model however they are stored (an int8 table counts like a trained one)."""
    stored = sum(m.codes.numel() for m in model.modules() if isinstance(m, Int8Embedding | LinearReader))
    return sum(p.numel() for p in model.parameters()) + stored
