"""A minimal gRPC server for the naive baseline: trm.v1 Reason and ReasonStream over NaiveModel,
one request at a time (a single worker thread), no batching.

    python -m loadtests.naive_server --models-dir trm_service/models --port 0 --ready-file /tmp/naive.port
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
from trm.v1 import trm_pb2, trm_pb2_grpc

from loadtests import baseline_main
from loadtests.naive_model import NaiveModel
from trm_bundle.manifest import load_bundle

HALT_REASON = {True: trm_pb2.HALT_REASON_HALTED, False: trm_pb2.HALT_REASON_MAX_STEPS}


class NaiveReasoningService(trm_pb2_grpc.ReasoningServiceServicer):
    """Reason and ReasonStream straight over the PyTorch models; other methods are UNIMPLEMENTED."""

    def __init__(self, models: dict[str, NaiveModel]) -> None:
        self.models = models

    def _model(self, request: trm_pb2.ReasonRequest, context: grpc.ServicerContext) -> NaiveModel:
        model = self.models.get(request.model)
        if model is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.model!r} is not hosted")
        return model

    def Reason(self, request: trm_pb2.ReasonRequest, context: grpc.ServicerContext) -> trm_pb2.ReasonResponse:
        started = time.perf_counter()
        model = self._model(request, context)
        *_, last = model.steps(request)
        return trm_pb2.ReasonResponse(
            model=model.name,
            model_version=model.version,
            answer=last.answer,
            halt_confidence=last.halt_confidence,
            steps=last.step,
            halt_reason=HALT_REASON[last.halted],
            latency_ms=(time.perf_counter() - started) * 1000.0,
            request_id=uuid.uuid4().hex,
        )

    def ReasonStream(
        self, request: trm_pb2.ReasonRequest, context: grpc.ServicerContext
    ) -> Iterator[trm_pb2.ReasonStep]:
        started = time.perf_counter()
        model = self._model(request, context)
        request_id = uuid.uuid4().hex
        for step in model.steps(request):
            yield trm_pb2.ReasonStep(
                step=step.step,
                answer=step.answer,
                halt_confidence=step.halt_confidence,
                elapsed_ms=(time.perf_counter() - started) * 1000.0,
                final=step.final,
                halt_reason=HALT_REASON[step.halted] if step.final else trm_pb2.HALT_REASON_UNSPECIFIED,
                request_id=request_id,
                model_version=model.version,
            )


def load_models(models_dir: Path) -> dict[str, NaiveModel]:
    """Every bundle folder (one holding manifest.json) directly under `models_dir`, by model name; sequence
    bundles are left out (their own benchmark, loadtests.sequence_bench, compares them with recomputation)."""
    folders = [path.parent for path in sorted(models_dir.glob("*/manifest.json"))]
    models = [NaiveModel(folder) for folder in folders if load_bundle(folder).manifest.task != "sequence"]
    if not models:
        raise SystemExit(f"no bundles in {models_dir}")
    return {model.name: model for model in models}


def naive_service(models_dir: Path) -> NaiveReasoningService:
    """The naive servicer over every bundle under `models_dir`."""
    return NaiveReasoningService(load_models(models_dir))


if __name__ == "__main__":
    baseline_main.main(None, "naive PyTorch baseline server (one request at a time)", naive_service, workers=1)
