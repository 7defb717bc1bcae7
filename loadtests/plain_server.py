"""The plain ONNX Runtime server the benchmark holds the service against: what an engineer would write
in an afternoon. A synchronous grpc.server with 4 worker threads serves unary Reason for the text
bundles; each request runs on its own (no batching across requests) through the bundle's int8 step
(fp32 without one) at its own token length, with one intra-op thread and sequential execution, the
manifest's halting rule and default budget, softmax and top-k.

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
from trm_bundle.manifest import Bundle, TextInput, load_bundle

WORKERS = 4
DEFAULT_TOP_K = 3


class PlainModel:
    """One text bundle: its tokenizer and one ONNX Runtime session of its step."""

    def __init__(self, bundle: Bundle) -> None:
        self.manifest = manifest = bundle.manifest
        assert isinstance(manifest.input, TextInput)
        self.spec = manifest.input
        self.tokenizer = Tokenizer.from_file(str(bundle.file(self.spec.tokenizer)))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        step_file = bundle.file(manifest.onnx_int8 or manifest.onnx_fp32)
        self.session = ort.InferenceSession(str(step_file), options, providers=["CPUExecutionProvider"])

    def run(self, text: str) -> tuple[np.ndarray, float, int, bool]:
        """Label probabilities, halting confidence, steps run and whether the halting head stopped it."""
        tokens = np.asarray(self.tokenizer.encode(text).ids, dtype=np.int64)
        rows, width = self.manifest.recursion.state_shape
        length, trim = len(tokens), self.spec.variable_length
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
        scores = np.exp(logits[0].astype(np.float64) - logits[0].max())
        return scores / scores.sum(), halt, step, halted


class PlainReasoningService(trm_pb2_grpc.ReasoningServiceServicer):
    """Unary Reason over the text models; every other method is UNIMPLEMENTED."""

    def __init__(self, models_dir: Path) -> None:
        bundles = [load_bundle(path.parent) for path in sorted(models_dir.glob("*/manifest.json"))]
        self.models = {b.manifest.name: PlainModel(b) for b in bundles if isinstance(b.manifest.input, TextInput)}
        if not self.models:
            raise SystemExit(f"no text bundles in {models_dir}")

    def Reason(self, request: trm_pb2.ReasonRequest, context: grpc.ServicerContext) -> trm_pb2.ReasonResponse:
        started = time.perf_counter()
        model = self.models.get(request.model)
        if model is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.model!r} is not hosted; text models: "
                          f"{', '.join(sorted(self.models))}")  # fmt: skip
        labels, out_of_scope = model.manifest.labels, model.manifest.out_of_scope
        if not request.text.strip() or len(request.text) > model.spec.max_chars:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"text must be 1-{model.spec.max_chars} characters")
        if request.HasField("budget") or request.top_k > len(labels):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"leave budget unset (the model's default runs) and keep top_k <= {len(labels)}")  # fmt: skip
        probabilities, halt, steps, halted = model.run(request.text)
        order = np.argsort(-probabilities, kind="stable")[: request.top_k or DEFAULT_TOP_K]
        top = [trm_pb2.LabelScore(label=labels[i], probability=float(probabilities[i])) for i in order]
        answer = trm_pb2.ClassAnswer(label=top[0].label, confidence=top[0].probability, top=top)
        answer.out_of_scope = out_of_scope is not None and (
            answer.label == out_of_scope.label or answer.confidence < out_of_scope.threshold
        )
        return trm_pb2.ReasonResponse(
            model=model.manifest.name,
            model_version=model.manifest.version,
            answer=trm_pb2.Answer(classification=answer),
            halt_confidence=halt,
            steps=steps,
            halt_reason=trm_pb2.HALT_REASON_HALTED if halted else trm_pb2.HALT_REASON_MAX_STEPS,
            latency_ms=(time.perf_counter() - started) * 1000.0,
        )


if __name__ == "__main__":
    baseline_main.main(None, "plain ONNX Runtime server (4 threads, no batching)", PlainReasoningService, WORKERS)
