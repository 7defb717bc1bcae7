"""Names and inputs shared by the client tests (a module of its own: `conftest` is ambiguous with tests/)."""

import socket

TEXT_MODEL = "intent-test"
GRID_MODEL = "sudoku-test"
N_SUP = 4
SUDOKU = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"

# Connection options (connection_args.py) that every program refuses before reaching a server, and what it says.
BAD_CONNECTION_OPTIONS = (
    (["--retries", "0"], "argument --retries: must be a whole number of at least 1, got '0'"),
    (["--target", "10.0.0.5:50051,trm.example:50051"], "--target: several endpoints must all be IPv4"),
    (["--tls-ca", "/nonexistent.pem"], "--tls-ca: No such file or directory: /nonexistent.pem"),
    (["--tls-key", "client.key"], "--tls-key needs --tls-cert"),
    (["--tls-ca", __file__], f"--tls-ca: {__file__} holds no PEM CERTIFICATE"),
    (["--target", "127.0.0.1"], "--target: '127.0.0.1' names no port: write HOST:PORT"),
    (["--target", "http://127.0.0.1:50051"], "--target: 'http://127.0.0.1:50051': a gRPC target has no http:// in "
                                             "front: write HOST:PORT, e.g. 127.0.0.1:50051"),
    (["--target", "localhost:99999"], "--target: 'localhost:99999': the port must be a number from 1 to 65535"),
)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return listener.getsockname()[1]
