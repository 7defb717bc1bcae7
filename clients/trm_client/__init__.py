"""Python SDK for the trm.v1 reasoning co-processor: sync and asyncio clients, typed results and errors."""

from trm_client.aio_client import AsyncTRMClient
from trm_client.channel import TLSConfig
from trm_client.client import TRMClient
from trm_client.errors import (
    ClientClosed,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    TRMError,
    Unavailable,
)
from trm_client.model_info import Budget, InputLimits, ModelInfo, TaskType
from trm_client.results import (
    Classification,
    GridSolution,
    HaltReason,
    LabelScore,
    ReasonResult,
    ReasonStep,
    WrittenText,
)
from trm_client.retry import NO_RETRY, RetryEvent, RetryPolicy

__all__ = [
    "NO_RETRY",
    "AsyncTRMClient",
    "Budget",
    "Classification",
    "ClientClosed",
    "DeadlineExceeded",
    "GridSolution",
    "HaltReason",
    "InputLimits",
    "InvalidArgument",
    "LabelScore",
    "ModelInfo",
    "NotFound",
    "ReasonResult",
    "ReasonStep",
    "ResourceExhausted",
    "RetryEvent",
    "RetryPolicy",
    "TLSConfig",
    "TRMClient",
    "TRMError",
    "TaskType",
    "Unavailable",
    "WrittenText",
]
