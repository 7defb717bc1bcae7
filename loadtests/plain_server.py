"""The plain ONNX Runtime server the benchmark holds the service against: what an engineer would write
in an afternoon. A synchronous grpc.server with 4 worker threads serves unary Reason for every text and
grid bundle; each request runs on its own (no batching across requests) through the bundle's int8 step
(fp32 without one) at its own token length, with one intra-op thread and sequential execution, the
manifest's halting rule and default budget, then softmax and top-k (text) or each cell's most likely
symbol (grids).

    python -m loadtests.plain_server --models-dir trm_service/models --port 0 --ready-file /tmp/plain.port
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer
from trm.v1 import trm_pb2, trm_pb2_grpc

from loadtests import baseline_main
from trm_bundle.manifest import Bundle, GridInput, TextInput, load_bundle
from trm_service.runtime import sudoku
from trm_service.runtime.grid_codec import grid_values

WORKERS = 4
DEFAULT_TOP_K = 3
HALTING_ONLY = trm_pb2.Budget(continue_when_verified=True)
"""The one budget it takes: the halting rule alone, which is what it runs anyway."""


class PlainModel:
    """One bundle: its input reader and one ONNX Runtime session of its step."""

    def __init__(self, bundle: Bundle) -> None:
        self.manifest = manifest = bundle.manifest
        self.spec = manifest.input
        self.tokenizer = (Tokenizer.from_file(str(bundle.file(self.spec.tokenizer)))
                          if isinstance(self.spec, TextInput) else None)  # fmt: skip
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        step_file = bundle.file(manifest.onnx_int8 or manifest.onnx_fp32)
        self.session = ort.InferenceSession(str(step_file), options, providers=["CPUExecutionProvider"])

    def tokens(self, request: trm_pb2.ReasonRequest) -> np.ndarray | str:
        """The request's input ids, or what is wrong with it."""
        spec = self.spec
        if isinstance(spec, GridInput):
            cells = request.grid.cells
            if request.WhichOneof("input") != "grid" or len(cells) != spec.cells:
                return f"set grid.cells to {spec.cells} symbols"
            if any(ch not in spec.alphabet and ch not in spec.blank for ch in cells):
                return f"use {spec.alphabet!r} for givens and {spec.blank!r} for blanks"
            return np.array(grid_values(cells, spec), dtype=np.int64)
        if request.WhichOneof("input") != "text" or not request.text.strip() or len(request.text) > spec.max_chars:
            return f"text must be 1-{spec.max_chars} characters"
        if request.top_k > len(self.manifest.labels):
            return f"keep top_k <= {len(self.manifest.labels)}"
        return np.asarray(self.tokenizer.encode(request.text).ids, dtype=np.int64)

    def run(self, tokens: np.ndarray) -> tuple[np.ndarray, float, int, bool]:
        """The last step's logits, halting confidence, steps run and whether the halting head stopped it."""
        rows, width = self.manifest.recursion.state_shape
        length = len(tokens)
        trim = self.spec.variable_length if isinstance(self.spec, TextInput) else None
        if trim is not None:  # drop trailing padding: a multiple of token_multiple covering every token
            used = int(np.count_nonzero(tokens != self.spec.pad_id))
            length = min(length, max(1, -(-used // trim.token_multiple)) * trim.token_multiple)
            rows = trim.rows_before_tokens + length // trim.token_multiple
        y = z = np.zeros((1, rows, width), dtype=np.float32)
        threshold = self.manifest.halt_threshold
        for step in range(1, self.manifest.recursion.N_sup + 1):
            y, z, logits, halt_logit = self.session.run(
                ["y_next", "z_next", "logits", "halt_logit"], {"tokens": tokens[None, :length], "y": y, "z": z}
            )
            halt = float(1.0 / (1.0 + np.exp(-np.float64(halt_logit.reshape(-1)[0]))))
            halted = step >= self.manifest.min_steps and threshold < 1.0 and halt >= threshold
            if halted:
                break
        return logits[0], halt, step, halted

    def answer(self, logits: np.ndarray, request: trm_pb2.ReasonRequest, tokens: np.ndarray) -> trm_pb2.Answer:
        """Softmax and top-k for text; for grids each cell's most likely symbol, its probability and the check."""
        scores = np.exp(logits.astype(np.float64) - logits.max(axis=-1, keepdims=True))
        probabilities = scores / scores.sum(axis=-1, keepdims=True)
        labels = self.manifest.labels
        if isinstance(self.spec, GridInput):
            choice = probabilities.argmax(axis=-1)
            cells = "".join(labels[i] for i in choice)
            verified = self.spec.rules == "sudoku" and sudoku.is_solution(
                tokens.tolist(), grid_values(cells, self.spec), self.spec.rows)
            return trm_pb2.Answer(grid=trm_pb2.GridAnswer(
                rows=self.spec.rows, cols=self.spec.cols, cells=cells,
                confidence=probabilities[np.arange(len(choice)), choice].astype(np.float32).tolist(),
                verified=verified,
            ))  # fmt: skip
        order = np.argsort(-probabilities, kind="stable")[: request.top_k or DEFAULT_TOP_K]
        top = [trm_pb2.LabelScore(label=labels[i], probability=float(probabilities[i])) for i in order]
        answer = trm_pb2.ClassAnswer(label=top[0].label, confidence=top[0].probability, top=top)
        out_of_scope = self.manifest.out_of_scope
        answer.out_of_scope = out_of_scope is not None and (
            answer.label == out_of_scope.label or answer.confidence < out_of_scope.threshold
        )
        return trm_pb2.Answer(classification=answer)


class PlainReasoningService(trm_pb2_grpc.ReasoningServiceServicer):
    """Unary Reason over the text and grid models; every other method is UNIMPLEMENTED."""

    def __init__(self, models_dir: Path) -> None:
        bundles = [load_bundle(path.parent) for path in sorted(models_dir.glob("*/manifest.json"))]
        self.models = {b.manifest.name: PlainModel(b) for b in bundles
                       if isinstance(b.manifest.input, TextInput | GridInput)}  # fmt: skip
        if not self.models:
            raise SystemExit(f"no text or grid bundles in {models_dir}")

    def Reason(self, request: trm_pb2.ReasonRequest, context: grpc.ServicerContext) -> trm_pb2.ReasonResponse:
        started = time.perf_counter()
        model = self.models.get(request.model)
        if model is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.model!r} is not hosted; models: "
                          f"{', '.join(sorted(self.models))}")  # fmt: skip
        tokens = model.tokens(request)
        if isinstance(tokens, str):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, tokens)
        if request.HasField("budget") and request.budget != HALTING_ONLY:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "leave budget unset (the model's default runs) or set "
                          "only continue_when_verified")  # fmt: skip
        logits, halt, steps, halted = model.run(tokens)
        return trm_pb2.ReasonResponse(
            model=model.manifest.name,
            model_version=model.manifest.version,
            answer=model.answer(logits, request, tokens),
            halt_confidence=halt,
            steps=steps,
            halt_reason=trm_pb2.HALT_REASON_HALTED if halted else trm_pb2.HALT_REASON_MAX_STEPS,
            latency_ms=(time.perf_counter() - started) * 1000.0,
        )


if __name__ == "__main__":
    baseline_main.main(None, "plain ONNX Runtime server (4 threads, no batching)", PlainReasoningService, WORKERS)
