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
from trainer.export import base_manifest, export_step, write_bundle
from trainer.pipeline import build_model, prepare
from trm_bundle.manifest import FP32_FILE

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
    oos = {"label": "oos", "threshold": 0.0} if "oos" in prepared.labels else None
    manifest = base_manifest(
        prepared.model_cfg, name=cfg.name, version="0.0.0-untrained", labels=prepared.labels,
        input=prepared.input_spec, description=f"UNTRAINED, for benchmarks: {cfg.description}",
        halt_threshold=NEVER_CONFIDENT, out_of_scope=oos, metrics={},
        training={"config": cfg.to_dict(), "data_sha256": prepared.data_sha256},
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / FP32_FILE
        export_step(model.eval(), onnx_path)
        return write_bundle(out_dir / cfg.name, manifest, {FP32_FILE: onnx_path, **prepared.files})
