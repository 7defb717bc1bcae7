"""Benchmark: ONNX Runtime's time per request of one supervision step, by batch size.

What step-level batching can save on this machine: each shipped text model's served step (int8 where
shipped, one intra-op thread, as the server runs it) on real test inputs, `--seconds` per batch size,
at the batch's longest input as the server trims it. A benchmark, not a test.

    python -m loadtests.step_cost
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from loadtests.inputs import DEFAULT_MODELS, data_dir, load_inputs
from trm_service.config import DEFAULT_MODELS_DIR
from trm_service.runtime.loader import LoadOptions, load_model
from trm_service.runtime.session import SessionSettings, StepSession
from trm_service.runtime.text_codec import TextCodec

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="per model and batch size")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    text_models = [m for m, (kind, _) in DEFAULT_MODELS.items() if kind == "text"]
    inputs = load_inputs(data_dir(args.data_dir), text_models)
    print("| model | batch | ms per step | µs per request | per request vs batch 1 |")
    print("|---|---:|---:|---:|---:|")
    for name in text_models:
        session, codec = served_model(DEFAULT_MODELS_DIR / name)
        rng = np.random.default_rng(0)
        single = None
        for batch in BATCH_SIZES:
            step_s = step_seconds(session, codec, inputs[name].samples, batch, args.seconds, rng)
            single = single or step_s
            print(f"| {name} | {batch} | {step_s * 1e3:.2f} | {step_s / batch * 1e6:.0f} | "
                  f"{step_s / batch / single:.2f} |", flush=True)


def served_model(bundle: Path) -> tuple[StepSession, TextCodec]:
    """A text bundle's step session and codec, loaded as the server runs them: int8 where shipped, one
    intra-op thread."""
    model = load_model(bundle, LoadOptions(SessionSettings(intra_op_threads=1), int8=True))
    if not isinstance(model.codec, TextCodec):
        raise ValueError(f"{bundle} is not a text model")
    return model.session, model.codec


def step_seconds(session: StepSession, codec: TextCodec, samples: Sequence[str], batch: int, seconds: float,
                 rng: np.random.Generator) -> float:
    """Mean wall time of one step for `batch` random samples, at the batch's longest input as the server
    trims it, run back to back for `seconds`."""
    tokens = [codec.tokenize(samples[i]) for i in rng.choice(len(samples), batch)]
    length = max(session.input_length(t) for t in tokens)
    stacked = np.stack([t[:length] for t in tokens])
    y = session.initial_state(batch, session.state_rows(length))
    z = np.zeros_like(y)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(stacked, y, z)
        runs += 1
    return (time.perf_counter() - started) / runs


if __name__ == "__main__":
    main()
