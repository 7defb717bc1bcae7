"""Writing the bundle (docs/BUNDLE.md): the ONNX supervision step and its int8 variant, their figures,
the int8 decision, the ONNX parity check, REPORT.md and the manifest, written through trm_bundle.

The step is exported without constant folding, so every ONNX initializer keeps its PyTorch
parameter name: `torch_model_from_bundle` can rebuild the exact PyTorch model from a bundle.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from onnx.external_data_helper import uses_external_data

from trainer.baseline import BaselineResult
from trainer.config import TeacherConfig, TrainConfig, with_overrides
from trainer.evaluate import (
    StepFn,
    calibrate,
    evaluate_step,
    headline_metrics,
    onnx_step_fn,
    run_recursion,
    torch_step_fn,
)
from trainer.fit import PARITY_EXAMPLES, Fitted, TrainingRecord, cpu_copy
from trainer.metrics import summarize
from trainer.model import TRM, ModelConfig, count_parameters
from trainer.prepare import Prepared, prepare, resolve_out_of_scope_label
from trainer.quantize import quantize_static_step
from trainer.reader import fit_linear_reader
from trainer.report import write_report
from trainer.tasks import EncodedSet
from trainer.train import pick_device
from trm_bundle import BundleError
from trm_bundle.manifest import (
    FP32_FILE,
    INT8_FILE,
    STEP_INPUTS,
    STEP_OUTPUTS,
    Bundle,
    GridInput,
    Manifest,
    OutOfScope,
    Recursion,
    TextInput,
    Training,
    load_bundle,
)
from trm_bundle.writer import write_bundle

OPSET = 17
TOKENIZER_FILE = "tokenizer.json"
SUDOKU_INPUT = GridInput(rows=9, cols=9, blank="0.", alphabet="123456789", rules="sudoku")
INT8_MAX_LOSS = 0.005  # ship the int8 variant only if it loses at most 0.5 points
MAX_BUNDLE_BYTES = 9_800_000  # and only if the bundle stays under 10 MB with it (reports and plots included)
MAX_READER_BYTES = 1_500_000  # most a linear reader's weights add to an ONNX file (trainer/reader.py)
READER_GRAPH_BYTES = 16_000  # and its nodes, at most (7 kB measured)


def export_bundle(
    fitted: Fitted, bundle_dir: Path, ablation: dict[str, Any] | None = None, reader: dict[str, Any] | None = None,
    started: float | None = None,
) -> Bundle:
    """Exports, calibrates on validation, chooses int8 or not on validation, measures on test (fp32 and int8)
    and writes the bundle.

    `ablation` (see `ablation_summary`) is a same-size model with less recursion, reported next to this one;
    `reader`, what fitting the linear reader that the model already carries found (a re-export's); `started`, when
    the command that trained the model began (`time.monotonic()`): its wall time then counts this export too, up
    to the report (without it, the record's: the training's, or the bundle's a re-export keeps)."""
    cfg, prepared, record = fitted.cfg, fitted.prepared, fitted.record
    model = cpu_copy(fitted.model).store_embeddings()  # every figure below is measured on the bundle's own weights
    tokenizer_json = "" if prepared.tokenizer is None else prepared.tokenizer.to_str()
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / FP32_FILE, Path(tmp) / INT8_FILE
        export_step(model, fp32)
        quantize_step(fp32, int8, prepared.val.tokens, model.cfg)
        if cfg.task == "text" and cfg.linear_reader and model.reader is None:
            budget = reader_budget(fp32.stat().st_size, int8.stat().st_size, len(tokenizer_json))
            trained_on = EncodedSet(prepared.stream.tokens, prepared.stream.targets)
            model, reader_fit = fit_linear_reader(model, trained_on, prepared.val, cfg.seed, budget)
            if reader_fit is not None:
                reader = dataclasses.asdict(reader_fit)
                total = f"; {count_parameters(model):,} parameters in all" if model.reader is not None else ""
                print(f"{cfg.name}: {reader_fit.summary()}{total}", flush=True)
            if model.reader is not None:
                export_step(model, fp32)
                quantize_step(fp32, int8, prepared.val.tokens, model.cfg)
        mcfg = model.cfg
        # fp32 metrics come from the same weights in torch (faster than ONNX Runtime here, and on a GPU when
        # there is one); `measure_parity` below checks that the ONNX step agrees with them.
        device = pick_device("auto")
        step = torch_step_fn(cpu_copy(model).to(device))
        val_trace = run_recursion(step, prepared.val.tokens, mcfg.state_shape, mcfg.N_sup)  # calibrates, chooses int8
        thresholds = calibrate(val_trace, prepared.val.targets, prepared.labels,
                               resolve_out_of_scope_label(cfg.oos_label, prepared.labels), mcfg.task,
                               abstain_precision=cfg.abstain_precision)
        int8_step = onnx_step_fn(int8)

        def measure(step_fn: StepFn, sets: dict[str, EncodedSet]) -> dict[str, Any]:
            return evaluate_step(step_fn, mcfg.state_shape, mcfg.N_sup, sets, thresholds.halt, prepared.labels,
                                 thresholds.out_of_scope)

        results, results_int8 = measure(step, prepared.tests), measure(int8_step, prepared.tests)
        parity = measure_parity(model, fp32, prepared)
        bundle_bytes = fp32.stat().st_size + int8.stat().st_size + len(tokenizer_json)
        int8_validation_loss, ship_int8, int8_reason = int8_decision(
            {"validation": summarize(val_trace, prepared.val.targets, thresholds.halt)},
            measure(int8_step, {"validation": prepared.val}), bundle_bytes)
        files: dict[str, Path | bytes | str] = {FP32_FILE: fp32}
        if tokenizer_json:
            files[TOKENIZER_FILE] = tokenizer_json
        if ship_int8:
            files[INT8_FILE] = int8
        metrics = headline_metrics(results)
        if prepared.tokenizer is not None or prepared.test_rows_trained_on:
            metrics["test_rows_trained_on"] = prepared.test_rows_trained_on
        metrics.update({f"int8_{k}": v for k, v in headline_metrics(results_int8).items()
                        if k.endswith(("accuracy", "oos_recall", "answered_fraction"))})
        evaluation = {
            "results": results, "results_int8": results_int8, "parity": parity,
            "int8_validation_accuracy_loss": round(int8_validation_loss, 5),
            "int8_accuracy_loss": round(accuracy_loss(results, results_int8), 5), "int8_shipped": ship_int8,
            "int8_decision": int8_reason,
            "fp32_measured_with": f"torch ({device.type}), ONNX parity below",
            "training_history": record.history, "validation_rows": len(prepared.val),
        }
        if reader is not None:
            evaluation["linear_reader"] = reader
        if thresholds.abstain is not None:
            evaluation["abstain_calibration"] = dataclasses.asdict(thresholds.abstain)
        if fitted.baseline is not None:
            evaluation["baseline"] = dataclasses.asdict(fitted.baseline)
            metrics.update(fitted.baseline.metrics())
        if ablation is not None:
            evaluation["ablation"] = ablation
        training = Training(
            model_config=mcfg.to_dict(), config=cfg.to_dict(), data_sha256=prepared.data_sha256,
            command=record.command, optimizer_steps=record.optimizer_steps,
            wall_time_s=round(record.wall_time_s if started is None else time.monotonic() - started, 1),
            train_time_s=round(record.train_time_s, 1), device=record.device, parameters=count_parameters(model),
        )
        manifest = step_manifest(
            mcfg, name=cfg.name, version=cfg.version, description=cfg.description, labels=prepared.labels,
            max_chars=cfg.max_chars, halt_threshold=thresholds.halt, out_of_scope=thresholds.out_of_scope,
            training=training, metrics=metrics, int8=ship_int8,
        )
        files.update(write_report(Path(tmp), manifest, evaluation))
        files["evaluation.json"] = json.dumps(evaluation, indent=1)
        return write_bundle(bundle_dir, manifest, files)


def reexport_bundle(source: Path, out: Path, overrides: dict[str, Any], ablation: dict[str, Any] | None) -> Bundle:
    """Re-exports a bundle's own weights with this version's exporter to out/<name> (re-measured, same
    training record; `overrides` are dotted config keys, `ablation` replaces the one it reports)."""
    model, manifest = torch_model_from_bundle(source)
    training = manifest.require_training()
    evaluation = json.loads((source / "evaluation.json").read_text())
    cfg = TrainConfig.from_dict(with_overrides(training.config, overrides))
    cfg.check_data_found()
    # the data without the teachers: they shaped training only, and the weights are already trained
    # (the manifest keeps recording `cfg`, the configuration the weights were trained with)
    # (the teacher's vocabulary stays: it is part of the tokenizer the weights were trained with)
    prepared = prepare(dataclasses.replace(cfg, teacher=TeacherConfig(vocabulary=cfg.teacher.vocabulary)))
    if training.data_sha256 and prepared.data_sha256 != training.data_sha256:
        raise ValueError(f"--from-bundle {source} was trained on other data than {cfg.data} now holds: its "
                         "tokenizer and labels would not be the weights' (re-export where the data is unchanged)")
    record = TrainingRecord.of_bundle(training, evaluation.get("training_history", []))
    baseline = BaselineResult(**evaluation["baseline"]) if "baseline" in evaluation else None
    fitted = Fitted(cfg, prepared, model, record, baseline)
    return export_bundle(fitted, out / cfg.name, ablation or evaluation.get("ablation"),
                         evaluation.get("linear_reader") if model.reader is not None else None)


def step_manifest(
    model_cfg: ModelConfig, *, name: str, version: str, description: str, labels: Sequence[str], max_chars: int,
    halt_threshold: float, out_of_scope: OutOfScope | None, training: Training,
    metrics: dict[str, float] | None = None, int8: bool = False,
) -> Manifest:
    """The manifest of a bundle of `model_cfg`'s step (its input, recursion and ONNX files follow from the
    model; the tokenizer, for text, is TOKENIZER_FILE)."""
    text = model_cfg.task == "text"
    spec: TextInput | GridInput = SUDOKU_INPUT
    if text:
        spec = TextInput(max_tokens=model_cfg.seq_len, max_chars=max_chars, pad_id=model_cfg.pad_id,
                         tokenizer=TOKENIZER_FILE, variable_length=model_cfg.variable_length_spec)
    return Manifest(
        name=name, version=version, task="text_classification" if text else "grid", description=description,
        labels=tuple(labels), input=spec,
        recursion=Recursion(n=model_cfg.n, T=model_cfg.T, N_sup=model_cfg.N_sup, state_shape=model_cfg.state_shape),
        halt_threshold=halt_threshold, min_steps=1, out_of_scope=out_of_scope, metrics=metrics or {},
        onnx_fp32=FP32_FILE, onnx_int8=INT8_FILE if int8 else None, onnx_opset=OPSET, training=training,
    )


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


def torch_model_from_bundle(bundle_dir: str | Path) -> tuple[TRM, Manifest]:
    """Rebuilds the PyTorch TRM with exactly the weights of a bundle's fp32 ONNX step."""
    bundle = load_bundle(Path(bundle_dir))
    manifest = bundle.manifest
    if manifest.task == "sequence":
        raise ValueError(f"{bundle_dir} is a sequence model, which its fit (trm-train fit --task sequence) exports: "
                         "the text and grid exporter cannot rebuild it")
    model = TRM(ModelConfig(**manifest.require_training().model_config)).store_embeddings()
    step = bundle.file(manifest.onnx_fp32)
    graph = onnx.load(str(step), load_external_data=False).graph  # never a file outside the bundle
    if any(uses_external_data(init) for init in graph.initializer):  # as the server refuses it (session.py)
        raise BundleError(f"{step}: its weights lie in another file (ONNX external data), which a bundle may not hold")
    weights = {init.name: torch.from_numpy(numpy_helper.to_array(init).copy()) for init in graph.initializer}
    model.load_state_dict({name: weights[name] for name in model.state_dict()})
    return model.eval(), manifest


def ablation_summary(source: Path) -> dict[str, Any]:
    """What a report needs of an ablation bundle: its recursion, test accuracies and training effort.

    `source` is the ablation's bundle folder, or an earlier bundle's evaluation.json whose ablation is
    kept (a model retrained with the same training time per model compares with the same ablation)."""
    if source.is_file():
        try:
            recorded = json.loads(source.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"--ablation {source}: neither a bundle folder nor an evaluation.json ({exc})") from exc
        ablation = recorded.get("ablation") if isinstance(recorded, dict) else None
        if ablation is None:
            raise ValueError(f"--ablation {source} records no ablation")
        return ablation
    manifest = load_bundle(source).manifest
    training, recursion = manifest.require_training(), manifest.recursion
    return {
        "recursion": {"n": recursion.n, "T": recursion.T, "N_sup": recursion.N_sup},
        "accuracy": {k: v for k, v in manifest.metrics.items() if k.endswith("accuracy") and "int8" not in k},
        "parameters": training.parameters, "optimizer_steps": training.optimizer_steps,
        "train_time_s": training.train_time_s, "device": training.device, "command": training.command,
    }


def reader_budget(fp32_bytes: int, int8_bytes: int, other_bytes: int) -> int:
    """Bytes a linear reader may add to each ONNX file: what keeps the bundle within MAX_BUNDLE_BYTES with its
    int8 variant, or with the fp32 step alone where the int8 variant would not fit anyway; at most
    MAX_READER_BYTES."""
    with_int8 = (MAX_BUNDLE_BYTES - fp32_bytes - int8_bytes - other_bytes) // 2 - READER_GRAPH_BYTES
    fp32_alone = MAX_BUNDLE_BYTES - fp32_bytes - other_bytes - READER_GRAPH_BYTES
    return min(MAX_READER_BYTES, with_int8 if with_int8 > 0 else fp32_alone)


def accuracy_loss(results: dict[str, Any], results_int8: dict[str, Any]) -> float:
    """The most accuracy the int8 step loses on any of the evaluated sets."""
    return max(results[name]["accuracy"] - results_int8[name]["accuracy"] for name in results)


def int8_decision(
    validation: dict[str, Any], validation_int8: dict[str, Any], bundle_bytes: int
) -> tuple[float, bool, str]:
    """The accuracy the int8 step loses on validation, whether it ships, and why: chosen on validation, as
    every other choice of a fit, so that the test figures stay a measurement."""
    loss = accuracy_loss(validation, validation_int8)
    within = loss <= INT8_MAX_LOSS + 1e-9  # accuracies are fractions: 0.93 - 0.925 is 0.0050000000000000044
    ship = within and bundle_bytes <= MAX_BUNDLE_BYTES
    decision = (
        "shipped as model.int8.onnx" if ship
        else f"not shipped (loses more than {100 * INT8_MAX_LOSS:.1f} points on validation)" if not within
        else f"not shipped (the bundle with it would exceed {MAX_BUNDLE_BYTES / 1e6:.1f} MB)"
    )
    return loss, ship, decision


def measure_parity(model: TRM, onnx_path: Path, prepared: Prepared, count: int = PARITY_EXAMPLES) -> dict[str, float]:
    """ONNX vs PyTorch: max abs difference of one step, and agreement of the full recursion."""
    first = next(iter(prepared.tests.values())).head(count)
    mcfg = prepared.model_cfg
    torch_step, onnx_step = torch_step_fn(model), onnx_step_fn(onnx_path)
    y = np.zeros((len(first), *mcfg.state_shape), dtype=np.float32)
    outs_t, outs_o = torch_step(first.tokens, y, y), onnx_step(first.tokens, y, y)
    max_diff = max(float(np.abs(a - b).max()) for a, b in zip(outs_t, outs_o, strict=True))
    trace_t = run_recursion(torch_step, first.tokens, mcfg.state_shape, mcfg.N_sup)
    trace_o = run_recursion(onnx_step, first.tokens, mcfg.state_shape, mcfg.N_sup)
    agreement = float((trace_t.predictions[-1] == trace_o.predictions[-1]).mean())
    parity = {"examples": len(first), "step_max_abs_diff": max_diff, "final_agreement": agreement}
    if mcfg.variable_length:
        parity["trimmed_step_max_abs_diff"] = trimmed_step_diff(onnx_step, mcfg, first.tokens[:50], outs_o)
    return parity


def trimmed_step_diff(step: StepFn, mcfg: ModelConfig, tokens: np.ndarray, full: tuple[np.ndarray, ...]) -> float:
    """Max |diff| between each example's step at its own trimmed length (the server's rule,
    `VariableLength.trimmed_length`) and its full-length step (`full`: the step's outputs at full length,
    from zero states)."""
    trim = mcfg.variable_length_spec
    if trim is None:
        raise ValueError("only variable-length steps can be trimmed")
    worst = 0.0
    for i, row in enumerate(tokens):
        length = trim.trimmed_length(row, mcfg.pad_id)
        rows = trim.state_rows(length)
        zeros = np.zeros((1, rows, mcfg.hidden_size), dtype=np.float32)
        y, z, logits, halt = step(row[None, :length], zeros, zeros)
        pairs = ((y[0], full[0][i, :rows]), (z[0], full[1][i, :rows]), (logits[0], full[2][i]), (halt, full[3][i]))
        worst = max(worst, *(float(np.abs(a - b).max()) for a, b in pairs))
    return worst
