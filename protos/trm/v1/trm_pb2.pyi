from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_TYPE_UNSPECIFIED: _ClassVar[TaskType]
    TASK_TYPE_TEXT_CLASSIFICATION: _ClassVar[TaskType]
    TASK_TYPE_GRID: _ClassVar[TaskType]
    TASK_TYPE_SEQUENCE: _ClassVar[TaskType]

class HaltReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HALT_REASON_UNSPECIFIED: _ClassVar[HaltReason]
    HALT_REASON_HALTED: _ClassVar[HaltReason]
    HALT_REASON_MAX_STEPS: _ClassVar[HaltReason]
    HALT_REASON_BUDGET: _ClassVar[HaltReason]
    HALT_REASON_DEADLINE: _ClassVar[HaltReason]
    HALT_REASON_SHUTDOWN: _ClassVar[HaltReason]
    HALT_REASON_VERIFIED: _ClassVar[HaltReason]
    HALT_REASON_LOAD: _ClassVar[HaltReason]
TASK_TYPE_UNSPECIFIED: TaskType
TASK_TYPE_TEXT_CLASSIFICATION: TaskType
TASK_TYPE_GRID: TaskType
TASK_TYPE_SEQUENCE: TaskType
HALT_REASON_UNSPECIFIED: HaltReason
HALT_REASON_HALTED: HaltReason
HALT_REASON_MAX_STEPS: HaltReason
HALT_REASON_BUDGET: HaltReason
HALT_REASON_DEADLINE: HaltReason
HALT_REASON_SHUTDOWN: HaltReason
HALT_REASON_VERIFIED: HaltReason
HALT_REASON_LOAD: HaltReason

class Budget(_message.Message):
    __slots__ = ("max_steps", "min_steps", "halt_threshold", "time_budget_ms", "continue_when_verified")
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    MIN_STEPS_FIELD_NUMBER: _ClassVar[int]
    HALT_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TIME_BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_WHEN_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    max_steps: int
    min_steps: int
    halt_threshold: float
    time_budget_ms: int
    continue_when_verified: bool
    def __init__(self, max_steps: _Optional[int] = ..., min_steps: _Optional[int] = ..., halt_threshold: _Optional[float] = ..., time_budget_ms: _Optional[int] = ..., continue_when_verified: _Optional[bool] = ...) -> None: ...

class Grid(_message.Message):
    __slots__ = ("cells",)
    CELLS_FIELD_NUMBER: _ClassVar[int]
    cells: str
    def __init__(self, cells: _Optional[str] = ...) -> None: ...

class ReasonRequest(_message.Message):
    __slots__ = ("model", "version", "text", "grid", "budget", "top_k")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    GRID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    text: str
    grid: Grid
    budget: Budget
    top_k: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., text: _Optional[str] = ..., grid: _Optional[_Union[Grid, _Mapping]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., top_k: _Optional[int] = ...) -> None: ...

class LabelScore(_message.Message):
    __slots__ = ("label", "probability")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    label: str
    probability: float
    def __init__(self, label: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class ClassAnswer(_message.Message):
    __slots__ = ("label", "confidence", "top", "out_of_scope")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_SCOPE_FIELD_NUMBER: _ClassVar[int]
    label: str
    confidence: float
    top: _containers.RepeatedCompositeFieldContainer[LabelScore]
    out_of_scope: bool
    def __init__(self, label: _Optional[str] = ..., confidence: _Optional[float] = ..., top: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ..., out_of_scope: _Optional[bool] = ...) -> None: ...

class TextAnswer(_message.Message):
    __slots__ = ("text", "token_index", "token_step", "candidates", "token_emitted", "tokens", "mean_steps_per_token", "confidence", "unsure", "numbers_disagree")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_INDEX_FIELD_NUMBER: _ClassVar[int]
    TOKEN_STEP_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_EMITTED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    MEAN_STEPS_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    UNSURE_FIELD_NUMBER: _ClassVar[int]
    NUMBERS_DISAGREE_FIELD_NUMBER: _ClassVar[int]
    text: str
    token_index: int
    token_step: int
    candidates: _containers.RepeatedCompositeFieldContainer[LabelScore]
    token_emitted: bool
    tokens: int
    mean_steps_per_token: float
    confidence: float
    unsure: bool
    numbers_disagree: bool
    def __init__(self, text: _Optional[str] = ..., token_index: _Optional[int] = ..., token_step: _Optional[int] = ..., candidates: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ..., token_emitted: _Optional[bool] = ..., tokens: _Optional[int] = ..., mean_steps_per_token: _Optional[float] = ..., confidence: _Optional[float] = ..., unsure: _Optional[bool] = ..., numbers_disagree: _Optional[bool] = ...) -> None: ...

class GridAnswer(_message.Message):
    __slots__ = ("rows", "cols", "cells", "confidence", "verified")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    cells: str
    confidence: _containers.RepeatedScalarFieldContainer[float]
    verified: bool
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ..., cells: _Optional[str] = ..., confidence: _Optional[_Iterable[float]] = ..., verified: _Optional[bool] = ...) -> None: ...

class Answer(_message.Message):
    __slots__ = ("classification", "grid", "text")
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    GRID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    classification: ClassAnswer
    grid: GridAnswer
    text: TextAnswer
    def __init__(self, classification: _Optional[_Union[ClassAnswer, _Mapping]] = ..., grid: _Optional[_Union[GridAnswer, _Mapping]] = ..., text: _Optional[_Union[TextAnswer, _Mapping]] = ...) -> None: ...

class ReasonStep(_message.Message):
    __slots__ = ("step", "answer", "halt_confidence", "change", "elapsed_ms", "final", "halt_reason", "request_id", "model_version")
    STEP_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    HALT_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    HALT_REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    step: int
    answer: Answer
    halt_confidence: float
    change: float
    elapsed_ms: float
    final: bool
    halt_reason: HaltReason
    request_id: str
    model_version: str
    def __init__(self, step: _Optional[int] = ..., answer: _Optional[_Union[Answer, _Mapping]] = ..., halt_confidence: _Optional[float] = ..., change: _Optional[float] = ..., elapsed_ms: _Optional[float] = ..., final: _Optional[bool] = ..., halt_reason: _Optional[_Union[HaltReason, str]] = ..., request_id: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class ReasonResponse(_message.Message):
    __slots__ = ("model", "model_version", "answer", "halt_confidence", "steps", "halt_reason", "latency_ms", "request_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    HALT_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    HALT_REASON_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    answer: Answer
    halt_confidence: float
    steps: int
    halt_reason: HaltReason
    latency_ms: float
    request_id: str
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., answer: _Optional[_Union[Answer, _Mapping]] = ..., halt_confidence: _Optional[float] = ..., steps: _Optional[int] = ..., halt_reason: _Optional[_Union[HaltReason, str]] = ..., latency_ms: _Optional[float] = ..., request_id: _Optional[str] = ...) -> None: ...

class ReasonBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[ReasonRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[ReasonRequest, _Mapping]]] = ...) -> None: ...

class RequestFailure(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ReasonBatchResult(_message.Message):
    __slots__ = ("response", "failure")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    response: ReasonResponse
    failure: RequestFailure
    def __init__(self, response: _Optional[_Union[ReasonResponse, _Mapping]] = ..., failure: _Optional[_Union[RequestFailure, _Mapping]] = ...) -> None: ...

class ReasonBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ReasonBatchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ReasonBatchResult, _Mapping]]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class InputLimits(_message.Message):
    __slots__ = ("max_text_chars", "max_tokens", "grid_rows", "grid_cols", "max_steps", "max_time_budget_ms", "max_output_tokens", "grid_blank")
    MAX_TEXT_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GRID_ROWS_FIELD_NUMBER: _ClassVar[int]
    GRID_COLS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_TIME_BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GRID_BLANK_FIELD_NUMBER: _ClassVar[int]
    max_text_chars: int
    max_tokens: int
    grid_rows: int
    grid_cols: int
    max_steps: int
    max_time_budget_ms: int
    max_output_tokens: int
    grid_blank: str
    def __init__(self, max_text_chars: _Optional[int] = ..., max_tokens: _Optional[int] = ..., grid_rows: _Optional[int] = ..., grid_cols: _Optional[int] = ..., max_steps: _Optional[int] = ..., max_time_budget_ms: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., grid_blank: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "task", "description", "labels", "limits", "default_budget", "metrics", "out_of_scope_threshold", "versions", "served_step", "unsure_below", "checks")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BUDGET_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_SCOPE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    SERVED_STEP_FIELD_NUMBER: _ClassVar[int]
    UNSURE_BELOW_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    task: TaskType
    description: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    limits: InputLimits
    default_budget: Budget
    metrics: _containers.ScalarMap[str, float]
    out_of_scope_threshold: float
    versions: _containers.RepeatedScalarFieldContainer[str]
    served_step: str
    unsure_below: float
    checks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., task: _Optional[_Union[TaskType, str]] = ..., description: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., limits: _Optional[_Union[InputLimits, _Mapping]] = ..., default_budget: _Optional[_Union[Budget, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., out_of_scope_threshold: _Optional[float] = ..., versions: _Optional[_Iterable[str]] = ..., served_step: _Optional[str] = ..., unsure_below: _Optional[float] = ..., checks: _Optional[_Iterable[str]] = ...) -> None: ...
