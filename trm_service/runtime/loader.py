"""Loads a bundle folder into everything needed to run it: verified manifest, step session, codec.

Threads for heavy steps: every session runs on one intra-op thread (the scheduler batches requests
instead, and the event loop needs the other core), except for a model whose single-request step takes
HEAVY_STEP_S or more. That model gets as many lanes as the CPUs the process may use within its CPU quota
(`LoadOptions.heavy_step_threads`, from cpu_affinity.compute_cpu_count): the scheduler runs the calls of a
step of several requests side by side, each on the one-thread session (`LoadedModel.lanes`). Its steps of
one call run on a session on every CPU where that makes its warmed-up step at least a tenth faster, else on
the one-thread session: on a machine whose second CPU is busy or shares a core, the threaded step is no
faster, while lanes still keep both CPUs busy under load. On the 2-core development machine
(docs/EXPERIMENTS.md, 2026-12-01, "Sudoku against the plain server") Sudoku's 35-40 ms step answered 1.4
/ 1.4 / 1.7x the requests/s of one thread at 1 / 8 / 64 callers; intent's 0.4 ms step lost with two
threads at every concurrency (2026-12-01, "A slower machine"), its threads handing work back and forth for longer
than its small operators take.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

from trm_bundle.manifest import Bundle, BundleError, TextInput, load_bundle
from trm_service.runtime.codec import Codec
from trm_service.runtime.grid_codec import GridCodec
from trm_service.runtime.sequence_codec import SequenceCodec
from trm_service.runtime.sequence_session import SequenceSession
from trm_service.runtime.session import Lanes, SessionSettings, StepSession
from trm_service.runtime.text_codec import TextCodec, load_tokenizer

_WARMUP_STEPS = 3
_COMPARE_ROUNDS = 4
HEAVY_STEP_S = 0.010
"""A single-request step at least this long may run on several intra-op threads (see the module docstring)."""
THREADED_GAIN = 0.9
"""The several threads are kept only where the warm step takes at most this share of one thread's."""


@dataclass(frozen=True)
class LoadOptions:
    """How bundles are loaded: ONNX Runtime settings, whether to prefer the int8 model, and the intra-op
    threads a heavy step may get (1: none more than `session.intra_op_threads`)."""

    session: SessionSettings
    int8: bool = False
    heavy_step_threads: int = 1


@dataclass(frozen=True)
class LoadedModel:
    """A verified bundle ready to run; `warm_step_s` is its measured single-request step time."""

    bundle: Bundle
    session: StepSession | SequenceSession
    codec: Codec
    onnx_file: str
    warm_step_s: float
    lanes: Lanes | None = None
    """A heavy step's: the one-thread session on which the scheduler runs a step's calls side by side."""


def load_model(path: Path, options: LoadOptions) -> LoadedModel:
    """Verify and load one bundle folder (blocking); raise BundleError when it cannot be served."""
    bundle = load_bundle(path)
    manifest = bundle.manifest
    onnx_file = manifest.onnx_int8 if options.int8 and manifest.onnx_int8 else manifest.onnx_fp32
    if manifest.sequence is not None:
        sequence = SequenceSession(bundle.file(manifest.sequence.encode), bundle.file(onnx_file), manifest,
                                   options.session)
        return LoadedModel(bundle=bundle, session=sequence, codec=SequenceCodec(manifest), onnx_file=onnx_file,
                           warm_step_s=_warm_up_sequence(sequence, manifest.input.max_chars))
    session = StepSession(bundle.file(onnx_file), manifest, options.session)
    codec = _codec(bundle)
    warm_step_s, lanes = _warm_up(session), None
    if isinstance(codec, TextCodec):
        _check_token_table(session, codec.largest_id)
    if warm_step_s >= HEAVY_STEP_S and options.heavy_step_threads > options.session.intra_op_threads:
        lanes = Lanes(session, options.heavy_step_threads)
        threads = replace(options.session, intra_op_threads=options.heavy_step_threads)
        threaded = StepSession(bundle.file(onnx_file), manifest, threads)
        single_s, threaded_s = _fastest_steps((session, threaded))  # its first, slow, step counts for nothing
        if threaded_s <= THREADED_GAIN * single_s:
            session, warm_step_s = threaded, threaded_s
    return LoadedModel(bundle=bundle, session=session, codec=codec, onnx_file=onnx_file,
                       warm_step_s=warm_step_s, lanes=lanes)  # fmt: skip


def _codec(bundle: Bundle) -> Codec:
    """The codec for the bundle's input kind."""
    spec = bundle.manifest.input
    if isinstance(spec, TextInput):
        return TextCodec(load_tokenizer(bundle.file(spec.tokenizer)), bundle.manifest)
    return GridCodec(bundle.manifest)


def _warm_up(session: StepSession) -> float:
    """Run a few single-request steps (first-run allocations happen here) at the shortest input the
    session will see and at full length; return the fastest full-length step."""
    shortest = session.input_length(np.zeros(session.sequence_length, dtype=np.int64))
    for _ in range(_WARMUP_STEPS if shortest < session.sequence_length else 0):
        _step_seconds(session, shortest)
    return min(_step_seconds(session, session.sequence_length) for _ in range(_WARMUP_STEPS))


def _check_token_table(session: StepSession, largest_id: int) -> None:
    """BundleError unless the step reads the tokenizer's largest id (its token table has that row)."""
    tokens = np.zeros((1, session.sequence_length), dtype=np.int64)
    tokens[0, 0] = largest_id
    length = session.input_length(tokens[0])
    state = session.initial_state(1, session.state_rows(length))
    try:
        session.run(tokens[:, :length], state, state)
    except (Fail, InvalidArgument, RuntimeException) as exc:
        raise BundleError(f"the tokenizer writes ids up to {largest_id}, which {session.file} cannot read: "
                          f"{exc}") from exc


def _fastest_steps(sessions: tuple[StepSession, ...]) -> list[float]:
    """Each session's fastest full-length single-request step over rounds that take the sessions in turn,
    so that the machine's other work weighs on all of them alike."""
    fastest = [float("inf")] * len(sessions)
    for _ in range(_COMPARE_ROUNDS):
        for index, session in enumerate(sessions):
            fastest[index] = min(fastest[index], _step_seconds(session, session.sequence_length))
    return fastest


def _step_seconds(session: StepSession, length: int) -> float:
    """The wall time of one single-request step on `length` tokens; BundleError where the step cannot run or
    answers in another shape than the manifest's labels (a graph's label axis may be symbolic)."""
    try:
        tokens = np.zeros((1, length), dtype=np.int64)
        state = session.initial_state(1, session.state_rows(length))
        started = time.perf_counter()
        outputs = session.run(tokens, state, state)
        seconds = time.perf_counter() - started
    except (Fail, InvalidArgument, RuntimeException) as exc:
        raise BundleError(f"{session.file} cannot run one step on {length} tokens: {exc}") from exc
    except MemoryError as exc:
        raise BundleError(f"one step of {session.file} on {length} tokens needs more memory than there is: "
                          f"{exc}") from exc
    if outputs.logits.shape[1:] != session.logits_shape:
        raise BundleError(f"{session.file} answers logits of shape {list(outputs.logits.shape[1:])} per input, where "
                          f"the manifest's labels imply {list(session.logits_shape)}")
    return seconds


def _warm_up_sequence(session: SequenceSession, max_chars: int) -> float:
    """Encode a short input (8 characters, or the model's limit if it reads fewer) and run refinement steps on
    it with an empty and a full prefix cache (first-run allocations happen here); return the fastest
    single-request step."""
    spec = session.spec
    try:
        source = session.encode([np.full(min(8, max_chars), spec.eos_id + 1, dtype=np.int64)])[0]
    except (Fail, InvalidArgument, RuntimeException, MemoryError) as exc:
        raise BundleError(f"the input graph cannot encode an input of {min(8, max_chars)} characters: {exc}") from exc
    fastest = float("inf")
    for prefix_len in (0, spec.max_tokens - 1):
        entries = (1, spec.slots, spec.heads, prefix_len, spec.head_dim)
        for _ in range(_WARMUP_STEPS):
            try:
                state = np.zeros((1, session.hidden_size), np.float32)
                feed = {"source": source.ids[None], "source_keys": source.keys[None],
                        "source_values": source.values[None], "pointer_keys": source.pointer_keys[None],
                        "previous": np.array([spec.bos_id], np.int64), "position": np.array([prefix_len], np.int64),
                        "y": state, "z": state, "prefix_keys": np.zeros(entries, np.float32),
                        "prefix_values": np.zeros(entries, np.float32), "prefix_mask": np.ones((1, prefix_len), bool)}
                started = time.perf_counter()
                outputs = session.step(feed)
            except (Fail, InvalidArgument, RuntimeException, MemoryError) as exc:
                raise BundleError(f"the step graph cannot run one refinement step: {exc}") from exc
            fastest = min(fastest, time.perf_counter() - started)
            if outputs.log_probs.shape[-1] != session.output_width:
                raise BundleError(f"the step graph answers {outputs.log_probs.shape[-1]} log-probabilities per token, "
                                  f"where the manifest has {session.output_width} labels")
    return fastest
