"""A unary gRPC call written frame by frame with the h2 library, for headers that grpcio refuses to send.

grpcio's client checks metadata before sending (no TAB, DEL or non-ASCII byte in a value), while
other gRPC stacks put such values on the wire; this client sends whatever bytes it is given.
"""

from __future__ import annotations

import socket
import struct
import urllib.parse
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events

_READ_BYTES = 65536


@dataclass(frozen=True)
class RawCallResult:
    """What came back: the grpc-status and decoded grpc-message, and every header and trailer by name."""

    status: int
    message: str
    metadata: dict[bytes, bytes]


def raw_unary_call(
    target: str, method: str, body: bytes, metadata: list[tuple[bytes, bytes]], timeout_s: float = 30.0
) -> RawCallResult:
    """Call `method` ("/pkg.Service/Method") on `target` ("127.0.0.1:PORT") without TLS; `metadata` is
    sent byte for byte, unchecked."""
    host, port = target.rsplit(":", 1)
    config = h2.config.H2Configuration(
        client_side=True, header_encoding=None, validate_outbound_headers=False,
        normalize_outbound_headers=False, validate_inbound_headers=False,
    )
    connection = h2.connection.H2Connection(config=config)
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        connection.initiate_connection()
        stream_id = connection.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", method.encode()),
            (b":authority", target.encode()), (b"content-type", b"application/grpc"), (b"te", b"trailers"),
            *metadata,
        ]
        connection.send_headers(stream_id, headers)
        connection.send_data(stream_id, b"\x00" + struct.pack(">I", len(body)) + body, end_stream=True)
        sock.sendall(connection.data_to_send())
        received: dict[bytes, bytes] = {}
        while True:
            data = sock.recv(_READ_BYTES)
            if not data:
                raise ConnectionError("the server closed the connection before the call ended")
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    received.update(dict(event.headers))
                elif isinstance(event, h2.events.DataReceived):
                    connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                    raise ConnectionError(f"the server reset the stream (error code {event.error_code})")
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    message = urllib.parse.unquote(received.get(b"grpc-message", b"").decode())
                    return RawCallResult(int(received[b"grpc-status"]), message, received)
            sock.sendall(connection.data_to_send())
