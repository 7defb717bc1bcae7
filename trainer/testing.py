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
from trainer.export import TOKENIZER_FILE, export_step, step_manifest
from trainer.model import TRM, LinearReader, ModelConfig, count_parameters
from trainer.prepare import GRID_LABELS
from trainer.sequence.bundle import sequence_manifest, write_sequence_bundle
from trainer.sequence.model import SequenceConfig, SequenceTRM
from trainer.sequence.vocab import EOS_ID
from trm_bundle.manifest import FP32_FILE, OutOfScope, Training
from trm_bundle.writer import write_bundle

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
    reader_rows: int = 0,
) -> Path:
    """Exports a randomly initialised TRM as a complete bundle at out_dir/name and returns the folder.

    Text bundles are variable-length (the server trims each batch's padding); `pool` and `doc_slot`
    select the long-document input layout, `reader_rows` a random linear reader (`random_reader`)."""
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
            reader_rows=reader_rows,
        )
        files[TOKENIZER_FILE] = tokenizer.to_str()
        out_of_scope = OutOfScope(label="oos", threshold=0.3) if "oos" in labels else None
    else:
        labels = list(GRID_LABELS)
        cfg = ModelConfig(
            task="grid", vocab_size=10, seq_len=81, num_outputs=10, hidden_size=hidden_size,
            mixer="mlp", n=n, T=T, N_sup=N_sup,
        )
        out_of_scope = None
    model = random_model(cfg, seed)
    training = Training(
        model_config=cfg.to_dict(), config={"random_init": True, "seed": seed}, data_sha256={}, command="",
        wall_time_s=0.0, optimizer_steps=0, train_time_s=0.0, device="", parameters=count_parameters(model),
    )
    manifest = step_manifest(
        cfg, name=name, version=version, description=f"randomly initialised {task} TRM for tests", labels=labels,
        max_chars=2000, halt_threshold=halt_threshold, out_of_scope=out_of_scope, training=training,
    )
    with tempfile.TemporaryDirectory() as tmp:
        files[FP32_FILE] = Path(tmp) / FP32_FILE
        export_step(model, files[FP32_FILE])
        return write_bundle(Path(out_dir) / name, manifest, files).path


def random_model(cfg: ModelConfig, seed: int = 0) -> TRM:
    """A randomly initialised TRM in eval mode, its linear reader (if `cfg` has one) random too."""
    model = TRM(cfg).eval()
    return model.with_reader(random_reader(cfg, seed)) if cfg.reader_rows else model


def random_reader(cfg: ModelConfig, seed: int = 0) -> LinearReader:
    """A linear reader with random weights for `cfg.reader_rows - 1` random ids (the others read nothing)."""
    generator = torch.Generator().manual_seed(seed)
    rows = cfg.reader_rows
    reader = LinearReader(cfg.vocab_size, rows, cfg.num_outputs, cfg.seq_len)
    ids = torch.randperm(cfg.vocab_size - 1, generator=generator)[: rows - 1] + 1
    reader.row_of[ids] = torch.arange(1, len(ids) + 1, dtype=torch.int16)
    idf = 1 + 3 * torch.rand(rows - 1, generator=generator)
    reader.row_values[1:] = torch.stack([idf * 0.05 * torch.rand(rows - 1, generator=generator), idf], dim=1)
    reader.codes[1:] = torch.randint(-127, 128, (rows - 1, cfg.num_outputs), generator=generator).to(torch.int8)
    reader.bias.copy_(0.1 * torch.randn(cfg.num_outputs, generator=generator))
    reader.trm_weight.fill_(0.6)
    return reader


def random_sequence_model(seed: int = 0, **overrides) -> SequenceTRM:
    """A small random sequence TRM whose halting head varies with the input (the trained one starts at
    'never halt early'), so tokens halt at different steps, and whose end mark is likely enough that
    answers end at different lengths."""
    torch.manual_seed(seed)
    base = dict(max_source_len=64, max_target_len=24, hidden_size=32, num_heads=2, encoder_layers=1,
                num_layers=2, n=2, T=2, N_sup=4)
    model = SequenceTRM(SequenceConfig(**{**base, **overrides})).eval()
    torch.nn.init.normal_(model.q_head.weight, std=1.0)
    torch.nn.init.zeros_(model.q_head.bias)
    with torch.no_grad():
        model.answer.vocabulary.weight[EOS_ID] *= 8.0
    return model


def make_random_sequence_bundle(out_dir: Path, *, name: str = "random-dictation", seed: int = 0,
                                max_chars: int = 64, halt_when_unchanged: bool = False, unsure_below: float = 0.0,
                                checks: tuple[str, ...] = (), normalize: str | None = None,
                                **overrides) -> tuple[Path, SequenceTRM]:
    """A real sequence bundle of `random_sequence_model(seed, **overrides)` and the model itself (to compare
    with)."""
    model = random_sequence_model(seed, **overrides)
    manifest = sequence_manifest(model, name=name, version="1.0.0", max_chars=max_chars, training=None,
                                 description="randomly initialised sequence TRM for tests",
                                 halt_when_unchanged=halt_when_unchanged, unsure_below=unsure_below, checks=checks,
                                 normalize=normalize)
    return write_sequence_bundle(Path(out_dir) / name, model, manifest).path, model
