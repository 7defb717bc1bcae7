"""manifest.json (docs/BUNDLE.md): file and step names, the manifest's types, parsing and loading a bundle.

Both sides read bundles through this module: the server (which never imports torch) and the trainer's
evaluator and exporter; the trainer writes them through `trm_bundle.writer`, which serialises with
`manifest_json`. A bundle that cannot be served (unknown schema, missing field, missing file, checksum
mismatch) raises `BundleError` with a message that names the folder and the problem.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np

from trm_bundle import BundleError
from trm_bundle.checksums import verify_files
from trm_bundle.spoken_numbers import SPOKEN_NUMBERS
from trm_bundle.spoken_words import SPOKEN_WORDS

# 2 added task "sequence", 3 the field sequence.prefix_steps, 4 sequence.halt_when_unchanged, 5
# sequence.unsure_below, 6 sequence.checks, 7 input.normalize; a manifest is written at the lowest version that has
# what it uses, so a reader that predates a feature refuses a bundle that needs it
READABLE_SCHEMAS = (1, 2, 3, 4, 5, 6, 7)
SEQUENCE_CHECKS = (SPOKEN_NUMBERS,)
"""The checks a sequence bundle may ask of its answers (`SequenceOutput.checks`; trm_bundle/spoken_numbers.py)."""
INPUT_NORMALIZATIONS = (SPOKEN_WORDS,)
"""How a sequence bundle may ask its text to be read (`CharacterInput.normalize`; trm_bundle/spoken_words.py)."""
MANIFEST_FILE = "manifest.json"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
STEP_INPUTS = ("tokens", "y", "z")
STEP_OUTPUTS = ("y_next", "z_next", "logits", "halt_logit")
# task "sequence": the input's encoding and one refinement step of the current tokens (docs/BUNDLE.md)
ENCODE_FILE = "encode.onnx"
SEQUENCE_STEP_FILE = "step.onnx"
ENCODE_INPUTS = ("source",)
ENCODE_OUTPUTS = ("source_keys", "source_values", "pointer_keys")
SEQUENCE_STEP_INPUTS = ("source", *ENCODE_OUTPUTS, "previous", "position", "y", "z", "prefix_keys", "prefix_values",
                        "prefix_mask")
SEQUENCE_STEP_OUTPUTS = ("y_next", "z_next", "log_probs", "halt_logit", "step_keys", "step_values")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
NAME_RULE = "1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
_VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]{0,63}$")
VERSION_RULE = ("1-64 characters of letters, digits, '.', '+' or '-', starting with a letter or digit, as semantic "
                "versioning writes them (1.1.0, 2.0.0-rc1)")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
MAX_INPUT_TOKENS = 16_384
"""A text model's token window at most (the shipped ones read 32 and 512): the loader tokenises a text of twice it
to check the tokenizer, which took 18.6 s and 1.66 GB at a million before the graph was found unable to run it."""
MAX_MANIFEST_BYTES = 4 << 20
"""manifest.json's size at most: labels and description within their bounds take under 2 MB."""
MAX_FILES = 100
"""Files a manifest may list (a bundle has 4-6): each is hashed at every load and reload."""
MAX_DESCRIPTION_CHARS = 10_000
MAX_LABEL_CHARS = 1_000
MAX_LABELS_CHARS = 262_144
"""Bounds on what ListModels sends of each model (within gRPC's 1 MiB messages, with room for others): a bundle's
6 MB description had made the list, and every LLM tool, fail for all models."""


def is_model_name(name: str) -> bool:
    """Whether `name` may name a model (and its bundle's folder): NAME_RULE."""
    return bool(_NAME_PATTERN.fullmatch(name))


def is_bundle_version(version: str) -> bool:
    """Whether `version` may be a bundle's version: VERSION_RULE (the server orders versions as semantic
    versioning does, and prints them)."""
    return bool(_VERSION_PATTERN.fullmatch(version))


def model_name_from(text: str) -> str:
    """A model name made from `text` (a file's stem): accented letters without their accents ("données":
    "donnees"), each run of other characters one '-', the ends trimmed to a letter or digit, at most 128
    characters. Where nothing is left: "model-" and 8 hex digits of `text`'s sha256 for letters or digits of
    other scripts ("日本語", so that two such files make two models), else "model"."""
    folded = "".join(char for char in unicodedata.normalize("NFKD", text) if not unicodedata.combining(char))
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", folded).strip("._-")[:128].rstrip("._-")
    if name:
        return name
    return f"model-{hashlib.sha256(text.encode()).hexdigest()[:8]}" if any(c.isalnum() for c in text) else "model"


def real_lengths(tokens: np.ndarray, pad_id: int) -> np.ndarray:
    """Per row of `tokens` ([rows, max_tokens]): the tokens up to its last one that is not padding (0 for an
    all-padding row). The last, not a count: a text may hold the padding token itself ("[PAD]")."""
    real = np.asarray(tokens) != pad_id
    return (real.shape[-1] - real[..., ::-1].argmax(axis=-1)) * real.any(axis=-1)


@dataclass(frozen=True)
class VariableLength:
    """How a batch's trailing padding may be trimmed: tokens in multiples of `token_multiple`, and
    state rows = `rows_before_tokens` + tokens / `token_multiple`."""

    token_multiple: int
    rows_before_tokens: int

    def trimmed_length(self, tokens: np.ndarray, pad_id: int) -> int:
        """Tokens the step needs of one encoded input (ids [max_tokens]), or of a batch of them ([rows,
        max_tokens]: its longest input's): up to the last token that is not padding, rounded up to a multiple
        of `token_multiple`, at least one multiple (an empty input still has one chunk), at most all of them
        (`real_lengths`: a count of the non-padding tokens would cut off the tokens after a "[PAD]" in the
        text when the input runs alone)."""
        tokens = np.asarray(tokens)
        used = int(real_lengths(tokens, pad_id).max())
        return min(tokens.shape[-1], max(1, -(-used // self.token_multiple)) * self.token_multiple)

    def state_rows(self, length: int) -> int:
        """Rows of y and z for a step that reads `length` tokens (a `trimmed_length`)."""
        return self.rows_before_tokens + length // self.token_multiple


@dataclass(frozen=True)
class TextInput:
    """Input spec of a text classification model."""

    max_tokens: int
    max_chars: int
    pad_id: int
    tokenizer: str
    variable_length: VariableLength | None = None


@dataclass(frozen=True)
class GridInput:
    """Input spec of a grid model: cells are `alphabet` symbols or one of the `blank` symbols."""

    rows: int
    cols: int
    blank: str
    alphabet: str
    rules: Literal["sudoku", "none"]

    @property
    def cells(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class CharacterInput:
    """Input spec of a sequence model: the text's characters, each the id of its entry in `labels` (the
    vocabulary), at most `max_chars` of them; `pad_id` pads a batch. With `normalize` (one of INPUT_NORMALIZATIONS),
    the text is read through that normalisation first; without, as given."""

    max_chars: int
    pad_id: int
    normalize: str | None = None


@dataclass(frozen=True)
class SequenceOutput:
    """How a sequence model answers: tokens of `labels` one at a time, starting from `bos_id`, until
    `eos_id` or `max_tokens`; the caches' geometry; the graph that encodes the input (`encode`); the
    refinement steps whose entries the prefix cache keeps (`prefix_steps`, None: all N_sup), step s
    reading those of step min(s, prefix_steps); with `halt_when_unchanged`, a token its halting head has not
    stopped also stops after a step whose most probable token is the one the step before it chose. An answer
    whose confidence (the product of its emitted tokens' probabilities) is below `unsure_below` is unsure
    (0: never), and so is a finished answer that fails one of its `checks` (SEQUENCE_CHECKS)."""

    max_tokens: int
    bos_id: int
    eos_id: int
    layers: int
    slots: int
    heads: int
    head_dim: int
    encode: str
    prefix_steps: int | None = None
    halt_when_unchanged: bool = False
    unsure_below: float = 0.0
    checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recursion:
    n: int
    T: int
    N_sup: int
    state_shape: tuple[int, int]


@dataclass(frozen=True)
class OutOfScope:
    """When a classification is out of scope: its top label is `label`, or its top probability is below
    `threshold`. Without an out-of-scope label (None), the threshold alone: the model abstains."""

    label: str | None
    threshold: float


@dataclass(frozen=True)
class Training:
    """How the weights were trained (written by the trainer; the server does not use it)."""

    model_config: dict[str, Any]  # the fields of trainer.model.ModelConfig
    config: dict[str, Any]  # the full training configuration (trainer.config.TrainConfig)
    data_sha256: dict[str, str]  # data file name -> sha256
    command: str
    wall_time_s: float
    optimizer_steps: int
    train_time_s: float
    device: str  # the device(s) that ran the training steps, e.g. "cpu" or "cpu, cuda"
    parameters: int


@dataclass(frozen=True)
class Manifest:
    """manifest.json: what the model is, its limits, metrics, provenance and file checksums."""

    name: str
    version: str
    task: Literal["text_classification", "grid", "sequence"]
    description: str
    labels: tuple[str, ...]
    input: TextInput | GridInput | CharacterInput
    recursion: Recursion
    halt_threshold: float
    min_steps: int
    out_of_scope: OutOfScope | None
    metrics: dict[str, float]
    onnx_fp32: str
    onnx_int8: str | None
    onnx_opset: int | None
    training: Training | None  # optional for serving; required by the trainer's readers
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256; filled in by the writer
    sequence: SequenceOutput | None = None  # task "sequence" only

    def require_training(self) -> Training:
        """The training record, which re-exporting or rebuilding the PyTorch model needs."""
        if self.training is None:
            raise BundleError(f"bundle {self.name!r} records no 'training' section (model_config and config)")
        return self.training


@dataclass(frozen=True)
class Bundle:
    """A verified bundle folder."""

    path: Path
    manifest: Manifest
    manifest_sha256: str

    def file(self, name: str) -> Path:
        """Absolute path of one of the bundle's files."""
        return self.path / name


def load_bundle(path: Path) -> Bundle:
    """Parse `path/manifest.json` and verify every listed checksum; raise BundleError if unusable."""
    manifest_path = path / MANIFEST_FILE
    if not path.is_dir():
        raise BundleError(f"{path}: no such folder (a bundle is a folder holding {MANIFEST_FILE})")
    if not manifest_path.exists():
        raise BundleError(f"{path}: not a bundle, it holds no {MANIFEST_FILE} (a bundle is the folder `trm-train "
                          "fit` writes under --out; a training run's folder, with its checkpoint, exports with "
                          "`trm-train export --checkpoint`)")
    _check_manifest_file(path, manifest_path)
    try:
        raw = manifest_path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: cannot read {MANIFEST_FILE}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:  # not JSON, not UTF-8, or an integer of more digits than Python reads
        raise BundleError(f"{path}: {MANIFEST_FILE} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BundleError(f"{path}: {MANIFEST_FILE} nests arrays or objects deeper than a reader goes") from exc
    try:
        manifest = parse_manifest(data)
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from exc
    verify_files(path, manifest.files)
    return Bundle(path=path, manifest=manifest, manifest_sha256=hashlib.sha256(raw).hexdigest())


def _check_manifest_file(path: Path, manifest_path: Path) -> None:
    """A plain file inside the bundle, of at most MAX_MANIFEST_BYTES: a pipe would block every reload for good, a
    link could read a file from anywhere, a huge one is read whole."""
    try:
        inside = manifest_path.resolve().parent == path.resolve()
        size = manifest_path.stat().st_size
    except OSError as exc:
        raise BundleError(f"{path}: cannot read {MANIFEST_FILE}: {exc.strerror or exc}") from exc
    if not inside:
        raise BundleError(f"{path}: {MANIFEST_FILE} is a link to a file outside the bundle")
    if not manifest_path.is_file():
        raise BundleError(f"{path}: {MANIFEST_FILE} is not a file (a pipe or a device?)")
    if size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path}: {MANIFEST_FILE} has {size:,} bytes, more than {MAX_MANIFEST_BYTES:,}")


def parse_manifest(data: Any) -> Manifest:
    """Check and convert a decoded manifest.json; raise BundleError naming the bad field."""
    if not isinstance(data, dict):
        raise BundleError("manifest must be a JSON object")
    schema = data.get("schema_version")
    if type(schema) is not int or schema not in READABLE_SCHEMAS:  # not true, nor 1.0
        raise BundleError(f"schema_version {schema!r} is not supported (this server reads "
                          f"{', '.join(map(str, READABLE_SCHEMAS))})")
    name = _text(data, "name")
    if not is_model_name(name):
        raise BundleError(f"name {name!r} must be {NAME_RULE}")
    version = _text(data, "version")
    if not is_bundle_version(version):
        raise BundleError(f"version {_shown(version)} must be {VERSION_RULE}")
    files = _files(data)
    task = _choice(data, "task", ("text_classification", "grid", "sequence") if schema >= 2 else
                   ("text_classification", "grid"))
    labels = _labels(data)
    recursion = _recursion(_object(data, "recursion"))
    spec = _input(_object(data, "input"), schema, task, labels, files)
    sequence = _sequence(_object(data, "sequence"), schema, labels, recursion, files) if task == "sequence" else None
    if sequence is not None and len({spec.pad_id, sequence.bos_id, sequence.eos_id}) < 3:
        raise BundleError(f"input.pad_id {spec.pad_id}, sequence.bos_id {sequence.bos_id} and sequence.eos_id "
                          f"{sequence.eos_id} must be three different indexes of 'labels'")
    if isinstance(spec, TextInput):
        _check_variable_length(spec, recursion)
    halting = _object(data, "halting")
    halt_threshold = _number(halting, "halting.threshold")
    if not 0.0 < halt_threshold <= 1.0:
        raise BundleError(f"halting.threshold must be in (0, 1], got {halt_threshold}")
    min_steps = max(1, _integer(halting, "halting.min_steps", minimum=0))
    if min_steps > recursion.N_sup:
        raise BundleError(f"halting.min_steps {min_steps} exceeds recursion.N_sup {recursion.N_sup}")
    onnx = _object(data, "onnx")
    onnx_fp32 = _listed(files, _text(onnx, "onnx.fp32"), "onnx.fp32")
    int8 = onnx.get("int8")
    onnx_int8 = None if int8 is None else _listed(files, _text(onnx, "onnx.int8"), "onnx.int8")
    onnx_opset = None if onnx.get("opset") is None else _integer(onnx, "onnx.opset")
    return Manifest(
        name=name,
        version=version,
        task=task,
        description=_description(data),
        labels=labels,
        input=spec,
        recursion=recursion,
        halt_threshold=halt_threshold,
        min_steps=min_steps,
        out_of_scope=_out_of_scope(data.get("out_of_scope"), labels),
        metrics=_flat_metrics(data.get("metrics") or {}),
        onnx_fp32=onnx_fp32,
        onnx_int8=onnx_int8,
        onnx_opset=onnx_opset,
        training=_training(data.get("training")),
        files=files,
        sequence=sequence,
    )


def manifest_json(manifest: Manifest) -> dict[str, Any]:
    """The manifest.json object of `manifest`, keys in the documented order; `parse_manifest` reads it back."""
    spec = manifest.input
    return {
        "name": manifest.name,
        "version": manifest.version,
        "task": manifest.task,
        "description": manifest.description,
        "labels": list(manifest.labels),
        "input": {"kind": _INPUT_KINDS[type(spec)], **_input_json(spec)},
        "recursion": {**dataclasses.asdict(manifest.recursion), "state_shape": list(manifest.recursion.state_shape)},
        "halting": {"threshold": manifest.halt_threshold, "min_steps": manifest.min_steps},
        "out_of_scope": None if manifest.out_of_scope is None else dataclasses.asdict(manifest.out_of_scope),
        # JSON has no NaN: a metric undefined for its set (nothing answered, say) is absent, as readers skip it
        "metrics": {name: value for name, value in manifest.metrics.items() if math.isfinite(value)},
        "onnx": {"fp32": manifest.onnx_fp32, "int8": manifest.onnx_int8, "opset": manifest.onnx_opset},
        "training": None if manifest.training is None else dataclasses.asdict(manifest.training),
        **({} if manifest.sequence is None else {"sequence": _sequence_json(manifest.sequence)}),
        "schema_version": _schema_version(manifest),
        "files": dict(manifest.files),
    }


def _input_json(spec: TextInput | GridInput | CharacterInput) -> dict[str, Any]:
    fields = dataclasses.asdict(spec)
    if isinstance(spec, CharacterInput) and spec.normalize is None:
        del fields["normalize"]
    return fields


def _sequence_json(spec: SequenceOutput) -> dict[str, Any]:
    fields = dataclasses.asdict(spec)
    if spec.prefix_steps is None:
        del fields["prefix_steps"]
    if not spec.halt_when_unchanged:
        del fields["halt_when_unchanged"]
    if not spec.unsure_below:
        del fields["unsure_below"]
    if spec.checks:
        fields["checks"] = list(spec.checks)
    else:
        del fields["checks"]
    return fields


def _schema_version(manifest: Manifest) -> int:
    """The lowest schema version that has everything `manifest` uses."""
    if isinstance(manifest.input, CharacterInput) and manifest.input.normalize is not None:
        return 7
    if manifest.sequence is not None and manifest.sequence.checks:
        return 6
    if manifest.sequence is not None and manifest.sequence.unsure_below:
        return 5
    if manifest.sequence is not None and manifest.sequence.halt_when_unchanged:
        return 4
    if manifest.sequence is not None and manifest.sequence.prefix_steps is not None:
        return 3
    return 2 if manifest.task == "sequence" else 1


def _sequence_checks(obj: dict, schema: int) -> tuple[str, ...]:
    """`sequence.checks`: distinct names of SEQUENCE_CHECKS (a check this reader does not know refuses the bundle:
    serving it unchecked would drop what its answers promise)."""
    if "checks" not in obj:
        return ()
    if schema < 6:
        raise BundleError(f"field 'sequence.checks' needs schema_version 6, the manifest says {schema}")
    checks = obj["checks"]
    if not isinstance(checks, list) or not all(isinstance(check, str) for check in checks):
        raise BundleError(f"field 'sequence.checks' must be a list of names, got {checks!r}")
    unknown = [check for check in checks if check not in SEQUENCE_CHECKS]
    if unknown or len(set(checks)) != len(checks):
        raise BundleError(f"sequence.checks {checks!r}: each must be one of {list(SEQUENCE_CHECKS)}, once")
    return tuple(checks)


def _normalize(obj: dict, schema: int) -> str | None:
    """`input.normalize` of a character input: absent or null (the text as given), or one of INPUT_NORMALIZATIONS (a
    normalisation this reader does not know refuses the bundle: its model would read text it was not trained on)."""
    if obj.get("normalize") is None:
        return None
    if schema < 7:
        raise BundleError(f"field 'input.normalize' needs schema_version 7, the manifest says {schema}")
    return _choice(obj, "input.normalize", INPUT_NORMALIZATIONS)


_INPUT_KINDS = {TextInput: "text", GridInput: "grid", CharacterInput: "characters"}
_TASK_INPUTS = {"text_classification": "text", "grid": "grid", "sequence": "characters"}


def _field(obj: dict, key: str) -> Any:
    leaf = key.rsplit(".", 1)[-1]
    if leaf not in obj:
        raise BundleError(f"missing field {key!r}")
    return obj[leaf]


def _object(obj: dict, key: str) -> dict:
    value = _field(obj, key)
    if not isinstance(value, dict):
        raise BundleError(f"field {key!r} must be an object")
    return value


def _text(obj: dict, key: str) -> str:
    value = _field(obj, key)
    if not isinstance(value, str) or not value:
        raise BundleError(f"field {key!r} must be a non-empty string")
    return value


def _string(obj: dict, key: str) -> str:
    value = _field(obj, key)
    if not isinstance(value, str):
        raise BundleError(f"field {key!r} must be a string")
    return value


UINT32_MAX = 2**32 - 1
"""The largest integer a manifest field (or a server limit ModelInfo reports) may hold: the wire's uint32, in which
ModelInfo carries the limits (a larger one was loaded, and then failed every ListModels call)."""


def _integer(obj: dict, key: str, minimum: int = 1, maximum: int = UINT32_MAX) -> int:
    value = _field(obj, key)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise BundleError(f"field {key!r} must be an integer from {minimum} to {maximum}, got {value!r}")
    return value


def _number(obj: dict, key: str) -> float:
    value = _field(obj, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BundleError(f"field {key!r} must be a finite number, got {value!r}")
    return float(value)


def _choice(obj: dict, key: str, allowed: tuple[str, ...]) -> Any:
    value = _field(obj, key)
    if value not in allowed:
        raise BundleError(f"field {key!r} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _files(data: dict) -> dict[str, str]:
    files = _object(data, "files")
    if len(files) > MAX_FILES:
        raise BundleError(f"files: {len(files):,} names, more than {MAX_FILES}")
    for name, digest in files.items():
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or name == MANIFEST_FILE:
            raise BundleError(f"files: {name!r} is not a file name inside the bundle")
        if str(path) != name or name == ".":  # `./model.onnx`, `a//b`: one file under many names, each hashed
            raise BundleError(f"files: {name!r} is not written plainly: write {str(path)!r}")
        if not isinstance(digest, str) or not _SHA256_PATTERN.match(digest):
            raise BundleError(f"files: checksum of {name!r} must be 64 lowercase hex digits")
    return dict(files)


def _listed(files: dict[str, str], name: str, key: str) -> str:
    if name not in files:
        raise BundleError(f"{key} names {name!r}, which has no checksum in 'files'")
    return name


def _labels(data: dict) -> tuple[str, ...]:
    labels = _field(data, "labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise BundleError("field 'labels' must be a non-empty list of non-empty strings")
    if len(set(labels)) != len(labels):
        raise BundleError("field 'labels' has duplicates")
    if (longest := max(map(len, labels))) > MAX_LABEL_CHARS:
        raise BundleError(f"a label of 'labels' has {longest:,} characters, more than {MAX_LABEL_CHARS:,}")
    if (total := sum(map(len, labels))) > MAX_LABELS_CHARS:
        raise BundleError(f"'labels' hold {total:,} characters, more than {MAX_LABELS_CHARS:,}")
    return tuple(labels)


def _description(data: dict) -> str:
    description = str(data.get("description") or "")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise BundleError(f"field 'description' has {len(description):,} characters, more than "
                          f"{MAX_DESCRIPTION_CHARS:,}")
    return description


def _shown(value: Any) -> str:
    """`value` as Python writes it, cut to 80 characters (a bundle's field may be any size)."""
    written = repr(value)
    return written if len(written) <= 80 else f"{written[:80]}... ({len(written):,} characters)"


def _recursion(obj: dict) -> Recursion:
    shape = _field(obj, "recursion.state_shape")
    valid_shape = isinstance(shape, list) and len(shape) == 2
    if not valid_shape or not all(isinstance(x, int) and not isinstance(x, bool) and 0 < x <= UINT32_MAX
                                  for x in shape):
        raise BundleError(f"field 'recursion.state_shape' must be two integers from 1 to {UINT32_MAX}, got "
                          f"{_shown(shape)}")
    return Recursion(
        n=_integer(obj, "recursion.n"),
        T=_integer(obj, "recursion.T"),
        N_sup=_integer(obj, "recursion.N_sup"),
        state_shape=(shape[0], shape[1]),
    )


def _input(
    obj: dict, schema: int, task: str, labels: tuple[str, ...], files: dict[str, str]
) -> TextInput | GridInput | CharacterInput:
    kind = _choice(obj, "input.kind", ("text", "grid", "characters"))
    if kind != _TASK_INPUTS[task]:
        raise BundleError(f"input.kind {kind!r} does not fit task {task!r}")
    if kind == "characters":
        spec = CharacterInput(max_chars=_integer(obj, "input.max_chars"),
                              pad_id=_integer(obj, "input.pad_id", minimum=0), normalize=_normalize(obj, schema))
        if spec.pad_id >= len(labels):
            raise BundleError(f"input.pad_id {spec.pad_id} is not an index of 'labels'")
        return spec
    if kind == "text":
        return TextInput(
            max_tokens=_integer(obj, "input.max_tokens", maximum=MAX_INPUT_TOKENS),
            max_chars=_integer(obj, "input.max_chars"),
            pad_id=_integer(obj, "input.pad_id", minimum=0),
            tokenizer=_listed(files, _text(obj, "input.tokenizer"), "input.tokenizer"),
            variable_length=_variable_length(obj.get("variable_length")),
        )
    spec = GridInput(
        rows=_integer(obj, "input.rows"),
        cols=_integer(obj, "input.cols"),
        blank=_text(obj, "input.blank"),
        alphabet=_text(obj, "input.alphabet"),
        rules=_choice(obj, "input.rules", ("sudoku", "none")),
    )
    if set(spec.blank) & set(spec.alphabet):
        raise BundleError("input.blank and input.alphabet share a symbol")
    if any(len(label) != 1 for label in labels):
        raise BundleError("grid models need one-character labels (the symbol of each logit index)")
    if labels[0] not in spec.blank or "".join(labels[1:]) != spec.alphabet:
        raise BundleError(f"a grid model's labels are a blank symbol, then input.alphabet symbol by symbol (labels[i + "
                          f"1] = alphabet[i]): {_shown(''.join(labels))} against blank {spec.blank!r} and alphabet "
                          f"{spec.alphabet!r}")
    if spec.rules == "sudoku":
        box = math.isqrt(spec.rows)
        if spec.rows != spec.cols or box * box != spec.rows or len(spec.alphabet) != spec.rows:
            raise BundleError("input.rules 'sudoku' needs a square grid of side k*k and k*k alphabet symbols")
    return spec


def _sequence(obj: dict, schema: int, labels: tuple[str, ...], recursion: Recursion,
              files: dict[str, str]) -> SequenceOutput:
    prefix_steps = None
    if "prefix_steps" in obj:
        if schema < 3:
            raise BundleError(f"field 'sequence.prefix_steps' needs schema_version 3, the manifest says {schema}")
        prefix_steps = _integer(obj, "sequence.prefix_steps")
        if prefix_steps > recursion.N_sup:
            raise BundleError(f"sequence.prefix_steps {prefix_steps} exceeds recursion.N_sup {recursion.N_sup}")
    halt_when_unchanged = obj.get("halt_when_unchanged", False)
    if "halt_when_unchanged" in obj and schema < 4:
        raise BundleError(f"field 'sequence.halt_when_unchanged' needs schema_version 4, the manifest says {schema}")
    if not isinstance(halt_when_unchanged, bool):
        raise BundleError(f"field 'sequence.halt_when_unchanged' must be true or false, got {halt_when_unchanged!r}")
    unsure_below = 0.0
    if "unsure_below" in obj:
        if schema < 5:
            raise BundleError(f"field 'sequence.unsure_below' needs schema_version 5, the manifest says {schema}")
        unsure_below = _number(obj, "sequence.unsure_below")
        if not 0.0 <= unsure_below < 1.0:
            raise BundleError(f"sequence.unsure_below must be in [0, 1), got {unsure_below}")
    spec = SequenceOutput(
        max_tokens=_integer(obj, "sequence.max_tokens"),
        bos_id=_integer(obj, "sequence.bos_id", minimum=0),
        eos_id=_integer(obj, "sequence.eos_id", minimum=0),
        layers=_integer(obj, "sequence.layers"),
        slots=_integer(obj, "sequence.slots"),
        heads=_integer(obj, "sequence.heads"),
        head_dim=_integer(obj, "sequence.head_dim"),
        encode=_listed(files, _text(obj, "sequence.encode"), "sequence.encode"),
        prefix_steps=prefix_steps,
        halt_when_unchanged=halt_when_unchanged,
        unsure_below=unsure_below,
        checks=_sequence_checks(obj, schema),
    )
    if max(spec.bos_id, spec.eos_id) >= len(labels):
        raise BundleError("sequence.bos_id and sequence.eos_id must be indexes of 'labels' (the vocabulary)")
    return spec


def _variable_length(value: Any) -> VariableLength | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BundleError("field 'input.variable_length' must be an object or null")
    return VariableLength(
        token_multiple=_integer(value, "input.variable_length.token_multiple"),
        rows_before_tokens=_integer(value, "input.variable_length.rows_before_tokens", minimum=0),
    )


def _check_variable_length(spec: TextInput, recursion: Recursion) -> None:
    trim = spec.variable_length
    if trim is None:
        return
    if spec.max_tokens % trim.token_multiple:
        raise BundleError(
            f"input.max_tokens {spec.max_tokens} is not a multiple of input.variable_length.token_multiple "
            f"{trim.token_multiple}"
        )
    rows = trim.rows_before_tokens + spec.max_tokens // trim.token_multiple
    if rows != recursion.state_shape[0]:
        raise BundleError(
            f"input.variable_length implies {rows} state rows at max_tokens, recursion.state_shape has "
            f"{recursion.state_shape[0]}"
        )


def _out_of_scope(value: Any, labels: tuple[str, ...]) -> OutOfScope | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BundleError("field 'out_of_scope' must be an object or null")
    label = _field(value, "out_of_scope.label")
    if label is not None and label not in labels:
        raise BundleError(f"out_of_scope.label {label!r} is not one of the labels")
    threshold = _number(value, "out_of_scope.threshold")
    if not 0.0 <= threshold <= 1.0:
        raise BundleError(f"out_of_scope.threshold must be in [0, 1], got {threshold}")
    return OutOfScope(label=label, threshold=threshold)


def _training(value: Any) -> Training | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BundleError("field 'training' must be an object or null")
    data_sha256 = _object(value, "training.data_sha256")
    if not all(isinstance(digest, str) for digest in data_sha256.values()):
        raise BundleError("field 'training.data_sha256' must map file names to sha256 strings")
    return Training(
        model_config=_object(value, "training.model_config"),
        config=_object(value, "training.config"),
        data_sha256=data_sha256,
        command=_string(value, "training.command"),
        wall_time_s=_number(value, "training.wall_time_s"),
        optimizer_steps=_integer(value, "training.optimizer_steps", minimum=0),
        train_time_s=_number(value, "training.train_time_s"),
        device=_string(value, "training.device"),
        parameters=_integer(value, "training.parameters", minimum=0),
    )


def _flat_metrics(value: Any, prefix: str = "") -> dict[str, float]:
    """Numeric metrics, nested objects flattened to dotted keys; other values are skipped."""
    if not isinstance(value, dict):
        raise BundleError("field 'metrics' must be an object")
    flat: dict[str, float] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict):
            flat.update(_flat_metrics(item, f"{name}."))
        elif isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item):
            flat[name] = float(item)
    return flat
