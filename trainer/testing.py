"""Small real bundles for tests: randomly initialised TRMs through the real exporter.

They exercise every code path of the server (tokenizer, ONNX step, manifest, checksums) without
a training run; their answers are arbitrary, so tests built on them check plumbing, not accuracy.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from trainer.data.tokenizer import train_tokenizer
from trainer.export import GRID_LABELS, base_manifest, export_step, variable_length_spec, write_bundle
from trainer.model import TRM, ModelConfig
from trm_bundle.manifest import FP32_FILE

DEFAULT_TEXT_LABELS = ("play_music", "set_alarm", "weather", "translate", "oos")
SAMPLE_TEXTS = (
    "wake me up at seven tomorrow",
    "play some jazz in the kitchen",
    "what is the weather like in paris",
    "how do you say thank you in german",
    "set an alarm for six thirty",
    "will it rain this afternoon",
    "translate good morning into spanish",
    "put on my workout playlist",
    "tell me a joke about penguins",
)


def make_random_bundle(
    out_dir: Path,
    task: Literal["text", "grid"] = "text",
    *,
    name: str | None = None,
    version: str = "1.0.0",
    labels: Sequence[str] | None = None,
    n: int = 2,
    T: int = 2,
    N_sup: int = 4,
    seed: int = 0,
    halt_threshold: float = 0.5,
    hidden_size: int = 32,
    pool: int = 1,
    doc_slot: bool = False,
) -> Path:
    """Exports a randomly initialised TRM as a complete bundle at out_dir/name and returns the folder.

    Text bundles are variable-length (the server trims each batch's padding); `pool` and `doc_slot`
    select the long-document input layout."""
    torch.manual_seed(seed)
    name = name or ("random-text" if task == "text" else "random-sudoku")
    files: dict[str, Path | bytes | str] = {}
    if task == "text":
        max_tokens = 16
        tokenizer = train_tokenizer(list(SAMPLE_TEXTS) * 4, vocab_size=200, max_tokens=max_tokens)
        labels = list(labels or DEFAULT_TEXT_LABELS)
        cfg = ModelConfig(
            task="text", vocab_size=tokenizer.get_vocab_size(), seq_len=max_tokens, num_outputs=len(labels),
            hidden_size=hidden_size, num_heads=2, n=n, T=T, N_sup=N_sup, pool=pool, doc_slot=doc_slot,
        )
        files["tokenizer.json"] = tokenizer.to_str()
        input_spec = {
            "kind": "text", "max_tokens": max_tokens, "max_chars": 2000, "pad_id": 0,
            "tokenizer": "tokenizer.json", "variable_length": variable_length_spec(cfg),
        }
        out_of_scope = {"label": "oos", "threshold": 0.3} if "oos" in labels else None
    else:
        labels = list(GRID_LABELS)
        cfg = ModelConfig(
            task="grid", vocab_size=10, seq_len=81, num_outputs=10, hidden_size=hidden_size,
            mixer="mlp", n=n, T=T, N_sup=N_sup,
        )
        input_spec = {"kind": "grid", "rows": 9, "cols": 9, "blank": "0.", "alphabet": "123456789",
                      "rules": "sudoku"}
        out_of_scope = None
    model = TRM(cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / FP32_FILE
        export_step(model, onnx_path)
        files[FP32_FILE] = onnx_path
        manifest = base_manifest(
            cfg, name=name, version=version, labels=labels, input=input_spec,
            description=f"randomly initialised {task} TRM for tests", halt_threshold=halt_threshold,
            out_of_scope=out_of_scope, metrics={},
            training={"config": {"random_init": True, "seed": seed}, "data_sha256": {}},
        )
        return write_bundle(Path(out_dir) / name, manifest, files)
