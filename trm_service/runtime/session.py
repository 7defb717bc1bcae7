"""The ONNX Runtime session that runs one supervision step of a bundle's model.

Session options are tuned for tiny models on shared CPU cores (measured with
`python -m trm_service.runtime.measure_options`, figures in docs/ARCHITECTURE.md): one
intra-op thread per session (the scheduler batches requests instead, and models run in
parallel on their own threads), sequential execution, all graph optimisations, no spinning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf, NoSuchFile

from trm_bundle.manifest import STEP_OUTPUTS, BundleError, GridInput, Manifest, TextInput

_GRAPH_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class SessionSettings:
    """ONNX Runtime knobs; the defaults are the measured best for this service."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization: str = "all"
    parallel_execution: bool = False
    allow_spinning: bool = False


class StepStopped(Exception):
    """A step run ended early because its RunHandle was stopped."""


class RunHandle:
    """Lets another thread stop one `StepSession.run` call: ONNX Runtime's RunOptions.terminate, which
    the run checks between graph nodes (and before it starts)."""

    def __init__(self) -> None:
        self.options = ort.RunOptions()

    def stop(self) -> None:
        """Make the run end at its next node with StepStopped (safe from any thread)."""
        self.options.terminate = True

    @property
    def stopped(self) -> bool:
        return bool(self.options.terminate)


@dataclass(frozen=True)
class StepOutputs:
    """One step for a batch: new states, answer logits and halting logits."""

    y_next: np.ndarray
    z_next: np.ndarray
    logits: np.ndarray
    halt_logit: np.ndarray


def session_options(settings: SessionSettings) -> ort.SessionOptions:
    """Build ONNX Runtime SessionOptions from `settings`."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.graph_optimization_level = _GRAPH_LEVELS[settings.graph_optimization]
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if settings.parallel_execution else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    spinning = "1" if settings.allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    options.log_severity_level = 3
    return options


_NO_FOLDER = "/dev/null"  # a file: no path beneath it exists


def open_graph(path: Path, settings: SessionSettings) -> ort.InferenceSession:
    """An ONNX Runtime session of one bundle graph on CPU; BundleError when it cannot be loaded. A graph whose
    weights lie in another file (ONNX external data, which no checksum covers) is refused: it is given as bytes,
    and ONNX Runtime told to look for such files in a folder that cannot exist, not in the working directory."""
    options = session_options(settings)
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", _NO_FOLDER)
    try:
        return ort.InferenceSession(path.read_bytes(), sess_options=options, providers=["CPUExecutionProvider"])
    except (Fail, InvalidGraph, InvalidProtobuf, NoSuchFile, RuntimeError) as exc:
        if "External data" in str(exc):
            raise BundleError(f"{path}: its weights lie in another file (ONNX external data), which a bundle may "
                              "not use: save the graph with its weights inside it") from exc
        raise BundleError(f"{path}: ONNX Runtime cannot load the model: {exc}") from exc


def run_graph(session: ort.InferenceSession, outputs: tuple[str, ...], feed: dict[str, np.ndarray],
              handle: RunHandle | None) -> list[np.ndarray]:
    """`outputs` of one run; StepStopped when `handle` was stopped before the run ended."""
    try:
        return session.run(list(outputs), feed, None if handle is None else handle.options)
    except Fail:
        if handle is not None and handle.stopped:
            raise StepStopped from None
        raise


class StepSession:
    """Runs `model.onnx` (one supervision step) on CPU; calls from several threads run side by side (ONNX
    Runtime's `run` is thread-safe)."""

    def __init__(self, model_path: Path, manifest: Manifest, settings: SessionSettings) -> None:
        self._session = open_graph(model_path, settings)
        check_signature(self._session, manifest, model_path.name)
        self.file = model_path.name
        self.logits_shape = expected_logits_shape(manifest)  # the graph's may be symbolic: the warm-up checks it
        self.state_shape = manifest.recursion.state_shape
        self.sequence_length = sequence_length(manifest)
        spec = manifest.input
        self._trim = spec.variable_length if isinstance(spec, TextInput) else None
        self._pad_id = spec.pad_id if isinstance(spec, TextInput) else 0

    @property
    def intra_op_threads(self) -> int:
        """ONNX Runtime's threads for one call of this session."""
        return self._session.get_session_options().intra_op_num_threads

    def input_length(self, tokens: np.ndarray) -> int:
        """Tokens of this input the step needs: its non-padding prefix rounded up to the model's
        token multiple for variable-length bundles, else the full sequence length."""
        if self._trim is None:
            return self.sequence_length
        return self._trim.trimmed_length(tokens, self._pad_id)

    def initial_state(self, batch: int, rows: int | None = None) -> np.ndarray:
        """Zero answer/latent state for `batch` inputs (the first step starts from y = z = 0);
        `rows` defaults to the full state."""
        return np.zeros((batch, rows or self.state_shape[0], self.state_shape[1]), dtype=np.float32)

    def state_rows(self, length: int) -> int:
        """Rows of y and z for inputs of `length` tokens (see `input_length`)."""
        if self._trim is None:
            return self.state_shape[0]
        return self._trim.state_rows(length)

    def run(self, tokens: np.ndarray, y: np.ndarray, z: np.ndarray, handle: RunHandle | None = None) -> StepOutputs:
        """One supervision step for a batch: tokens [b, length] int64, y and z [b, state_rows(length), d].
        Raises StepStopped if `handle` is stopped before the run ends."""
        y_next, z_next, logits, halt_logit = run_graph(self._session, STEP_OUTPUTS, {"tokens": tokens, "y": y, "z": z},
                                                       handle)
        return StepOutputs(y_next=y_next, z_next=z_next, logits=logits, halt_logit=halt_logit.reshape(-1))


def sequence_length(manifest: Manifest) -> int:
    """Length of the `tokens` input: max_tokens for text, one id per cell for grids."""
    spec = manifest.input
    return spec.cells if isinstance(spec, GridInput) else spec.max_tokens


def expected_logits_shape(manifest: Manifest) -> tuple[int, ...]:
    """Logits shape without the batch axis, per docs/BUNDLE.md."""
    spec = manifest.input
    if isinstance(spec, GridInput):
        return (spec.cells, len(manifest.labels))
    return (len(manifest.labels),)


def check_signature(session: ort.InferenceSession, manifest: Manifest, file: str) -> None:
    """Raise BundleError unless the inputs and outputs of the graph (the bundle's `file`) match the manifest."""
    state = manifest.recursion.state_shape
    expected_inputs = {
        "tokens": ("tensor(int64)", (sequence_length(manifest),)),
        "y": ("tensor(float)", state),
        "z": ("tensor(float)", state),
    }
    expected_outputs = {
        "y_next": ("tensor(float)", state),
        "z_next": ("tensor(float)", state),
        "logits": ("tensor(float)", expected_logits_shape(manifest)),
        "halt_logit": ("tensor(float)", ()),
    }
    _check_args(file, "input", session.get_inputs(), expected_inputs)
    _check_args(file, "output", session.get_outputs(), expected_outputs)
    extra = [arg.name for arg in session.get_inputs() if arg.name not in expected_inputs]
    if extra:  # the server feeds tokens, y and z only: every step would fail; extra outputs are not asked for
        raise BundleError(f"{file} has inputs the server does not feed: {', '.join(extra)} "
                          f"(docs/BUNDLE.md names {', '.join(expected_inputs)})")
    if isinstance(manifest.input, TextInput) and manifest.input.variable_length is not None:
        fixed = [arg.name for arg in session.get_inputs() if isinstance(arg.shape[1], int)]
        if fixed:
            raise BundleError(
                f"input.variable_length is set but {file} has a fixed axis 1 for {', '.join(fixed)} "
                "(re-export the bundle, or set input.variable_length to null)"
            )


def _check_args(file: str, kind: str, args: list, expected: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    found = {arg.name: arg for arg in args}
    missing = sorted(set(expected) - set(found))
    if missing:
        raise BundleError(f"{file} has no {kind} named {', '.join(missing)} (found {', '.join(found)})")
    for name, (dtype, dims) in expected.items():
        arg = found[name]
        if arg.type != dtype:
            raise BundleError(f"{file} {kind} {name!r} is {arg.type}, expected {dtype}")
        fixed = [d if isinstance(d, int) else None for d in arg.shape[1:]]
        if name == "halt_logit" and fixed in ([], [1]):
            continue
        if len(fixed) != len(dims) or any(f is not None and f != d for f, d in zip(fixed, dims, strict=True)):
            raise BundleError(
                f"{file} {kind} {name!r} has shape {arg.shape}, the manifest implies [batch, "
                f"{', '.join(map(str, dims))}]"
            )


@dataclass(frozen=True)
class Lanes:
    """A heavy model's calls of one step run side by side: `count` threads, each calling `session`, a session
    on one intra-op thread (scheduler/model_scheduler.py)."""

    session: StepSession
    count: int
