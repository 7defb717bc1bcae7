"""Python SDK for the trm.v1 reasoning co-processor: sync and asyncio clients, typed results and errors.

The names below are imported at their first use (PEP 562), so that `trm-client` and `trm-mcp` (trm_client.console)
start before gRPC loads, and a Ctrl-C while it loads ends them as one during the command does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULE_OF = {
    "AsyncTRMClient": "trm_client.aio_client",
    "Budget": "trm_client.model_info",
    "Classification": "trm_client.results",
    "ClientClosed": "trm_client.errors",
    "DeadlineExceeded": "trm_client.errors",
    "GridSolution": "trm_client.results",
    "HaltReason": "trm_client.results",
    "InputLimits": "trm_client.model_info",
    "InvalidArgument": "trm_client.errors",
    "LabelScore": "trm_client.results",
    "ModelInfo": "trm_client.model_info",
    "NO_RETRY": "trm_client.retry",
    "NotFound": "trm_client.errors",
    "ReasonResult": "trm_client.results",
    "ReasonStep": "trm_client.results",
    "ResourceExhausted": "trm_client.errors",
    "RetryEvent": "trm_client.retry",
    "RetryPolicy": "trm_client.retry",
    "TLSConfig": "trm_client.channel",
    "TRMClient": "trm_client.client",
    "TRMError": "trm_client.errors",
    "TaskType": "trm_client.model_info",
    "Unavailable": "trm_client.errors",
    "WrittenText": "trm_client.results",
}


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


def __getattr__(name: str) -> Any:
    """The public name `name`, imported from its module at its first use."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'trm_client' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value
