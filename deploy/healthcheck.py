#!/usr/bin/env python3
"""Container health probe: exit 0 when the gRPC health service reports SERVING.

Usage: trm-healthcheck [TARGET] [--service NAME] [--timeout SECONDS]
                       [--tls] [--tls-ca PEM] [--tls-cert PEM --tls-key PEM] [--tls-server-name NAME]
The TLS options mean what they mean for trm-client; each implies --tls.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def serving_status(target: str, service: str, timeout_s: float,
                   tls: grpc.ChannelCredentials | None = None, server_name: str | None = None) -> str:
    """Return the status name (SERVING, NOT_SERVING, ...) that the health service reports for `service`."""
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    channel = grpc.secure_channel(target, tls, options) if tls else grpc.insecure_channel(target)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def tls_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """The channel credentials the TLS options ask for (None: plaintext); ValueError naming the option to fix."""
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
    return grpc.ssl_channel_credentials(files["--tls-ca"], files["--tls-key"], files["--tls-cert"])


def main(argv: list[str] | None = None) -> int:
    """Print the status and return the process exit code (0 only for SERVING)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", default="127.0.0.1:50051")
    parser.add_argument("--service", default="", help="health service name; empty = the whole server")
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--tls", action="store_true", help="use TLS with the system's roots")
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
        print(f"unhealthy: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
