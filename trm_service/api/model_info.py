"""ModelInfo messages: what a hosted model is, its limits and default budget."""

from __future__ import annotations

from trm.v1 import trm_pb2

from trm_bundle.manifest import CharacterInput, GridInput
from trm_service.registry import HostedModel

_TASKS = {"text_classification": trm_pb2.TASK_TYPE_TEXT_CLASSIFICATION, "grid": trm_pb2.TASK_TYPE_GRID,
          "sequence": trm_pb2.TASK_TYPE_SEQUENCE}


def model_info(model: HostedModel, versions: list[str], max_time_budget_ms: int) -> trm_pb2.ModelInfo:
    """Describe one hosted version; `versions` lists every loaded version of its name, newest first."""
    manifest = model.manifest
    spec = manifest.input
    limits = trm_pb2.InputLimits(max_steps=manifest.recursion.N_sup, max_time_budget_ms=max_time_budget_ms)
    if isinstance(spec, GridInput):
        limits.grid_rows, limits.grid_cols, limits.grid_blank = spec.rows, spec.cols, spec.blank
        labels = list(spec.alphabet)
    elif isinstance(spec, CharacterInput):
        limits.max_text_chars, limits.max_output_tokens = spec.max_chars, manifest.sequence.max_tokens
        labels = list(manifest.labels)
    else:
        limits.max_text_chars, limits.max_tokens = spec.max_chars, spec.max_tokens
        labels = list(manifest.labels)
    return trm_pb2.ModelInfo(
        name=manifest.name,
        version=manifest.version,
        task=_TASKS[manifest.task],
        description=manifest.description,
        labels=labels,
        limits=limits,
        default_budget=trm_pb2.Budget(
            max_steps=manifest.recursion.N_sup,
            min_steps=manifest.min_steps,
            halt_threshold=manifest.halt_threshold,
        ),
        metrics=manifest.metrics,
        out_of_scope_threshold=manifest.out_of_scope.threshold if manifest.out_of_scope else 0.0,
        versions=versions,
        served_step="int8" if model.loaded.onnx_file == manifest.onnx_int8 else "fp32",
        unsure_below=manifest.sequence.unsure_below if manifest.sequence else 0.0,
        checks=manifest.sequence.checks if manifest.sequence else (),
    )
