"""From a TrainConfig to a finished bundle: prepare data, fit, calibrate, evaluate, export.

`prepare` turns the config's data into a training stream and encoded validation/test sets;
`fit_and_export` trains (resuming when a checkpoint exists) and writes the bundle with metrics
measured on the exported ONNX step itself, so the manifest describes what the server runs.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer import evaluate as ev
from trainer.config import TrainConfig
from trainer.data.containers import GridSplit, TextSplit
from trainer.data.errors import DataError
from trainer.data.grids import SUDOKU_TIERS, concatenate_splits, load_grid_dataset, sudoku_splits
from trainer.data.holdout import stratified_holdout
from trainer.data.text import load_text_dataset
from trainer.data.text_files import check_label_coverage, load_text_file
from trainer.data.tokenizer import encode_texts, train_tokenizer
from trainer.export import (
    GRID_LABELS,
    base_manifest,
    export_step,
    quantize_step,
    torch_step_fn,
    variable_length_spec,
    write_bundle,
)
from trainer.model import TRM, Int8Embedding, ModelConfig, count_parameters
from trainer.report import write_report
from trainer.soup import average_state_dicts, ingredient_configs, trunk_config
from trainer.tasks import EncodedSet, SudokuStream, TextStream, grid_set
from trainer.tfidf_teacher import cross_fitted_soft_labels
from trainer.train import Trainer, pick_device
from trm_bundle.manifest import FP32_FILE, INT8_FILE, sha256_of

OOS_LABEL = "oos"
INT8_MAX_LOSS = 0.005  # ship the int8 variant only if it loses at most 0.5 points
MAX_BUNDLE_BYTES = 9_800_000  # and only if the bundle stays under 10 MB with it (reports and plots included)


@dataclass
class Prepared:
    """Everything the loop and the exporter need besides the config."""

    model_cfg: ModelConfig
    stream: Any
    labels: list[str]
    input_spec: dict[str, Any]
    val: EncodedSet
    tests: dict[str, EncodedSet]  # name -> set ("test", or Sudoku tiers "easy"/"medium"/"hard")
    data_sha256: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)  # extra bundle files (tokenizer.json)
    embedding_init: np.ndarray | None = None


def _hash_inputs(path: Path) -> dict[str, str]:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix != ".md") if path.is_dir() else [path]
    return {p.name: sha256_of(p) for p in files}


def _text_splits(cfg: TrainConfig) -> tuple[TextSplit, TextSplit, TextSplit]:
    """(train, val, test) for a shared dataset folder or a user's file; train includes val when
    cfg.train_on_val."""
    train, val, test = _held_out_text_splits(cfg)
    if cfg.train_on_val:
        train = TextSplit(train.texts + val.texts, train.labels + val.labels)
    return train, val, test


def _held_out_text_splits(cfg: TrainConfig) -> tuple[TextSplit, TextSplit, TextSplit]:
    data = Path(cfg.data)
    if data.is_dir():
        return (load_text_dataset(data, "train", cfg.seed), load_text_dataset(data, "val", cfg.seed),
                load_text_dataset(data, "test", cfg.seed))
    full = load_text_file(data)
    train_idx, val_idx = stratified_holdout(full.labels, 0.1, cfg.seed)
    train = TextSplit([full.texts[i] for i in train_idx], [full.labels[i] for i in train_idx])
    val = TextSplit([full.texts[i] for i in val_idx], [full.labels[i] for i in val_idx])
    test = val
    if cfg.test_data:
        test = load_text_file(Path(cfg.test_data))
        check_label_coverage(full, test, cfg.test_data)
    return train, val, test


def label_ids(split: TextSplit, labels: list[str], path: str) -> np.ndarray:
    """Label names -> indices; a label the model does not know is a data error naming the file."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(split.labels) - set(index))
    if unknown:
        raise DataError(path, None, f"label(s) not seen in training data: {', '.join(unknown[:5])}")
    return np.array([index[label] for label in split.labels], dtype=np.int64)


def prepare_text(cfg: TrainConfig) -> Prepared:
    train, val, test = _text_splits(cfg)
    labels = sorted(set(train.labels))
    tokenizer = train_tokenizer(train.texts, vocab_size=cfg.vocab_size, max_tokens=cfg.max_tokens)
    train_tokens, train_targets = encode_texts(tokenizer, train.texts), label_ids(train, labels, cfg.data)
    model_cfg = ModelConfig(
        task="text", vocab_size=tokenizer.get_vocab_size(), seq_len=cfg.max_tokens, num_outputs=len(labels),
        **cfg.model,
    )
    soft = teacher_vectors = embedding_init = None
    teacher = cfg.teacher
    if teacher.embedding_init or teacher.soft_label_weight or teacher.embedding_weight:
        from trainer import teacher as teacher_lib

        minilm_soft = teacher.soft_label_weight and teacher.soft_labels == "minilm"
        if minilm_soft or teacher.embedding_weight:
            teacher_vectors = teacher_lib.embed_texts(train.texts)
        if minilm_soft:
            soft = teacher_lib.soft_labels(teacher_vectors, train_targets, len(labels), teacher.temperature)
        elif teacher.soft_label_weight:
            kind = "svm" if teacher.soft_labels == "tfidf_svm" else "logistic"
            soft = cross_fitted_soft_labels(
                train.texts, train_targets, len(labels), teacher.temperature, cfg.seed, kind
            )
        if teacher.embedding_init:
            vocabulary = [tok for tok, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]
            embedding_init = teacher_lib.token_embedding_init(
                vocabulary, model_cfg.embed_dim or model_cfg.hidden_size, cfg.seed
            )
    stream = TextStream(train_tokens, train_targets, cfg.stream_rng_seed, soft, teacher_vectors, cfg.token_dropout)
    val_set = EncodedSet(encode_texts(tokenizer, val.texts), label_ids(val, labels, cfg.data))
    test_set = EncodedSet(encode_texts(tokenizer, test.texts), label_ids(test, labels, cfg.test_data or cfg.data))
    hashes = _hash_inputs(Path(cfg.data))
    if cfg.test_data:
        hashes.update(_hash_inputs(Path(cfg.test_data)))
    return Prepared(
        model_cfg=model_cfg, stream=stream, labels=labels,
        input_spec={"kind": "text", "max_tokens": cfg.max_tokens, "max_chars": cfg.max_chars, "pad_id": 0,
                    "tokenizer": "tokenizer.json", "variable_length": variable_length_spec(model_cfg)},
        val=val_set, tests={"test": test_set}, data_sha256=hashes, files={"tokenizer.json": tokenizer.to_str()},
        embedding_init=embedding_init,
    )


def prepare_grid(cfg: TrainConfig) -> Prepared:
    data = Path(cfg.data)
    model_cfg = ModelConfig(task="grid", vocab_size=10, seq_len=81, num_outputs=10, **cfg.model)
    if data.is_dir():
        splits = sudoku_splits(data, cfg.seed)  # parse the shared CSVs once
        train = splits["train"]
        val = concatenate_splits([splits["val_easy"], splits["val_medium"]])
        tests = {tier: grid_set(splits[f"test_{tier}"]) for tier in SUDOKU_TIERS}
    else:
        full = load_grid_dataset(data, "train", cfg.seed)
        order = np.random.default_rng(cfg.seed).permutation(len(full.puzzles))
        cut = max(1, len(order) // 10)
        val = GridSplit(full.puzzles[order[:cut]], full.solutions[order[:cut]])
        train = GridSplit(full.puzzles[order[cut:]], full.solutions[order[cut:]])
        test = load_grid_dataset(Path(cfg.test_data), "test", cfg.seed) if cfg.test_data else val
        tests = {"test": grid_set(test)}
    if cfg.eval_limit:
        val = _sample(val, cfg.eval_limit, cfg.seed)
        tests = {name: sample_set(data_set, cfg.eval_limit, cfg.seed) for name, data_set in tests.items()}
    hashes = _hash_inputs(data)
    if cfg.test_data:
        hashes.update(_hash_inputs(Path(cfg.test_data)))
    stream = SudokuStream(train, cfg.stream_rng_seed, cfg.givens_min, cfg.givens_max, cfg.grid_original_fraction)
    return Prepared(
        model_cfg=model_cfg, stream=stream, labels=list(GRID_LABELS),
        input_spec={"kind": "grid", "rows": 9, "cols": 9, "blank": "0.", "alphabet": "123456789",
                    "rules": "sudoku"},
        val=grid_set(val), tests=tests, data_sha256=hashes,
    )


def _sample_indices(count: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of a fixed random subset (seeded) of at most `limit` of `count` items."""
    return np.sort(np.random.default_rng(seed).permutation(count)[:limit])


def _sample(split: GridSplit, limit: int, seed: int) -> GridSplit:
    """A fixed random subset (seeded) of at most `limit` puzzles."""
    idx = _sample_indices(len(split.puzzles), limit, seed)
    return GridSplit(split.puzzles[idx], split.solutions[idx])


def sample_set(data: EncodedSet, limit: int, seed: int) -> EncodedSet:
    """A fixed random subset (seeded) of at most `limit` examples."""
    idx = _sample_indices(len(data), limit, seed)
    return EncodedSet(data.tokens[idx], data.targets[idx])


def prepare(cfg: TrainConfig) -> Prepared:
    return prepare_text(cfg) if cfg.task == "text" else prepare_grid(cfg)


def build_model(cfg: TrainConfig, prepared: Prepared) -> tuple[TRM, torch.nn.Module | None]:
    """The TRM (with teacher-initialised embeddings when configured) and the optional distillation head."""
    torch.manual_seed(cfg.seed)
    model = TRM(prepared.model_cfg)
    if prepared.embedding_init is not None:
        with torch.no_grad():
            model.embed.tokens.weight.copy_(torch.from_numpy(prepared.embedding_init))
    projection = None
    if cfg.teacher.embedding_weight:
        projection = torch.nn.Linear(prepared.model_cfg.hidden_size, 384)
    return model, projection


def _quick_eval(prepared: Prepared, count: int):
    """Accuracy after each step on the first `count` validation examples (progress during training)."""
    subset = prepared.val.head(count)

    def run(model: TRM) -> dict[str, float]:
        trace = ev.run_recursion(torch_step_fn(model), subset.tokens, model.cfg.state_shape, model.cfg.N_sup)
        per_step = ev.exact(trace.predictions, subset.targets).mean(1)
        return {"val_first_step": float(per_step[0]), "val_last_step": float(per_step[-1]),
                "val_best": float(per_step.max())}

    return run


def _cpu_copy(model: TRM) -> TRM:
    clone = TRM(model.cfg)
    if isinstance(model.embed.tokens, Int8Embedding):
        clone.store_embeddings()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    clone.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return clone.eval()


def evaluate_step(
    step: ev.StepFn, state_shape: tuple[int, int], n_sup: int, sets: dict[str, EncodedSet],
    halt_threshold: float, labels: list[str], oos_threshold: float | None,
) -> dict[str, Any]:
    """Metrics of a step function on each named set (the shape `trm-train eval` prints)."""
    results: dict[str, Any] = {}
    for name, data in sets.items():
        trace = ev.run_recursion(step, data.tokens, state_shape, n_sup)
        summary = ev.summarize(trace, data.targets, halt_threshold)
        if oos_threshold is not None and OOS_LABEL in labels:
            oos = labels.index(OOS_LABEL)
            summary.update(ev.intent_metrics(trace, data.targets, oos, halt_threshold, oos_threshold))
            in_scope = data.targets != oos
            summary["in_scope_anytime_accuracy"] = [
                round(float(a), 5) for a in (trace.predictions[:, in_scope] == data.targets[in_scope]).mean(1)
            ]
        results[name] = summary
    return results


def int8_accuracy_loss(fp32: dict[str, Any], int8: dict[str, Any]) -> dict[str, float]:
    """Points of accuracy the int8 step loses on each evaluated set (the worst one decides shipping)."""
    return {name: fp32[name]["accuracy"] - int8[name]["accuracy"] for name in fp32}


def headline_metrics(results: dict[str, Any]) -> dict[str, float]:
    """Flat metric names for the manifest (and ModelInfo.metrics)."""
    flat: dict[str, float] = {}
    for name, summary in results.items():
        prefix = "test" if name == "test" else f"test_{name}"
        flat[f"{prefix}_accuracy"] = summary["accuracy"]
        flat[f"{prefix}_halting_accuracy"] = summary["halting"]["accuracy"]
        flat[f"{prefix}_halting_mean_steps"] = summary["halting"]["mean_steps"]
        flat[f"{prefix}_ece"] = summary["ece"]
        for key in ("in_scope_accuracy", "oos_recall", "cell_accuracy"):
            if key in summary:
                flat[f"{prefix}_{key}"] = summary[key]
    return {k: round(float(v), 5) for k, v in flat.items()}


@dataclass(frozen=True)
class TrainingRecord:
    """How the exported weights were trained: what the manifest and REPORT.md record."""

    command: str
    wall_time_s: float
    optimizer_steps: int
    train_time_s: float
    device: str
    history: list[dict[str, float]]

    @classmethod
    def of(cls, trainer: Trainer, command: str, wall_time_s: float) -> TrainingRecord:
        device = ", ".join(trainer.trained_on) or str(trainer.device)  # not the exporting process's device
        return cls(command, wall_time_s, trainer.step, trainer.elapsed_s, device, trainer.history)

    def after(self, trunk: TrainingRecord) -> TrainingRecord:
        """What a branch trained itself, without the trunk it started from."""
        return dataclasses.replace(
            self,
            optimizer_steps=self.optimizer_steps - trunk.optimizer_steps,
            train_time_s=self.train_time_s - trunk.train_time_s,
            history=[entry for entry in self.history if entry["step"] > trunk.optimizer_steps],
        )

    @classmethod
    def of_soup(
        cls, ingredients: list[TrainingRecord], command: str, wall_time_s: float, trunk: TrainingRecord | None
    ) -> TrainingRecord:
        """All ingredients' training (and their shared trunk's, tagged ingredient 0): steps and time
        summed, histories tagged with their ingredient."""
        tagged = [(i, record) for i, record in enumerate([trunk, *ingredients]) if record]
        devices = dict.fromkeys(d for _, record in tagged for d in record.device.split(", "))
        history = [{**entry, "ingredient": i} for i, record in tagged for entry in record.history]
        return cls(command, wall_time_s, sum(r.optimizer_steps for _, r in tagged),
                   sum(r.train_time_s for _, r in tagged), ", ".join(devices), history)

    @classmethod
    def of_bundle(cls, manifest: dict[str, Any], evaluation: dict[str, Any]) -> TrainingRecord:
        """The record an existing bundle carries (re-exporting it keeps how it was trained)."""
        training = manifest["training"]
        return cls(training["command"], training["wall_time_s"], training["optimizer_steps"],
                   training["train_time_s"], training["device"], evaluation.get("training_history", []))


def fit_and_export(cfg: TrainConfig, bundle_dir: Path, resume: bool = True, command: str = "") -> Path:
    """Trains (or resumes) the model described by cfg, or the soup of its ingredients, and writes its
    bundle to bundle_dir."""
    started = time.monotonic()
    if cfg.soup:
        prepared, model, ingredients, trunk = fit_soup(cfg, resume)
        record = TrainingRecord.of_soup(ingredients, command, time.monotonic() - started, trunk)
        return export_bundle(cfg, prepared, model, bundle_dir, record)
    prepared, trainer = fit_one(cfg, resume)
    record = TrainingRecord.of(trainer, command, time.monotonic() - started)
    return export_bundle(cfg, prepared, _cpu_copy(trainer.ema.model), bundle_dir, record)


def fit_one(
    cfg: TrainConfig, resume: bool, branch_from: Path | None = None, until: int | None = None
) -> tuple[Prepared, Trainer]:
    """Prepares the data and trains (or resumes, or branches; `Trainer.fit`) one model; its EMA
    weights are `trainer.ema.model`."""
    prepared = prepare(cfg)
    model, projection = build_model(cfg, prepared)
    print(f"{cfg.name}: {count_parameters(model):,} parameters, state {prepared.model_cfg.state_shape}")
    trainer = Trainer(cfg, model, prepared.stream, _quick_eval(prepared, cfg.eval_examples), projection)
    trainer.fit(resume=resume, branch_from=branch_from, until=until)
    return prepared, trainer


def fit_trunk(cfg: TrainConfig, resume: bool) -> tuple[Path, TrainingRecord] | None:
    """Trains (or resumes) the soup's shared trunk to `soup_branch_step`: its checkpoint and record."""
    trunk_cfg = trunk_config(cfg)
    if trunk_cfg is None:
        return None
    _, trainer = fit_one(trunk_cfg, resume, until=cfg.soup_branch_step)
    if trainer.step != cfg.soup_branch_step:
        raise ValueError(
            f"the trunk checkpoint {trainer.checkpoint_path} is at step {trainer.step}, not soup_branch_step "
            f"{cfg.soup_branch_step}; train it again with --restart"
        )
    return trainer.checkpoint_path, TrainingRecord.of(trainer, "", wall_time_s=0.0)


def fit_soup(
    cfg: TrainConfig, resume: bool
) -> tuple[Prepared, TRM, list[TrainingRecord], TrainingRecord | None]:
    """Trains (or resumes) every soup ingredient in turn, each from step 0 or from the shared trunk
    (`soup_branch_step`), and averages their EMA weights (trainer/soup.py).

    Returns the first ingredient's data (all read their texts with the same tokenizer), the soup,
    each ingredient's own training record and the trunk's; a trainer is let go once its weights are kept."""
    trunk = fit_trunk(cfg, resume)
    branch_from, trunk_record = trunk if trunk else (None, None)
    first: Prepared | None = None
    states, records = [], []
    for ingredient in ingredient_configs(cfg):
        prepared, trainer = fit_one(ingredient, resume, branch_from=branch_from)
        first = first or prepared
        if prepared.model_cfg != first.model_cfg or prepared.files != first.files:
            raise ValueError(f"{ingredient.name} builds a different model or tokenizer than the first ingredient")
        states.append(_cpu_copy(trainer.ema.model).state_dict())
        record = TrainingRecord.of(trainer, "", wall_time_s=0.0)
        records.append(record.after(trunk_record) if trunk_record else record)
    assert first is not None  # ingredient_configs returns one config per soup entry, and cfg.soup is not empty
    soup = TRM(first.model_cfg)
    soup.load_state_dict(average_state_dicts(states))
    return first, soup.eval(), records, trunk_record


def export_bundle(
    cfg: TrainConfig, prepared: Prepared, model: TRM, bundle_dir: Path, record: TrainingRecord,
    ablation: dict[str, Any] | None = None,
) -> Path:
    """Exports, calibrates on validation, measures on test (fp32 and int8) and writes the bundle.

    `ablation` (see `ablation_summary`) is a same-size model with less recursion, reported next to this one."""
    mcfg = prepared.model_cfg
    model = _cpu_copy(model).store_embeddings()  # every figure below is measured on the bundle's own weights
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / FP32_FILE, Path(tmp) / INT8_FILE
        export_step(model, fp32)
        quantize_step(fp32, int8, prepared.val.tokens, mcfg)
        # fp32 metrics come from the same weights in torch (faster than ONNX Runtime here, and on a GPU when
        # there is one); `measure_parity` below checks that the ONNX step agrees with them.
        device = pick_device("auto")
        step = torch_step_fn(_cpu_copy(model).to(device))
        val_trace = ev.run_recursion(step, prepared.val.tokens, mcfg.state_shape, mcfg.N_sup)
        halt_threshold = ev.calibrate_halting(val_trace, prepared.val.targets)
        oos_threshold = None
        if OOS_LABEL in prepared.labels:
            stop = ev.halting_steps(val_trace.halt_logits, halt_threshold)
            oos_threshold = ev.calibrate_out_of_scope(
                val_trace, prepared.val.targets, stop, prepared.labels.index(OOS_LABEL)
            )
        args = (mcfg.state_shape, mcfg.N_sup, prepared.tests, halt_threshold, prepared.labels, oos_threshold)
        results = evaluate_step(step, *args)
        results_int8 = evaluate_step(ev.onnx_step_fn(int8), *args)
        parity = measure_parity(model, fp32, prepared)
        metrics = headline_metrics(results)
        int8_metrics = headline_metrics(results_int8)
        int8_loss = max(int8_accuracy_loss(results, results_int8).values())
        bundle_bytes = fp32.stat().st_size + int8.stat().st_size + sum(len(c) for c in prepared.files.values())
        ship_int8 = int8_loss <= INT8_MAX_LOSS and bundle_bytes <= MAX_BUNDLE_BYTES
        int8_decision = (
            "shipped as model.int8.onnx" if ship_int8
            else f"not shipped (loses more than {100 * INT8_MAX_LOSS:.1f} points)" if int8_loss > INT8_MAX_LOSS
            else f"not shipped (the bundle with it would exceed {MAX_BUNDLE_BYTES / 1e6:.1f} MB)"
        )
        metrics.update({f"int8_{k}": v for k, v in int8_metrics.items() if k.endswith("accuracy")})
        files: dict[str, Path | bytes | str] = {FP32_FILE: fp32, **prepared.files}
        if ship_int8:
            files[INT8_FILE] = int8
        evaluation = {
            "results": results, "results_int8": results_int8, "parity": parity,
            "int8_accuracy_loss": round(int8_loss, 5), "int8_shipped": ship_int8,
            "int8_decision": int8_decision,
            "fp32_measured_with": f"torch ({device.type}), ONNX parity below",
            "training_history": record.history,
        }
        if ablation is not None:
            evaluation["ablation"] = ablation
        manifest = base_manifest(
            mcfg, name=cfg.name, version=cfg.version, labels=prepared.labels, input=prepared.input_spec,
            description=cfg.description, halt_threshold=halt_threshold,
            out_of_scope={"label": OOS_LABEL, "threshold": oos_threshold} if oos_threshold is not None else None,
            metrics=metrics, int8=INT8_FILE if ship_int8 else None,
            training={
                "config": cfg.to_dict(), "data_sha256": prepared.data_sha256, "command": record.command,
                "wall_time_s": round(record.wall_time_s, 1), "optimizer_steps": record.optimizer_steps,
                "train_time_s": round(record.train_time_s, 1), "device": record.device,
                "parameters": count_parameters(model),
            },
        )
        report_files = write_report(Path(tmp), manifest, evaluation)
        files.update(report_files)
        files["evaluation.json"] = json.dumps(evaluation, indent=1)
        return write_bundle(bundle_dir, manifest, files)


def ablation_summary(source: Path) -> dict[str, Any]:
    """What a report needs of an ablation bundle: its recursion, test accuracies and training effort.

    `source` is the ablation's bundle folder, or an earlier bundle's evaluation.json whose ablation is
    kept (a model retrained with the same training time per model compares with the same ablation)."""
    if source.is_file():
        ablation = json.loads(source.read_text()).get("ablation")
        if ablation is None:
            raise ValueError(f"{source} records no ablation")
        return ablation
    manifest = json.loads((source / "manifest.json").read_text())
    training = manifest["training"]
    return {
        "recursion": {key: manifest["recursion"][key] for key in ("n", "T", "N_sup")},
        "accuracy": {k: v for k, v in manifest["metrics"].items() if k.endswith("accuracy") and "int8" not in k},
        "parameters": training["parameters"], "optimizer_steps": training["optimizer_steps"],
        "train_time_s": training["train_time_s"], "device": training["device"], "command": training["command"],
    }


def measure_parity(model: TRM, onnx_path: Path, prepared: Prepared, count: int = 200) -> dict[str, float]:
    """ONNX vs PyTorch: max abs difference of one step, and agreement of the full recursion."""
    first = next(iter(prepared.tests.values())).head(count)
    mcfg = prepared.model_cfg
    torch_step, onnx_step = torch_step_fn(model), ev.onnx_step_fn(onnx_path)
    y = np.zeros((len(first), *mcfg.state_shape), dtype=np.float32)
    outs_t, outs_o = torch_step(first.tokens, y, y), onnx_step(first.tokens, y, y)
    max_diff = max(float(np.abs(a - b).max()) for a, b in zip(outs_t, outs_o, strict=True))
    trace_t = ev.run_recursion(torch_step, first.tokens, mcfg.state_shape, mcfg.N_sup)
    trace_o = ev.run_recursion(onnx_step, first.tokens, mcfg.state_shape, mcfg.N_sup)
    agreement = float((trace_t.predictions[-1] == trace_o.predictions[-1]).mean())
    parity = {"examples": len(first), "step_max_abs_diff": max_diff, "final_agreement": agreement}
    if mcfg.variable_length:
        parity["trimmed_step_max_abs_diff"] = trimmed_step_diff(onnx_step, mcfg, first.tokens[:50], outs_o)
    return parity


def trimmed_step_diff(
    step: ev.StepFn, mcfg: ModelConfig, tokens: np.ndarray, full: tuple[np.ndarray, ...]
) -> float:
    """Max |diff| between each example's step at its own trimmed length and its full-length step
    (`full`: the step's outputs at full length, from zero states): what the server's trimming may change."""
    worst = 0.0
    trim = variable_length_spec(mcfg)
    assert trim is not None, "only variable-length steps can be trimmed"
    multiple = trim["token_multiple"]
    for i, row in enumerate(tokens):
        valid = int(np.count_nonzero(row != mcfg.pad_id))
        length = max(1, -(-valid // multiple)) * multiple
        rows = trim["rows_before_tokens"] + length // multiple
        zeros = np.zeros((1, rows, mcfg.hidden_size), dtype=np.float32)
        y, z, logits, halt = step(row[None, :length], zeros, zeros)
        pairs = ((y[0], full[0][i, :rows]), (z[0], full[1][i, :rows]), (logits[0], full[2][i]), (halt, full[3][i]))
        worst = max(worst, *(float(np.abs(a - b).max()) for a, b in pairs))
    return worst
