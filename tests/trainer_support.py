"""Trainer test helpers: a small user CSV whose label a keyword decides, and flags for a tiny model."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from trainer.model import ModelConfig

KEYWORDS = {"open_file": "open", "run_tests": "pytest", "commit": "commit", "undo": "undo"}
FILLER = ["please", "the", "now", "quickly", "my", "a", "this", "that", "for", "me", "could", "you", "kindly"]
TINY_MODEL = [
    "--set", "model.hidden_size=32", "--set", "model.num_heads=2", "--set", "model.n=1", "--set", "model.T=2",
    "--set", "model.N_sup=2", "--set", "max_tokens=8", "--set", "vocab_size=64", "--set", "warmup_steps=10",
    "--set", "eval_every=1000", "--set", "lr=0.003",
]


def random_tokens(cfg: ModelConfig, count: int, seed: int) -> np.ndarray:
    """Token rows with trailing padding of random length (text), or full grids; the first rows of a text set
    are 1, 2, pool and pool + 1 tokens long, since lone short inputs take other kernel paths in ONNX Runtime."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, cfg.vocab_size, size=(count, cfg.seq_len))
    if cfg.task == "text":
        lengths = rng.integers(1, cfg.seq_len + 1, size=count)
        lengths[:4] = (1, 2, cfg.pool, cfg.pool + 1)
        tokens[np.arange(cfg.seq_len)[None, :] >= lengths[:, None]] = 0
    return tokens.astype(np.int64)


def write_keyword_csv(path: Path, rows: int, seed: int) -> None:
    """Each text is filler words around one keyword that decides its label."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(rows):
            label = list(KEYWORDS)[i % len(KEYWORDS)]
            words = list(rng.choice(FILLER, size=4))
            words.insert(int(rng.integers(0, 5)), KEYWORDS[label])
            writer.writerow([" ".join(words), label])
