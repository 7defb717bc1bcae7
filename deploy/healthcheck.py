#!/usr/bin/env python3
"""Container health probe: exit 0 when the gRPC health service reports SERVING.

Usage: trm-healthcheck [TARGET] [--service NAME] [--timeout SECONDS]
                       [--tls] [--tls-ca PEM] [--tls-cert PEM --tls-key PEM] [--tls-server-name NAME]
The TLS options mean what they mean for trm-client; each implies --tls. Exit status: 0 SERVING, 1 anything
else (the reason on stderr), 2 a bad option.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's own log lines would bury the one line this prints
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def serving_status(target: str, service: str, timeout_s: float,
                   tls: grpc.ChannelCredentials | None = None, server_name: str | None = None) -> str:
    """Return the status name (SERVING, NOT_SERVING, ...) that the health service reports for `service`."""
    # Never through an HTTP proxy the environment names (Docker passes its proxy settings to every container): the
    # probe asks its own server, which a proxy cannot reach on the container's loopback.
    options = [("grpc.enable_http_proxy", 0)]
    options += [("grpc.ssl_target_name_override", server_name)] if server_name else []
    channel = grpc.secure_channel(target, tls, options) if tls else grpc.insecure_channel(target, options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def tls_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """The channel credentials the TLS options ask for (None: plaintext); ValueError naming the option to fix.
    Python's ssl module reads the files first: gRPC takes any bytes and fails only at the handshake."""
    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name):
        return None
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together: mutual TLS takes the client certificate and its key")
    files = {}
    for option, path in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        try:
            files[option] = Path(path).read_bytes() if path else None
        except OSError as exc:
            raise ValueError(f"{option} {path}: {exc.strerror or exc}") from exc
    try:
        if args.tls_ca:
            ssl.create_default_context(cafile=args.tls_ca)
    except ssl.SSLError as exc:
        raise ValueError(f"--tls-ca {args.tls_ca} must hold PEM CA certificates: {exc.reason or exc}") from exc
    try:
        if args.tls_cert:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(args.tls_cert, args.tls_key,
                                                                    password=_refuse_passphrase)
    except _EncryptedKey:
        raise ValueError(f"--tls-key {args.tls_key} is encrypted (it asks for a passphrase), and gRPC reads only "
                         f"unencrypted keys: write one with `openssl pkey -in {args.tls_key} -out KEY.pem`") from None
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"--tls-cert {args.tls_cert} and --tls-key {args.tls_key} must be a PEM certificate and "
                         f"its private key: {getattr(exc, 'reason', None) or exc}") from exc
    return grpc.ssl_channel_credentials(files["--tls-ca"], files["--tls-key"], files["--tls-cert"])


class _EncryptedKey(Exception):
    """The --tls-key file is encrypted."""


def _refuse_passphrase() -> str:
    """ssl's passphrase callback, called only for an encrypted key: refuse it at once (without one, OpenSSL prompts
    on the terminal, and fails with a traceback where there is none, as in a container's HEALTHCHECK)."""
    raise _EncryptedKey


LONGEST_TIMEOUT_S = 3600.0  # a probe that waits longer is no probe (gRPC fails a deadline of ~3e9 s at once)


def positive_seconds(text: str) -> float:
    """A --timeout value: seconds, above 0 and at most LONGEST_TIMEOUT_S."""
    seconds = float(text)
    if not 0 < seconds <= LONGEST_TIMEOUT_S:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 and at most {LONGEST_TIMEOUT_S:g}, "
                                         f"got {text}")
    return seconds


def failure(err: grpc.RpcError, service: str, tls: bool, client_cert: str | None = None) -> str:
    """The stderr line for a probe that got no status: the gRPC code, and what it most likely means (`client_cert`:
    the --tls-cert given)."""
    line = f"unhealthy: {err.code().name}: {err.details() or ''}".rstrip(": ")
    if err.code() == grpc.StatusCode.NOT_FOUND:
        return (f"{line}: the server has no health status named {service!r} (names: '' for the server, "
                "trm.v1.ReasoningService, or a model's name)")
    if err.code() == grpc.StatusCode.UNAVAILABLE and "Connection refused" in (err.details() or ""):
        return f"{line} (nothing listens there: is the server running, on this port?)"
    if err.code() == grpc.StatusCode.UNAVAILABLE and not tls:
        return f"{line} (a TLS server? probe it with --tls-ca CA.pem, or --tls for gRPC's default roots)"
    if err.code() == grpc.StatusCode.UNAVAILABLE and "Socket closed" in (err.details() or ""):  # the handshake's end
        if client_cert is None:
            return f"{line} (a server that asks for a client certificate? give --tls-cert and --tls-key)"
        return (f"{line} (the server refused the client certificate --tls-cert {client_cert}? it must be signed by "
                "the server's --tls-client-ca, valid now, allowed for client auth, with its intermediates)")
    return line


def main(argv: list[str] | None = None) -> int:
    """Print the status and return the process exit code (0 only for SERVING)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", default=f"127.0.0.1:{os.environ.get('TRM_PORT') or 50051}",
                        help="HOST:PORT (default: 127.0.0.1 at $TRM_PORT, the server's, else 50051)")
    parser.add_argument("--service", default="", help="health service name; empty = the whole server")
    parser.add_argument("--timeout", type=positive_seconds, default=2.0,
                        help=f"seconds, at most {LONGEST_TIMEOUT_S:g} (default 2)")
    parser.add_argument("--tls", action="store_true", help="use TLS with gRPC's default root certificates (its "
                        "bundled roots, or the file GRPC_DEFAULT_SSL_ROOTS_FILE_PATH names)")
    parser.add_argument("--tls-ca", help="PEM CA bundle to verify the server")
    parser.add_argument("--tls-cert", help="PEM client certificate for mutual TLS (with --tls-key)")
    parser.add_argument("--tls-key", help="PEM key of the client certificate (with --tls-cert)")
    parser.add_argument("--tls-server-name", help="name to check the server certificate against (its name, "
                        "when the target is 127.0.0.1)")
    args = parser.parse_args(argv)
    try:
        tls = tls_credentials(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        status = serving_status(args.target, args.service, args.timeout, tls, args.tls_server_name)
    except grpc.RpcError as err:
        print(failure(err, args.service, tls is not None, args.tls_cert), file=sys.stderr)
        return 1
    print(status)
    if status != "SERVING":
        print(f"unhealthy: {args.service or 'the server'} reports {status}", file=sys.stderr)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
