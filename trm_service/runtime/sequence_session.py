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

from trm_bundle.manifest import (
    ENCODE_INPUTS,
    ENCODE_OUTPUTS,
    SEQUENCE_STEP_INPUTS,
    SEQUENCE_STEP_OUTPUTS,
    BundleError,
    CharacterInput,
    Manifest,
    SequenceOutput,
)
from trm_service.runtime.session import RunHandle, SessionSettings, open_graph, run_graph

PAD_MULTIPLE = 8
"""Inputs and prefixes (with the token's own entry) are padded to a multiple of this many positions. ONNX Runtime's
CPU kernels sum the terms after a length's last whole block (of four, measured on AVX2) in another order, so a row
padded to its batch's longest would round differently than alone; zeros padded after whole blocks add nothing
(docs/BUNDLE.md, "Rows are independent"). Eight leaves a margin for wider blocks, at 0-5 % of a step."""


def padded_length(length: int) -> int:
    """`length` rounded up to a multiple of PAD_MULTIPLE."""
    return -(-length // PAD_MULTIPLE) * PAD_MULTIPLE


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


class SequenceSession:
    """Runs a sequence bundle's encode and step graphs on CPU; safe to call from one thread at a time."""

    def __init__(self, encode_path: Path, step_path: Path, manifest: Manifest, settings: SessionSettings) -> None:
        if manifest.sequence is None or not isinstance(manifest.input, CharacterInput):
            raise BundleError(f"model {manifest.name!r} is not a sequence model")
        self.spec: SequenceOutput = manifest.sequence
        self.pad_id, self.max_chars = manifest.input.pad_id, manifest.input.max_chars
        self.hidden_size = manifest.recursion.state_shape[1]
        self.output_width = len(manifest.labels)  # the symbols it writes: the width of the step's log_probs
        self.unwritable = [manifest.input.pad_id, self.spec.bos_id]  # marks no answer holds: never a next token
        # refinement steps whose entries the prefix cache keeps: step s reads those of min(s, cache_steps)
        self.cache_steps = self.spec.prefix_steps or manifest.recursion.N_sup
        self._encode = open_graph(encode_path, settings)
        self._step = open_graph(step_path, settings)
        _check_names(self._encode, ENCODE_INPUTS, ENCODE_OUTPUTS, encode_path.name)
        _check_names(self._step, SEQUENCE_STEP_INPUTS, SEQUENCE_STEP_OUTPUTS, step_path.name)

    @property
    def intra_op_threads(self) -> int:
        """ONNX Runtime's threads for one call of either graph."""
        return self._step.get_session_options().intra_op_num_threads

    def input_length(self, tokens: np.ndarray) -> int:
        """Characters of an encoded input (its ids before padding)."""
        return int(np.count_nonzero(np.asarray(tokens) != self.pad_id))

    def source_length(self, longest: int) -> int:
        """The input length a batch whose longest input has `longest` characters is padded to: whole blocks
        (`padded_length`), but never past the model's input limit (its encoder may have no more positions)."""
        return min(padded_length(longest), self.max_chars)

    def encode(self, inputs: list[np.ndarray], handle: RunHandle | None = None) -> list[SourceEncoding]:
        """The caches of some inputs (ids [S_i] each), encoded in one call padded to the longest."""
        length = self.source_length(max(len(ids) for ids in inputs))
        source = np.full((len(inputs), length), self.pad_id, dtype=np.int64)
        for row, ids in enumerate(inputs):
            source[row, : len(ids)] = ids
        keys, values, pointer_keys = run_graph(self._encode, ENCODE_OUTPUTS, {"source": source}, handle)
        return [SourceEncoding(ids, keys[row, :, :, : len(ids)], values[row, :, :, : len(ids)],
                               pointer_keys[row, : len(ids)]) for row, ids in enumerate(inputs)]

    def step(self, feed: dict[str, np.ndarray], handle: RunHandle | None = None) -> TokenStepOutputs:
        """One refinement step of a batch (the step graph's inputs, docs/BUNDLE.md), the padding and start marks'
        log-probabilities -inf: a token is chosen among the characters and the end mark, as the trainer's decoder
        chooses it (trainer/sequence/decode.py)."""
        outputs = TokenStepOutputs(*run_graph(self._step, SEQUENCE_STEP_OUTPUTS, feed, handle))
        outputs.log_probs[:, self.unwritable] = -np.inf
        return outputs


def _check_names(session: ort.InferenceSession, inputs: tuple[str, ...], outputs: tuple[str, ...], file: str) -> None:
    """Raise BundleError unless the graph has exactly the documented inputs and outputs."""
    for kind, expected, found in (("input", inputs, session.get_inputs()), ("output", outputs, session.get_outputs())):
        names = [arg.name for arg in found]
        if set(names) != set(expected):
            raise BundleError(f"{file}: {kind}s are {', '.join(names)}; docs/BUNDLE.md names {', '.join(expected)}")
