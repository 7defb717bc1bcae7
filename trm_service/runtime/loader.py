"""Loads a bundle folder into everything needed to run it: verified manifest, step session, codec."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

from trm_bundle.manifest import Bundle, BundleError, TextInput, load_bundle
from trm_service.runtime.codec import Codec
from trm_service.runtime.grid_codec import GridCodec
from trm_service.runtime.session import SessionSettings, StepSession
from trm_service.runtime.text_codec import TextCodec, load_tokenizer

_WARMUP_STEPS = 3


@dataclass(frozen=True)
class LoadOptions:
    """How bundles are loaded: ONNX Runtime settings, and whether to prefer the int8 model."""

    session: SessionSettings
    int8: bool = False


@dataclass(frozen=True)
class LoadedModel:
    """A verified bundle ready to run; `warm_step_s` is its measured single-request step time."""

    bundle: Bundle
    session: StepSession
    codec: Codec
    onnx_file: str
    warm_step_s: float


def load_model(path: Path, options: LoadOptions) -> LoadedModel:
    """Verify and load one bundle folder (blocking); raise BundleError when it cannot be served."""
    bundle = load_bundle(path)
    manifest = bundle.manifest
    onnx_file = manifest.onnx_int8 if options.int8 and manifest.onnx_int8 else manifest.onnx_fp32
    session = StepSession(bundle.file(onnx_file), manifest, options.session)
    return LoadedModel(
        bundle=bundle, session=session, codec=_codec(bundle), onnx_file=onnx_file, warm_step_s=_warm_up(session)
    )


def _codec(bundle: Bundle) -> Codec:
    """The codec for the bundle's input kind."""
    spec = bundle.manifest.input
    if isinstance(spec, TextInput):
        return TextCodec(load_tokenizer(bundle.file(spec.tokenizer)), bundle.manifest)
    return GridCodec(bundle.manifest)


def _warm_up(session: StepSession) -> float:
    """Run a few single-request steps (first-run allocations happen here) at the shortest input the
    session will see and at full length; return the fastest full-length step."""
    full = np.zeros((1, session.sequence_length), dtype=np.int64)
    fastest = float("inf")
    for length in sorted({session.input_length(full), session.sequence_length}):
        state = session.initial_state(1, session.state_rows(length))
        for _ in range(_WARMUP_STEPS):
            started = time.perf_counter()
            try:
                session.run(full[:, :length], state, state)
            except (Fail, InvalidArgument, RuntimeException) as exc:
                raise BundleError(f"model.onnx cannot run one step on {length} tokens: {exc}") from exc
            if length == session.sequence_length:
                fastest = min(fastest, time.perf_counter() - started)
    return fastest
