"""The bundle contract (docs/BUNDLE.md): file names, manifest types, parsing and checksum verification.

Both sides read bundles through this module: the server (which never imports torch) and the trainer's
evaluator and exporter. A bundle that cannot be served (unknown schema, missing field, missing file,
checksum mismatch) raises `BundleError` with a message that names the folder and the problem.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
STEP_INPUTS = ("tokens", "y", "z")
STEP_OUTPUTS = ("y_next", "z_next", "logits", "halt_logit")
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class BundleError(Exception):
    """A bundle folder cannot be served: corrupt, incomplete or incompatible."""


@dataclass(frozen=True)
class VariableLength:
    """How a batch's trailing padding may be trimmed: tokens in multiples of `token_multiple`, and
    state rows = `rows_before_tokens` + tokens / `token_multiple`."""

    token_multiple: int
    rows_before_tokens: int


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
class Recursion:
    n: int
    T: int
    N_sup: int
    state_shape: tuple[int, int]


@dataclass(frozen=True)
class OutOfScope:
    label: str
    threshold: float


@dataclass(frozen=True)
class Manifest:
    """The parts of manifest.json the server uses."""

    name: str
    version: str
    task: Literal["text_classification", "grid"]
    description: str
    labels: tuple[str, ...]
    input: TextInput | GridInput
    recursion: Recursion
    halt_threshold: float
    min_steps: int
    out_of_scope: OutOfScope | None
    metrics: dict[str, float]
    onnx_fp32: str
    onnx_int8: str | None
    files: dict[str, str]


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
    try:
        raw = manifest_path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: cannot read {MANIFEST_FILE}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: {MANIFEST_FILE} is not valid JSON: {exc}") from exc
    try:
        manifest = parse_manifest(data)
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from exc
    verify_files(path, manifest.files)
    return Bundle(path=path, manifest=manifest, manifest_sha256=hashlib.sha256(raw).hexdigest())


def verify_files(folder: Path, files: dict[str, str]) -> None:
    """Recompute the sha256 of every listed file; raise BundleError on a missing file or mismatch."""
    for name, expected in files.items():
        target = folder / name
        if not target.is_file():
            raise BundleError(f"{folder}: file {name!r} listed in the manifest is missing")
        actual = sha256_of(target)
        if actual != expected:
            raise BundleError(
                f"{folder}: checksum mismatch for {name!r} (manifest {expected[:12]}…, file {actual[:12]}…); "
                "the bundle is corrupt or was edited after export"
            )


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_manifest(data: Any) -> Manifest:
    """Check and convert a decoded manifest.json; raise BundleError naming the bad field."""
    if not isinstance(data, dict):
        raise BundleError("manifest must be a JSON object")
    schema = data.get("schema_version")
    if schema != SCHEMA_VERSION:
        raise BundleError(f"schema_version {schema!r} is not supported (this server reads {SCHEMA_VERSION})")
    name = _text(data, "name")
    if not _NAME_PATTERN.match(name):
        raise BundleError(f"name {name!r} must be 1-128 characters of letters, digits, '.', '_' or '-'")
    files = _files(data)
    task = _choice(data, "task", ("text_classification", "grid"))
    labels = _labels(data)
    recursion = _recursion(_object(data, "recursion"))
    spec = _input(_object(data, "input"), task, labels, files)
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
    return Manifest(
        name=name,
        version=_text(data, "version"),
        task=task,
        description=str(data.get("description") or ""),
        labels=labels,
        input=spec,
        recursion=recursion,
        halt_threshold=halt_threshold,
        min_steps=min_steps,
        out_of_scope=_out_of_scope(data.get("out_of_scope"), labels),
        metrics=_flat_metrics(data.get("metrics") or {}),
        onnx_fp32=onnx_fp32,
        onnx_int8=onnx_int8,
        files=files,
    )


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


def _integer(obj: dict, key: str, minimum: int = 1) -> int:
    value = _field(obj, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BundleError(f"field {key!r} must be an integer >= {minimum}, got {value!r}")
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
    for name, digest in files.items():
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or name == MANIFEST_FILE:
            raise BundleError(f"files: {name!r} is not a file name inside the bundle")
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
    return tuple(labels)


def _recursion(obj: dict) -> Recursion:
    shape = _field(obj, "recursion.state_shape")
    valid_shape = isinstance(shape, list) and len(shape) == 2
    if not valid_shape or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in shape):
        raise BundleError(f"field 'recursion.state_shape' must be two positive integers, got {shape!r}")
    return Recursion(
        n=_integer(obj, "recursion.n"),
        T=_integer(obj, "recursion.T"),
        N_sup=_integer(obj, "recursion.N_sup"),
        state_shape=(shape[0], shape[1]),
    )


def _input(obj: dict, task: str, labels: tuple[str, ...], files: dict[str, str]) -> TextInput | GridInput:
    kind = _choice(obj, "input.kind", ("text", "grid"))
    if (task == "grid") != (kind == "grid"):
        raise BundleError(f"input.kind {kind!r} does not fit task {task!r}")
    if kind == "text":
        return TextInput(
            max_tokens=_integer(obj, "input.max_tokens"),
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
    if spec.rules == "sudoku":
        box = math.isqrt(spec.rows)
        if spec.rows != spec.cols or box * box != spec.rows or len(spec.alphabet) != spec.rows:
            raise BundleError("input.rules 'sudoku' needs a square grid of side k*k and k*k alphabet symbols")
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
    label = _text(value, "out_of_scope.label")
    if label not in labels:
        raise BundleError(f"out_of_scope.label {label!r} is not one of the labels")
    threshold = _number(value, "out_of_scope.threshold")
    if not 0.0 <= threshold <= 1.0:
        raise BundleError(f"out_of_scope.threshold must be in [0, 1], got {threshold}")
    return OutOfScope(label=label, threshold=threshold)


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
