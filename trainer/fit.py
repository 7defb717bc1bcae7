"""Fitting: the trained model a bundle is written from (`Fitted`), trained from a config (one model, or a
weight soup of several; the loop is trainer/train.py), or loaded from a training checkpoint."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainer import metrics, teacher
from trainer.baseline import BaselineResult, score_linear_baseline
from trainer.checkpoint_file import UnreadableCheckpoint, read_checkpoint
from trainer.config import TrainConfig, with_overrides
from trainer.data.files import counted
from trainer.data.text import TextSplit
from trainer.data.tokenizer import unknown_share
from trainer.evaluate import run_recursion, torch_step_fn
from trainer.model import TRM, Int8Embedding, count_parameters
from trainer.prepare import (
    Prepared,
    TextSplits,
    prepare,
    resolve_out_of_scope_label,
    sampled_training_rows,
    text_splits,
)
from trainer.soup import average_state_dicts, ingredient_configs, trunk_config
from trainer.train import CHECKPOINT, Trainer
from trm_bundle.manifest import Training


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
    def of_bundle(cls, training: Training, history: list[dict[str, float]]) -> TrainingRecord:
        """The record an existing bundle carries (re-exporting it keeps how it was trained)."""
        return cls(training.command, training.wall_time_s, training.optimizer_steps, training.train_time_s,
                   training.device, history)


@dataclass(frozen=True)
class Fitted:
    """A trained model and what its bundle records about it."""

    cfg: TrainConfig  # the configuration the weights were trained with
    prepared: Prepared
    model: TRM  # the EMA weights shipped (`Trainer.shipped_model`, or the soup's average), on the CPU in eval mode
    record: TrainingRecord
    baseline: BaselineResult | None = None  # text: the built-in baseline on the same splits (never shipped)


def fit(cfg: TrainConfig, resume: bool = True, command: str = "", ends_by: float | None = None) -> Fitted:
    """Trains (or resumes) the model described by cfg, or the soup of its ingredients; one model's training loop
    times itself to end by `ends_by` (`Trainer.fit`), its record keeping the minutes it was given."""
    started = time.monotonic()
    splits = text_splits(cfg) if cfg.task == "text" else None  # read once: 30 s for 1.5M rows
    baseline = fit_baseline(cfg, splits)
    if cfg.soup:
        prepared, model, ingredients, trunk = fit_soup(cfg, resume)
        record = TrainingRecord.of_soup(ingredients, command, time.monotonic() - started, trunk)
        return Fitted(cfg, prepared, model, record, baseline)
    prepared, trainer = fit_one(cfg, resume, command=command, ends_by=ends_by, splits=splits)
    record = TrainingRecord.of(trainer, trainer.command, time.monotonic() - started)  # a resumed run's commands
    return Fitted(trainer.cfg, prepared, cpu_copy(trainer.shipped_model()), record, baseline)


MAX_BASELINE_CELLS = 50_000_000
"""Labels times training rows beyond which the baseline is left out: its one-vs-rest SVM costs about that product
(CLINC150's 151 labels of 15,000 rows: 12 s; 10,000 labels of 18,000 rows ran past a 3.5-minute budget by more than
8 minutes, deaf to Ctrl-C inside liblinear)."""


def fit_baseline(cfg: TrainConfig, splits: TextSplits | None = None) -> BaselineResult | None:
    """Text: the built-in linear baseline trained on the model's training split and scored on its test split
    (printed as soon as it is known; `splits`: `text_splits(cfg)` where already read); None for
    grids."""
    if cfg.task != "text":
        return None
    every_row, val, test = splits or text_splits(cfg)
    train = sampled_training_rows(every_row, cfg)
    print(f"{cfg.name}: {split_sentence(train, val, test, cfg.test_data, len(every_row))}", flush=True)
    oos_label = resolve_out_of_scope_label(cfg.oos_label, sorted(set(train.labels)))
    if oos_label is not None:
        named = ("as --oos-label names it" if cfg.oos_label else
                 "by its name (--oos-label names another; --oos-label '' makes it a label like the others)")
        print(f"{cfg.name}: the label {oos_label!r} is out of scope, {named}: an answer of it defers to the LLM, and "
              "the figures give in-scope accuracy and out-of-scope recall apart", flush=True)
    labels = len(set(train.labels))
    if labels * len(train.texts) > MAX_BASELINE_CELLS:
        print(f"{cfg.name}: note: no built-in baseline for {labels:,} labels of {len(train.texts):,} rows (a linear "
              "model for each label would take longer than the fit), so no comparison with one", flush=True)
        return None
    result = score_linear_baseline(train.texts, train.labels, test.texts, test.labels, oos_label, cfg.seed)
    print(f"{cfg.name}: {result.summary()}", flush=True)
    return result


def split_sentence(
    train: TextSplit, val: TextSplit, test: TextSplit, test_file: str | None, training_rows: int | None = None
) -> str:
    """How many rows train, validate and test (of the file's `training_rows` where `train` is a sample of them),
    and the labels the test rows leave out, e.g. "308 rows to train on, 34 held out for validation and 34 for
    test"."""
    tested = f"the test file's {counted(len(test.texts), 'row')}" if test_file else f"{len(test.texts):,} for test"
    sentence = f"{counted(len(train.texts), 'row')} to train on"
    if training_rows is not None and training_rows > len(train.texts):
        sentence += f" (a stratified sample of the {training_rows:,} outside the hold-outs: max_train_rows)"
    sentence += f", {len(val.texts):,} held out for validation and "
    sentence += tested
    labels, covered = set(train.labels), set(test.labels)
    if covered < labels:
        sentence += (f"; the test rows have {len(covered)} of the {len(labels)} labels, and the test figures say "
                     "nothing of the others" + ("" if test_file else " (give --test FILE with rows of every label)"))
    return sentence


def fit_one(
    cfg: TrainConfig, resume: bool, branch_from: Path | None = None, until: int | None = None, command: str = "",
    ends_by: float | None = None, splits: TextSplits | None = None,
) -> tuple[Prepared, Trainer]:
    """Prepares the data (a text config's `splits` where already read) and trains (or resumes, or branches, or
    times to end by `ends_by`, leaving room for the export's evaluations; `Trainer.fit`) one model, its checkpoint
    recording `command`; its EMA weights are `trainer.ema.model`."""
    prepared = prepare(cfg, splits)
    trainer = build_trainer(cfg, prepared)
    trainer.command = command
    print(f"{cfg.name}: {count_parameters(trainer.model):,} parameters, vocabulary {prepared.model_cfg.vocab_size:,}, "
          f"state {prepared.model_cfg.state_shape}")
    if prepared.tokenizer is not None:
        for texts, split in (("validation texts'", prepared.val), *((f"{name} file's", test) for name, test in
                                                                     prepared.tests.items())):
            if note := unknown_words_note(unknown_share(split.tokens), texts):
                print(f"{cfg.name}: {note}")
    evaluations_after = 0.0 if ends_by is None else export_evaluations(cfg, prepared)
    trainer.fit(resume=resume, branch_from=branch_from, until=until, ends_by=ends_by,
                evaluations_after=evaluations_after)
    return prepared, trainer


MANY_UNKNOWN = 0.25
"""A share of the validation texts' words outside the vocabulary worth a note: 4.6 % for CLINC150's test queries,
3.3 % for 20 Newsgroups' posts, 11 % for the voice commands' 50 rows; 72 % for texts of numbers only, which
trained to chance (2026-12-05)."""


def unknown_words_note(share: float, texts: str) -> str | None:
    """What a text fit says before training when `share` of the words of `texts` ("validation texts'", "test
    file's": a test file of phrasings the training file lacks, such as another language's word forms, is read
    worse than its validation rows) are outside the vocabulary."""
    if share < MANY_UNKNOWN:
        return None
    return (f"note: {100 * share:.0f}% of the {texts} words are not among the training texts' words that "
            "the vocabulary holds, and the model reads each as the same unknown word: numbers, codes and names it has "
            "not seen look alike to it (the linear baseline reads characters); rows whose words recur help")


PARITY_EXAMPLES = 200  # the export's parity check: PyTorch against ONNX on the first test set's first rows


def export_evaluations(cfg: TrainConfig, prepared: Prepared) -> float:
    """The recursion that `export_bundle` runs after training, in the loop's progress evaluations (each over the
    first cfg.eval_examples validation rows): the validation and test rows, each with the fp32 and the int8 step,
    and the parity check's rows in PyTorch and ONNX."""
    tests = list(prepared.tests.values())
    parity = min(PARITY_EXAMPLES, len(tests[0])) if tests else 0
    rows = len(prepared.val) + sum(len(test) for test in tests) + parity
    return 2 * rows / max(1, min(cfg.eval_examples, len(prepared.val)))


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
        if prepared.model_cfg != first.model_cfg or _tokenizer_json(prepared) != _tokenizer_json(first):
            raise ValueError(f"{ingredient.name} builds a different model or tokenizer than the first ingredient")
        states.append(cpu_copy(trainer.ema.model).state_dict())
        record = TrainingRecord.of(trainer, "", wall_time_s=0.0)
        records.append(record.after(trunk_record) if trunk_record else record)
    assert first is not None  # ingredient_configs returns one config per soup entry, and cfg.soup is not empty
    soup = TRM(first.model_cfg)
    soup.load_state_dict(average_state_dicts(states))
    return first, soup.eval(), records, trunk_record


def from_checkpoint(checkpoint: Path, overrides: dict[str, Any], command: str, exported_by: str) -> Fitted:
    """The model of a training checkpoint (runs/NAME or runs/NAME/checkpoint.pt), loaded as `fit_one`
    builds it, with the configuration it was trained with plus the dotted `overrides`; its record names `command`
    as the one that trained it, else the command its checkpoint records, else `exported_by` (the export's own)."""
    if checkpoint.is_dir():
        checkpoint = checkpoint / CHECKPOINT
    try:
        state = read_checkpoint(checkpoint, map_location="cpu")
    except OSError as exc:
        raise ValueError(f"--checkpoint {checkpoint}: not a training checkpoint ({exc})") from exc
    except UnreadableCheckpoint as exc:
        raise ValueError(f"--checkpoint {checkpoint}: not a training checkpoint (it {exc.reason})") from exc
    if not isinstance(state, dict) or "config" not in state:
        raise ValueError(f"--checkpoint {checkpoint}: not a training checkpoint (no config in it)")
    if "step_weights" in state["config"]:  # a SequenceTrainConfig's field
        raise ValueError(f"--checkpoint {checkpoint}: a sequence model's run: its fit (trm-train fit --task sequence) "
                         "exports it, and resumes from it when run again with the same --run-dir")
    trained_with = TrainConfig.from_dict(with_overrides(state["config"], overrides))  # what the manifest records
    # loaded on the CPU, from where the checkpoint actually is
    cfg = dataclasses.replace(trained_with, device="cpu", out_dir=str(checkpoint.parent.parent))
    cfg.check_data_found()
    prepared = prepare(cfg)
    trainer = build_trainer(cfg, prepared)
    if not trainer.load_checkpoint(checkpoint):
        raise ValueError(f"--checkpoint {checkpoint} was trained on other data than {cfg.data} now holds, or as "
                         "another model: export it where its data is unchanged")
    record = TrainingRecord.of(trainer, command or state.get("command") or exported_by, trainer.elapsed_s)
    return Fitted(trained_with, prepared, cpu_copy(trainer.shipped_model()), record, fit_baseline(cfg))


def build_trainer(cfg: TrainConfig, prepared: Prepared) -> Trainer:
    """The loop for one model: its initial weights, the optional distillation head, progress evaluation."""
    model, projection = build_model(cfg, prepared)
    return Trainer(cfg, model, prepared.stream, _quick_eval(prepared, cfg.eval_examples), projection,
                   prepared.data_sha256)


def build_model(cfg: TrainConfig, prepared: Prepared) -> tuple[TRM, torch.nn.Module | None]:
    """The TRM (with teacher-initialised embeddings when configured) and the optional distillation head."""
    torch.manual_seed(cfg.seed)
    model = TRM(prepared.model_cfg)
    if prepared.embedding_init is not None:
        with torch.no_grad():
            model.embed.tokens.weight.copy_(torch.from_numpy(prepared.embedding_init))
    projection = None
    if cfg.teacher.embedding_weight:
        projection = torch.nn.Linear(prepared.model_cfg.hidden_size, teacher.EMBEDDING_DIM)
    return model, projection


def cpu_copy(model: TRM) -> TRM:
    """An fp32 copy of `model` on the CPU in eval mode (with the same token-table storage)."""
    clone = TRM(model.cfg)
    if isinstance(model.embed.tokens, Int8Embedding):
        clone.store_embeddings()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    clone.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return clone.eval()


def _quick_eval(prepared: Prepared, count: int):
    """Accuracy after each step on the first `count` validation examples (progress during training)."""
    subset = prepared.val.head(count)

    def run(model: TRM) -> dict[str, float]:
        trace = run_recursion(torch_step_fn(model), subset.tokens, model.cfg.state_shape, model.cfg.N_sup)
        per_step = metrics.exact(trace.predictions, subset.targets).mean(1)
        return {"val_first_step": float(per_step[0]), "val_last_step": float(per_step[-1]),
                "val_best_step": float(per_step.max())}

    return run


def _tokenizer_json(prepared: Prepared) -> str | None:
    return None if prepared.tokenizer is None else prepared.tokenizer.to_str()
