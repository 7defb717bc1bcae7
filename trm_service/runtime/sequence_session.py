"""The ONNX Runtime sessions of a sequence bundle: encoding an input, and one refinement step of tokens.

A sequence bundle (docs/BUNDLE.md, task "sequence") has two graphs; the server owns both loops (tokens,
and refinement steps within a token), the scheduler batches the steps of many requests whose answers
are at different tokens (`trm_service/scheduler/sequence_scheduler.py`). Session options are those of
`runtime/session.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf, NoSuchFile

from trm_bundle.manifest import BundleError, CharacterInput, Manifest, SequenceOutput
from trm_service.runtime.session import RunHandle, SessionSettings, StepStopped, session_options

ENCODE_OUTPUTS = ("source_keys", "source_values", "pointer_keys")
STEP_OUTPUTS = ("y_next", "z_next", "log_probs", "halt_logit", "step_keys", "step_values")


@dataclass(frozen=True)
class SourceEncoding:
    """One input's cache: its ids [S], keys and values [layers, heads, S, head_dim], pointer keys [S, d]."""

    ids: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    pointer_keys: np.ndarray


@dataclass(frozen=True)
class TokenStepOutputs:
    """One refinement step for a batch: new states [b, d], log-probabilities [b, V], halting logits [b],
    and each row's entries for this step [b, slots, heads, head_dim]."""

    y_next: np.ndarray
    z_next: np.ndarray
    log_probs: np.ndarray
    halt_logit: np.ndarray
    step_keys: np.ndarray
    step_values: np.ndarray


def _open(path: Path, settings: SessionSettings) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), sess_options=session_options(settings),
                                    providers=["CPUExecutionProvider"])
    except (Fail, InvalidGraph, InvalidProtobuf, NoSuchFile, RuntimeError) as exc:
        raise BundleError(f"{path}: ONNX Runtime cannot load the model: {exc}") from exc


class SequenceSession:
    """Runs a sequence bundle's encode and step graphs on CPU; safe to call from one thread at a time."""

    def __init__(self, encode_path: Path, step_path: Path, manifest: Manifest, settings: SessionSettings) -> None:
        if manifest.sequence is None or not isinstance(manifest.input, CharacterInput):
            raise BundleError(f"model {manifest.name!r} is not a sequence model")
        self.spec: SequenceOutput = manifest.sequence
        self.pad_id = manifest.input.pad_id
        self.hidden_size = manifest.recursion.state_shape[1]
        self.n_sup = manifest.recursion.N_sup
        self._encode = _open(encode_path, settings)
        self._step = _open(step_path, settings)
        _check_names(self._encode, ("source",), ENCODE_OUTPUTS, encode_path.name)
        _check_names(self._step, ("source", *ENCODE_OUTPUTS, "previous", "position", "y", "z", "prefix_keys",
                                  "prefix_values", "prefix_mask"), STEP_OUTPUTS, step_path.name)

    def input_length(self, tokens: np.ndarray) -> int:
        """Characters of an encoded input (its ids before padding)."""
        return int(np.count_nonzero(np.asarray(tokens) != self.pad_id))

    def encode(self, inputs: list[np.ndarray], handle: RunHandle | None = None) -> list[SourceEncoding]:
        """The caches of some inputs (ids [S_i] each), encoded in one call padded to the longest."""
        length = max(len(ids) for ids in inputs)
        source = np.full((len(inputs), length), self.pad_id, dtype=np.int64)
        for row, ids in enumerate(inputs):
            source[row, : len(ids)] = ids
        keys, values, pointer_keys = self._run(self._encode, ENCODE_OUTPUTS, {"source": source}, handle)
        return [SourceEncoding(ids, keys[row, :, :, : len(ids)], values[row, :, :, : len(ids)],
                               pointer_keys[row, : len(ids)]) for row, ids in enumerate(inputs)]

    def step(self, feed: dict[str, np.ndarray], handle: RunHandle | None = None) -> TokenStepOutputs:
        """One refinement step of a batch (the step graph's inputs, docs/BUNDLE.md)."""
        outputs = self._run(self._step, STEP_OUTPUTS, feed, handle)
        return TokenStepOutputs(*outputs)

    @staticmethod
    def _run(session: ort.InferenceSession, names: tuple[str, ...], feed: dict[str, np.ndarray],
             handle: RunHandle | None) -> list[np.ndarray]:
        try:
            return session.run(list(names), feed, None if handle is None else handle.options)
        except Fail:
            if handle is not None and handle.stopped:
                raise StepStopped from None
            raise


def _check_names(session: ort.InferenceSession, inputs: tuple[str, ...], outputs: tuple[str, ...], file: str) -> None:
    """Raise BundleError unless the graph has exactly the documented inputs and outputs."""
    for kind, expected, found in (("input", inputs, session.get_inputs()), ("output", outputs, session.get_outputs())):
        names = [arg.name for arg in found]
        if set(names) != set(expected):
            raise BundleError(f"{file}: {kind}s are {', '.join(names)}; docs/BUNDLE.md names {', '.join(expected)}")
