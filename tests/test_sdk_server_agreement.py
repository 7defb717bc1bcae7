"""The rules the SDK applies before a call and the server applies on arrival are one contract kept in two
distributions (the SDK imports no server package): each pair is checked here against the other side's code, so that
a change to one side alone fails."""

from __future__ import annotations

import grpc
from hypothesis import example, given
from hypothesis import strategies as st
from trm_client.channel import channel_options
from trm_client.metadata import MAX_REQUEST_ID_CHARS, REQUEST_ID_KEY, call_metadata

from trm_service.api import servicer, validation
from trm_service.api.validation import RequestError, check_request_id
from trm_service.config import ServeConfig
from trm_service.server import transport_options


def _sdk_accepts(request_id: str) -> bool:
    try:
        call_metadata((), request_id)
    except ValueError:
        return False
    return True


def _server_accepts(request_id: str) -> bool:
    try:
        check_request_id(request_id)
    except RequestError as error:
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        return False
    return True


def test_the_request_id_header_and_its_length_limit_are_the_servers():
    assert (REQUEST_ID_KEY, MAX_REQUEST_ID_CHARS) == (servicer.REQUEST_ID_KEY, validation.MAX_REQUEST_ID_CHARS)


@given(st.text(max_size=MAX_REQUEST_ID_CHARS + 2))
@example("")
@example(" id")
@example("id\t")
@example("x" * MAX_REQUEST_ID_CHARS)
@example("x" * (MAX_REQUEST_ID_CHARS + 1))
@example("caf\u00e9")
def test_the_sdk_refuses_exactly_the_request_ids_the_server_refuses(request_id: str):
    """A caller learns of a bad id before the call (ValueError), never from the server after it."""
    assert _sdk_accepts(request_id) == _server_accepts(request_id)


def test_the_sdks_keepalive_pings_no_more_often_than_the_server_allows():
    """A client that pings more often than the server's minimum interval is cut off ("too_many_pings");
    tests/test_service_transport_limits.py shows a client at that interval kept."""
    sdk = dict(channel_options(None))
    server = dict(transport_options(ServeConfig()))
    assert sdk["grpc.keepalive_time_ms"] >= server["grpc.http2.min_ping_interval_without_data_ms"]
