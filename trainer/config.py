"""Training configuration: one dataclass, loaded from YAML and overridden by flags."""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from trainer.arguments import SEED_LIMIT
from trainer.data.files import DataError
from trainer.data.text import LABEL_COLUMN, TEXT_COLUMN
from trainer.model import ModelConfig, check_model_settings
from trainer.out_of_scope import DEFAULT_PRECISION
from trm_bundle.manifest import MAX_DESCRIPTION_CHARS, NAME_RULE, VERSION_RULE, is_bundle_version, is_model_name


@dataclass
class TeacherConfig:
    """Training-time teachers (text tasks only; never served): the offline sentence-embedding model,
    or for soft labels a TF-IDF model fit on the training split (trainer/tfidf_teacher.py)."""

    embedding_init: bool = False  # initialise token embeddings from the teacher (PCA of token vectors)
    soft_label_weight: float = 0.0  # weight of KL to the soft labels
    # regression on MiniLM embeddings, or cross-fitted TF-IDF: word regression, or n-gram SVM
    soft_labels: Literal["minilm", "tfidf", "tfidf_svm"] = "minilm"
    temperature: float = 2.0
    embedding_weight: float = 0.0  # weight of cosine loss between the answer slot and the teacher embedding
    # fill the vocabulary up to vocab_size with the teacher's own words after the training texts' words:
    # with embedding_init their embeddings start from the teacher's, so words never seen in training are
    # read as something close to the seen words they resemble, not as [UNK]
    vocabulary: bool = False
    # MiniLM's soft labels and sentence targets for at most this many training rows (a seeded sample; 0: every
    # row); the others train on their labels alone. Embedding a 20-token text costs about as much as training on
    # it once, so on a large file teaching every row left the loop too little time (docs/EXPERIMENTS.md, 2026-12-06)
    max_rows: int = 0


DEFAULT_BUNDLE_VERSION = "1.0.0"  # a bundle's version unless `--bundle-version` gives one


@dataclass
class TrainConfig:
    """Everything `trm-train fit` needs; see trainer/configs/*.yaml for the default models."""

    name: str
    task: Literal["text", "grid"]
    data: str  # a dataset folder of ../shared/data, or the user's CSV/TSV/JSONL/JSON training file
    test_data: str | None = None  # the user's test file (text/grid files); folders have their own test split
    # a user's text files: the CSV/TSV column (matched without case) or JSONL field of the texts and the labels
    text_column: str = TEXT_COLUMN
    label_column: str = LABEL_COLUMN
    version: str = DEFAULT_BUNDLE_VERSION
    description: str = ""
    out_dir: str = "runs"  # checkpoints and logs go to out_dir/name
    seed: int = 0
    # seed of the training stream (data order, token dropout, grid reveals and augmentations); None: `seed`.
    # Soup ingredients may differ in it: same initialisation, different data order.
    stream_seed: int | None = None
    # text tasks: a stratified half of the validation split joins the training data; the other half stays held
    # out for everything validation chooses (trainer/prepare.py, TRAINED_VAL_FRACTION)
    train_on_val: bool = False
    device: str = "auto"  # auto: cuda when available, else cpu
    # model (see trainer.model.ModelConfig)
    model: dict[str, Any] = field(default_factory=dict)
    # text inputs
    max_tokens: int = 32
    vocab_size: int = 4096
    max_chars: int = 2000  # longer: refused unless its first max_chars characters hold max_tokens tokens
    # the label of inputs outside the model's task; None: a label named oos, out_of_scope or none (any case)
    # when the data has one (trainer/out_of_scope.py). Without one, an abstain threshold is calibrated instead.
    oos_label: str | None = None
    # without an out-of-scope label: the precision on validation that the abstain threshold is calibrated for (the
    # answered inputs' accuracy); lower answers more inputs, less of them right; 0: never abstain
    abstain_precision: float = DEFAULT_PRECISION
    # short texts: each label with fewer training rows gets variants of its texts up to this many, labelled
    # by the MiniLM teacher (trainer/data/text_augment.py); 0: none
    augment_per_label: int = 0
    # train (the TRM, its teachers and reader, the built-in baseline) on a stratified sample of about this many of
    # the training rows (trainer.data.holdout.stratified_sample; 0: every row); the held-out rows are drawn first,
    # from the whole file. A fit's plan sets it where preparing every row would take over two thirds of its budget
    max_train_rows: int = 0
    token_dropout: float = 0.0  # training augmentation: each input word becomes [UNK] with this probability
    # text: after training, fit a linear reader over the token ids and mix it into the step's answer where
    # that is more accurate on validation (trainer/reader.py)
    linear_reader: bool = True
    # grid inputs: training puzzles are revealed to a uniform number of givens in this range;
    # originals (no reveal) are mixed in with probability grid_original_fraction
    givens_min: int = 30
    givens_max: int = 50
    grid_original_fraction: float = 0.1
    # optimisation
    batch_size: int = 128
    lr: float = 1e-3
    embedding_lr_scale: float = 1.0
    weight_decay: float = 0.1
    warmup_steps: int = 200
    max_steps: int = 4000  # optimizer steps (one supervision step of the carry batch each)
    max_minutes: float = 0.0  # 0: no time limit
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    ema_decay: float = 0.999
    halt_loss_weight: float = 0.5
    halt_exploration: float = 0.1
    # carry: one supervision step per optimizer step over the ACT carry (the TRM); unrolled: every batch runs
    # all N_sup steps and each step's answer gets the loss (early-exit style); sampled: the loss on the first
    # step and on one step drawn from 1..N_sup. Unrolled, sampled and one-step (N_sup 1) training trim text
    # batches to their longest input.
    # See trainer/train.py.
    supervision: Literal["carry", "unrolled", "sampled"] = "carry"
    # unrolled or sampled: optimizer steps before this one grade the first step only (one-step training of
    # the same network, about a quarter of the cost when N_sup is 4); from it on, every graded step. 0: from the start
    unroll_from_step: int = 0
    checkpoint_every: int = 200
    log_every: int = 50  # progress lines when the output is not a terminal
    eval_every: int = 1000
    eval_examples: int = 1000  # validation examples for the progress evaluation during training
    # ship the EMA weights of the progress evaluation that scored best on validation (the answer after the last
    # step; the later of equals), the run's end evaluated too; False: the last EMA weights. Never with a soup (it
    # averages its ingredients' last weights)
    keep_best: bool = False
    eval_limit: int = 0  # grids: evaluate the exported bundle on a fixed random subset of each split (0: all)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    # a weight soup (trainer/soup.py): one model per entry, each this config with the entry's dotted
    # overrides and the same seed, averaged into the bundle's model; empty: one model
    soup: list[dict[str, Any]] = field(default_factory=list)
    # >0: the ingredients branch from a shared trunk, this config trained to this step on its full
    # learning-rate schedule; each continues from there with its overrides and a fresh stream
    soup_branch_step: int = 0

    def __post_init__(self) -> None:
        for key, value, flag in (("max_steps", self.max_steps, "--max-steps"), ("batch_size", self.batch_size,
                                                                                  "--batch-size")):
            if value < 1:
                raise ValueError(f"{key} (the flag {flag}) must be at least 1, got {value}")
        for key in ("eval_every", "checkpoint_every", "log_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1 (steps), got {getattr(self, key)}")
        for key in ("augment_per_label", "warmup_steps", "unroll_from_step", "eval_examples", "eval_limit",
                    "soup_branch_step"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be 0 or more, got {getattr(self, key)}")
        for key, value in (("seed", self.seed), ("stream_seed", self.stream_seed)):
            if value is not None and not 0 <= value <= SEED_LIMIT:
                raise ValueError(f"{key}{' (the flag --seed)' * (key == 'seed')} must be a whole number from 0 to "
                                 f"{SEED_LIMIT}, got {value}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr (the flag --lr) must be a positive number, got {self.lr}")
        if not (math.isfinite(self.max_minutes) and self.max_minutes >= 0):
            raise ValueError(f"max_minutes (the flag --max-minutes) must be a number of minutes (--set max_minutes=0 "
                             f"for no limit), got {self.max_minutes}")
        if not 0 <= self.abstain_precision <= 1:
            raise ValueError("abstain_precision (the flag --abstain-precision) must lie between 0 (never abstain) and "
                             f"1, got {self.abstain_precision}")
        if self.max_train_rows < 0:
            raise ValueError(f"max_train_rows must be 0 (every training row) or more, got {self.max_train_rows}")
        if self.teacher.max_rows < 0:
            raise ValueError("teacher.max_rows must be 0 (MiniLM teaches every row) or more, "
                             f"got {self.teacher.max_rows}")
        if self.text_column.lower() == self.label_column.lower():
            raise ValueError(f"--text-column and --label-column name the same column ({self.text_column!r}): name "
                             "the column of the texts and the column of the labels")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device (the flag --device) must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.augment_per_label and self.teacher.soft_labels != "minilm":
            raise ValueError("augment_per_label needs the MiniLM soft labels (teacher.soft_labels: minilm): the "
                             "TF-IDF teachers are cross-fitted on the training texts, which variants would leak")
        if self.supervision not in ("carry", "unrolled", "sampled"):
            raise ValueError(f"supervision must be carry, unrolled or sampled, got {self.supervision!r}")
        if self.unroll_from_step and self.supervision == "carry":
            raise ValueError("unroll_from_step is for supervision: unrolled or sampled; the carry grades one step "
                             "per optimizer step already")
        if not 0 <= self.unroll_from_step < self.max_steps:
            raise ValueError(f"unroll_from_step is {self.unroll_from_step}; it must lie between 0 and max_steps - 1 "
                             f"({self.max_steps - 1})")
        if self.keep_best and self.soup:
            raise ValueError("keep_best chooses weights by their validation score, and a soup averages its "
                             "ingredients: --set keep_best=false")
        if self.soup_branch_step and not self.soup:
            raise ValueError(
                "soup_branch_step is set but soup is empty: it is the step at which soup ingredients branch"
            )
        if not 0 <= self.soup_branch_step < self.max_steps:
            raise ValueError(
                f"soup_branch_step is {self.soup_branch_step}; it must lie between 1 and max_steps - 1 "
                f"({self.max_steps - 1}), or be 0 for ingredients trained from step 0"
            )

    @property
    def stream_rng_seed(self) -> int:
        """The seed the training stream draws from: `stream_seed`, or `seed` when none is set."""
        return self.seed if self.stream_seed is None else self.stream_seed

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check_data_found(self) -> None:
        """Raises DataError where the data the model was trained on is not at the paths this config records
        (as the fit was given them: a relative one is read from the folder the fit ran in)."""
        for key, path in (("data", self.data), ("test_data", self.test_data)):
            if path is not None and not Path(path).exists():
                where = " (relative to the folder the fit ran in)" if not Path(path).is_absolute() else ""
                raise DataError(path, None, f"the data the model was trained on is not there{where}: run this in "
                                f"that folder, or give its path with --set {key}=PATH")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        raw = dict(raw)
        for key, kind, example in (("model", dict, "--set model.hidden_size=128"),
                                   ("teacher", dict, "--set teacher.max_rows=0"), ("soup", list, "a config file")):
            if raw.get(key) is not None and not isinstance(raw[key], kind):
                raise ValueError(f"{key} must be a {'mapping of settings' if kind is dict else 'list'} ({example}), "
                                 f"got {raw[key]!r}")
        teacher = raw.get("teacher") or {}
        unknown = sorted(set(teacher) - {f.name for f in dataclasses.fields(TeacherConfig)})
        unknown += sorted(set(raw.get("model") or {}) - {f.name for f in dataclasses.fields(ModelConfig)})
        if unknown:
            prefixed = [f"teacher.{key}" if key in teacher else f"model.{key}" for key in unknown]
            raise ValueError(f"unknown config keys: {', '.join(prefixed)}")
        _check_scalar_types(cls, raw, "")
        if isinstance(raw.get("name"), str) and not is_model_name(raw["name"]):
            raise ValueError(f"name {raw['name']!r} must be {NAME_RULE} (it names the model and its bundle's "
                             "folder): give one with --name")
        if isinstance(raw.get("version"), str) and not is_bundle_version(raw["version"]):
            raise ValueError(f"version {raw['version']!r} must be {VERSION_RULE}: give one with --bundle-version")
        if len(str(raw.get("description") or "")) > MAX_DESCRIPTION_CHARS:
            raise ValueError(f"description has {len(str(raw['description'])):,} characters: a bundle's holds at most "
                             f"{MAX_DESCRIPTION_CHARS:,} (--set description=...)")
        _check_scalar_types(TeacherConfig, teacher, "teacher.")
        _check_scalar_types(ModelConfig, raw.get("model") or {}, "model.")
        check_model_settings(raw.get("model") or {})
        raw["teacher"] = TeacherConfig(**teacher)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in raw
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"the config needs {', '.join(missing)}")
        return cls(**raw)


_SCALAR_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
_TEXT_FIELDS = frozenset(  # config fields that hold text: --set takes their value as given
    f.name for f in dataclasses.fields(TrainConfig) if str(f.type).removesuffix(" | None") == "str")


def _check_scalar_types(cls: type, raw: dict[str, Any], prefix: str) -> None:
    """Raise ValueError naming a key whose value is not of its field's type (e.g. --set max_steps=abc)."""
    for f in dataclasses.fields(cls):
        kind = str(f.type).removesuffix(" | None")
        allowed = _SCALAR_TYPES.get(kind)
        value = raw.get(f.name)
        if allowed is None or value is None:
            continue
        if not isinstance(value, allowed) or (isinstance(value, bool) and kind != "bool"):
            raise ValueError(f"{prefix}{f.name} must be a{'n' if kind == 'int' else ''} {kind}, got {value!r}")


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Reads a YAML config (optional) and applies dotted overrides such as ``model.hidden_size=128``."""
    raw: dict[str, Any] = {}
    if path:
        if not Path(path).is_file():  # a pipe blocked the fit until killed; a folder was told as a full disk
            what = "no such file" if not Path(path).exists() else "not a plain file"
            raise ValueError(f"--config {path}: {what}: give a YAML file of config keys (trainer/configs/ has some)")
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"--config {path} is not valid YAML: {exc}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--config {path} cannot be read: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"--config {path} must hold a mapping of config keys, got {type(raw).__name__}")
    return TrainConfig.from_dict(with_overrides(raw, overrides))


def with_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config dict with dotted overrides applied (None values are skipped)."""
    raw = copy.deepcopy(raw)
    for key, value in overrides.items():
        if value is None:
            continue
        target = raw
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return raw


def dotted(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`settings` with nested dicts flattened to dotted keys (`model.n`), as `--set` names them."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value parsed as YAML (numbers, booleans, lists), but for a text field of the
    config (name, version, description, ...), whose value is the text as given (``version=2.0``,
    ``description=Tickets: five queues``)."""
    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, value = (part.strip() for part in text.split("=", 1))
    if key in _TEXT_FIELDS:
        return key, value
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"--set {text!r}: the value is not valid YAML ({exc.__class__.__name__})") from exc
