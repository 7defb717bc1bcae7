"""Untrained bundles with the default models' real architecture, from trainer/configs/*.yaml: the real
tokenizer, sizes, recursion depth and labels, random weights, built with the trainer's own pipeline.

They cost what the trained models cost per supervision step, but an untrained halting head never
halts, so every request runs all N_sup steps: the most expensive case, for the service and the naive
baseline alike. The benchmark and load tests use them until the trained bundles ship.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from trainer.config import load_config
from trainer.export import TOKENIZER_FILE, export_step, step_manifest
from trainer.fit import build_model
from trainer.model import count_parameters
from trainer.prepare import prepare
from trm_bundle.manifest import FP32_FILE, OutOfScope, Training
from trm_bundle.writer import write_bundle

CONFIGS = Path(__file__).resolve().parent.parent / "trainer" / "configs"
NO_TEACHER = {"teacher.embedding_init": False, "teacher.soft_label_weight": 0.0, "teacher.embedding_weight": 0.0}
NEVER_CONFIDENT = 0.5  # an untrained q head gives sigmoid(q) ~ 0.007, so this threshold never halts


def make_untrained_bundle(config_name: str, data_root: Path, out_dir: Path) -> Path:
    """The bundle of trainer/configs/<config_name>.yaml with random weights, written to out_dir/<name>."""
    path = CONFIGS / f"{config_name}.yaml"
    data_folder = Path(yaml.safe_load(path.read_text())["data"]).name
    cfg = load_config(path, {**NO_TEACHER, "data": str(data_root / data_folder)})
    prepared = prepare(cfg)
    model, _ = build_model(cfg, prepared)
    training = Training(
        model_config=prepared.model_cfg.to_dict(), config=cfg.to_dict(), data_sha256=prepared.data_sha256,
        command="", wall_time_s=0.0, optimizer_steps=0, train_time_s=0.0, device="",
        parameters=count_parameters(model),
    )
    manifest = step_manifest(
        prepared.model_cfg, name=cfg.name, version="0.0.0-untrained",
        description=f"UNTRAINED, for benchmarks: {cfg.description}", labels=prepared.labels,
        max_chars=cfg.max_chars, halt_threshold=NEVER_CONFIDENT,
        out_of_scope=OutOfScope(label="oos", threshold=0.0) if "oos" in prepared.labels else None,
        training=training,
    )
    files: dict[str, Path | bytes | str] = {}
    if prepared.tokenizer is not None:
        files[TOKENIZER_FILE] = prepared.tokenizer.to_str()
    with tempfile.TemporaryDirectory() as tmp:
        files[FP32_FILE] = Path(tmp) / FP32_FILE
        export_step(model.eval(), files[FP32_FILE])
        return write_bundle(out_dir / cfg.name, manifest, files).path
