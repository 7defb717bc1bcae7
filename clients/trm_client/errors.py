"""Typed exceptions for failed calls: each keeps the gRPC status code, its message and the request id."""

from __future__ import annotations

import grpc


class TRMError(Exception):
    """A call to the reasoning service failed.

    Attributes:
        code: the gRPC status code the call ended with.
        details: the server's (or the channel's) status message.
        request_id: the id sent as ``x-request-id`` metadata, to find the call in the server's logs.
    """

    def __init__(self, code: grpc.StatusCode, details: str, request_id: str) -> None:
        super().__init__(f"{code.name}: {details} (request_id={request_id})")
        self.code = code
        self.details = details
        self.request_id = request_id

    @property
    def over_message_limit(self) -> bool:
        """A message over a gRPC size limit (gRPC's RESOURCE_EXHAUSTED "larger than max"): the same request
        can never pass, however long the caller waits."""
        return self.code is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in self.details

    @property
    def certificate_refused(self) -> bool:
        """The client refused the server's TLS certificate (gRPC's UNAVAILABLE): signed by no CA it trusts, or not
        naming the host it was reached by. The same certificate comes back on every attempt."""
        return self.code is grpc.StatusCode.UNAVAILABLE and any(
            failure in self.details for failure in (CERTIFICATE_UNTRUSTED, CERTIFICATE_NAMES_ANOTHER_HOST))

    @property
    def server_speaks_plaintext(self) -> bool:
        """The client's TLS handshake was answered with bytes that are no TLS record (BoringSSL's
        WRONG_VERSION_NUMBER): a server without TLS, which answers so on every attempt."""
        return self.code is grpc.StatusCode.UNAVAILABLE and TLS_TO_PLAINTEXT in self.details


CERTIFICATE_UNTRUSTED = "CERTIFICATE_VERIFY_FAILED"  # gRPC's words, as BoringSSL's
CERTIFICATE_EXPIRED = "certificate has expired"  # BoringSSL's reason after CERTIFICATE_VERIFY_FAILED
CERTIFICATE_NOT_YET_VALID = "certificate is not yet valid"
CERTIFICATE_NAMES_ANOTHER_HOST = "Hostname Verification Check failed"
TLS_TO_PLAINTEXT = "WRONG_VERSION_NUMBER"  # BoringSSL's reason for an answer that is no TLS record
CLOSED_DURING_CALL = "the client was closed during the call (close(), or the end of its with-block)"


class ClientClosed(ValueError):
    """A call on a client after its close() (or the end of its with-block), as on a closed file."""

    def __init__(self, client: str) -> None:
        super().__init__(f"this {client} is closed (close() was called, or its with-block ended): make a new "
                         f"{client} for more calls")


class InvalidArgument(TRMError):
    """The request was malformed: bad input, top_k or budget. Never retried."""


class NotFound(TRMError):
    """The model (or the model version) is not hosted."""


class ResourceExhausted(TRMError):
    """The server's queue is full (retried only when the caller's RetryPolicy asks for it), or the request was
    over a message size limit (``over_message_limit``; never retried)."""


class DeadlineExceeded(TRMError):
    """The call's deadline passed before an answer arrived."""


class Unavailable(TRMError):
    """No server could be reached (still UNAVAILABLE after the retries)."""


_BY_CODE: dict[grpc.StatusCode, type[TRMError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}


def error_for(code: grpc.StatusCode, details: str, request_id: str) -> TRMError:
    """Builds the most specific TRMError subclass for a status code."""
    return _BY_CODE.get(code, TRMError)(code, details, request_id)


def from_rpc_error(error: grpc.RpcError, request_id: str) -> TRMError:
    """Converts a grpc.RpcError (sync or asyncio) into a typed TRMError."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return error_for(code or grpc.StatusCode.UNKNOWN, details or "", request_id)
