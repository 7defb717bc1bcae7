"""ReasonBatch on the wire: many inputs of one model in one call, one result or error per input."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from trm.v1 import trm_pb2

from trm_client.errors import TRMError, error_for
from trm_client.model_info import Budget
from trm_client.reason_request import GridInput, build_reason_request
from trm_client.results import ReasonResult

_STATUS_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}


def build_batch_request(
    model: str,
    texts: Sequence[str] | None,
    grids: Sequence[GridInput] | None,
    *,
    version: str = "",
    budget: Budget | None = None,
    top_k: int = 0,
) -> trm_pb2.ReasonBatchRequest:
    """One ReasonRequest per text (or per grid), all for `model` with the same budget.

    Raises:
        ValueError: when neither or both of ``texts`` and ``grids`` are given.
        TypeError: for one string given as ``texts`` or ``grids`` (a list of them is meant).
        ValueError, TypeError: for an entry that cannot be sent, named by its index (``texts[3]: ...``).
    """
    if (texts is None) == (grids is None):
        raise ValueError("give exactly one of texts or grids")
    for name, inputs in (("texts", texts), ("grids", grids)):
        if isinstance(inputs, str):
            raise TypeError(f"{name} must be a list of inputs, got one string; pass [{name[:-1]}] for one")
    name, inputs = ("texts", texts) if texts is not None else ("grids", grids or ())
    requests = []
    for index, one in enumerate(inputs):
        if one is None:
            raise TypeError(f"{name}[{index}] is None: every entry is a {name[:-1]}")
        try:
            requests.append(build_reason_request(model, *((one, None) if texts is not None else (None, one)),
                                                 version=version, budget=budget, top_k=top_k))
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{name}[{index}]: {exc}") from None
    return trm_pb2.ReasonBatchRequest(requests=requests)


def read_batch_response(
    response: trm_pb2.ReasonBatchResponse, round_trip_ms: float, request_id: str
) -> list[ReasonResult | TRMError]:
    """Each input's ReasonResult, or the typed error (InvalidArgument, ResourceExhausted...) it got alone."""
    results: list[ReasonResult | TRMError] = []
    for index, result in enumerate(response.results):
        if result.HasField("failure"):
            status = _STATUS_BY_NUMBER.get(result.failure.code, grpc.StatusCode.UNKNOWN)
            results.append(error_for(status, result.failure.message, f"{request_id}.{index}"))
        else:
            results.append(ReasonResult.from_proto(result.response, round_trip_ms, f"{request_id}.{index}"))
    return results
