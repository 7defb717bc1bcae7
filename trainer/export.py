"""Checkpoint -> bundle (docs/BUNDLE.md): the ONNX supervision step, an int8 variant, the manifest.

The step is exported without constant folding, so every ONNX initializer keeps its PyTorch
parameter name: `torch_model_from_bundle` can rebuild the exact PyTorch model from a bundle.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from trainer.model import TRM, ModelConfig
from trainer.quantize import quantize_static_step
from trm_bundle.manifest import (
    FP32_FILE,
    MANIFEST_FILE,
    SCHEMA_VERSION,
    STEP_INPUTS,
    STEP_OUTPUTS,
    sha256_of,
)

OPSET = 17
GRID_LABELS = [str(d) for d in range(10)]  # logit index -> symbol; "0" means the model left a blank


def export_step(model: TRM, path: Path) -> None:
    """Writes ONE supervision step of `model` (on CPU, eval mode) as ONNX with a dynamic batch axis.

    Variable-length models (``ModelConfig.variable_length``) also get dynamic token and state-row axes.
    """
    model = model.to("cpu").eval()
    cfg = model.cfg
    tokens = torch.ones(2, cfg.seq_len, dtype=torch.long)
    y, z = model.initial_state(2)
    dynamic_axes: dict[str, dict[int, str]] = {name: {0: "batch"} for name in STEP_INPUTS + STEP_OUTPUTS}
    if cfg.variable_length:
        dynamic_axes["tokens"][1] = "tokens"
        for name in ("y", "z", "y_next", "z_next"):
            dynamic_axes[name][1] = "rows"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (tokens, y, z),
            str(path),
            input_names=list(STEP_INPUTS),
            output_names=list(STEP_OUTPUTS),
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=False,
            dynamo=False,
        )


def quantize_step(fp32_path: Path, int8_path: Path, calibration_tokens: np.ndarray, model_cfg: ModelConfig) -> None:
    """Static int8 variant of the step (trainer/quantize.py): activation scales fixed at export, calibrated on
    `calibration_tokens` (real inputs, e.g. the validation split), so rows of a batch stay independent."""
    quantize_static_step(fp32_path, int8_path, calibration_tokens, model_cfg)


def torch_step_fn(model: TRM):
    """A numpy StepFn (see trainer.evaluate) running the PyTorch model in eval mode on its device."""
    device = next(model.parameters()).device

    @torch.no_grad()
    def step(tokens: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
        model.eval()
        args = (torch.as_tensor(a, device=device) for a in (tokens, y, z))
        return tuple(t.float().cpu().numpy() for t in model.step(*args))

    return step


def write_bundle(
    out_dir: Path, manifest: dict[str, Any], files: dict[str, Path | bytes | str]
) -> Path:
    """Writes a complete bundle folder atomically: built in a temp folder, then renamed into place.

    `files` maps bundle file names to a path to copy, or bytes/str content. The manifest's `files`
    entry (sha256 of every other file) is filled in here.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name, content in files.items():
            target = staging / name
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        manifest = {**manifest, "schema_version": SCHEMA_VERSION}
        manifest["files"] = {name: sha256_of(staging / name) for name in sorted(files)}
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.chmod(0o755)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def verify_bundle(bundle_dir: Path) -> dict[str, Any]:
    """Reads the manifest and checks every listed checksum; raises ValueError on any mismatch."""
    manifest = json.loads((bundle_dir / MANIFEST_FILE).read_text())
    for name, expected in manifest["files"].items():
        path = bundle_dir / name
        if not path.exists():
            raise ValueError(f"{bundle_dir}: missing file {name}")
        if sha256_of(path) != expected:
            raise ValueError(f"{bundle_dir}: checksum mismatch for {name}")
    return manifest


def torch_model_from_bundle(bundle_dir: str | Path) -> tuple[TRM, dict[str, Any]]:
    """Rebuilds the PyTorch TRM with exactly the weights of a bundle's fp32 ONNX step."""
    bundle_dir = Path(bundle_dir)
    manifest = verify_bundle(bundle_dir)
    model = TRM(ModelConfig(**manifest["training"]["model_config"])).store_embeddings()
    graph = onnx.load(str(bundle_dir / manifest["onnx"]["fp32"])).graph
    weights = {init.name: torch.from_numpy(numpy_helper.to_array(init).copy()) for init in graph.initializer}
    model.load_state_dict({name: weights[name] for name in model.state_dict()})
    return model.eval(), manifest


def variable_length_spec(model_cfg: ModelConfig) -> dict[str, int] | None:
    """How a server may trim a batch's padding (docs/BUNDLE.md): None for fixed-length steps."""
    if not model_cfg.variable_length:
        return None
    rows_before = model_cfg.state_shape[0] - model_cfg.positions
    return {"token_multiple": model_cfg.pool, "rows_before_tokens": rows_before}


def base_manifest(model_cfg: ModelConfig, **fields: Any) -> dict[str, Any]:
    """The manifest fields every bundle shares, in the documented order."""
    manifest: dict[str, Any] = {
        "name": fields["name"],
        "version": fields.get("version", "1.0.0"),
        "task": "text_classification" if model_cfg.task == "text" else "grid",
        "description": fields.get("description", ""),
        "labels": list(fields["labels"]),
        "input": fields["input"],
        "recursion": {
            "n": model_cfg.n,
            "T": model_cfg.T,
            "N_sup": model_cfg.N_sup,
            "state_shape": list(model_cfg.state_shape),
        },
        "halting": {"threshold": fields.get("halt_threshold", 0.5), "min_steps": 1},
        "out_of_scope": fields.get("out_of_scope"),
        "metrics": fields.get("metrics", {}),
        "onnx": {"fp32": FP32_FILE, "int8": fields.get("int8"), "opset": OPSET},
        "training": {"model_config": model_cfg.to_dict(), **fields.get("training", {})},
    }
    return manifest
