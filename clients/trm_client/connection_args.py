"""Command-line options shared by ``trm-client`` and ``trm-mcp``: where the server is and how to reach it."""

from __future__ import annotations

import argparse
from typing import Any

from trm_client.channel import TARGET_ENV, TLSConfig
from trm_client.retry import RetryPolicy


def add_connection_arguments(parser: argparse.ArgumentParser, *, with_defaults: bool = True) -> None:
    """Adds --target, --timeout, --retries and the TLS options.

    With ``with_defaults=False`` the options set nothing unless given: use it on subcommands, so
    the options work before and after the subcommand name without the subcommand's defaults
    overwriting what was given before it.
    """

    def default(value: Any) -> Any:
        return value if with_defaults else argparse.SUPPRESS

    parser.add_argument(
        "--target",
        default=default(None),
        help=f"HOST:PORT, dns:///NAME:PORT, or comma-separated IP:PORT replicas (default: ${TARGET_ENV}, "
        "else 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--timeout", type=float, default=default(10.0), help="deadline of each call in seconds"
    )
    parser.add_argument(
        "--retries", type=int, default=default(6), help="most attempts per call on UNAVAILABLE"
    )
    tls = parser.add_argument_group("TLS")
    tls.add_argument(
        "--tls", action="store_true", default=default(False), help="use TLS with the system's roots"
    )
    tls.add_argument(
        "--tls-ca", default=default(None), help="PEM CA bundle to verify the server (implies --tls)"
    )
    tls.add_argument("--tls-cert", default=default(None), help="PEM client certificate for mutual TLS")
    tls.add_argument("--tls-key", default=default(None), help="PEM key of the client certificate")
    tls.add_argument(
        "--tls-server-name", default=default(None), help="name to check the server certificate against"
    )


def client_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for TRMClient / AsyncTRMClient from the parsed options."""
    use_tls = args.tls or args.tls_ca or args.tls_cert
    tls = (
        TLSConfig.from_files(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
        if use_tls
        else None
    )
    return {
        "target": args.target,
        "tls": tls,
        "timeout_s": args.timeout,
        "retry": RetryPolicy(max_attempts=args.retries),
    }
