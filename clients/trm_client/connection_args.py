"""Command-line options shared by ``trm-client`` and ``trm-mcp``: where the server is and how to reach it (and the
status of a command stopped by Ctrl-C)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trm_client.channel import TARGET_ENV, KeyPairMismatch, MissingPEMBlock, TLSConfig, resolve_target
from trm_client.model_info import MAX_UINT32
from trm_client.retry import RetryPolicy


def whole_number(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``least`` to the API's largest (2**32 - 1)."""

    def parse(value: str) -> int:
        number = int(value) if value.strip().isdigit() else -1
        if number < least:
            raise argparse.ArgumentTypeError(f"must be a whole number of at least {least}, got {value!r}")
        if number > MAX_UINT32:
            raise argparse.ArgumentTypeError(f"must be at most {MAX_UINT32}, got {value!r}")
        return number

    return parse


positive_int = whole_number(1)


def positive_seconds(value: str) -> float:
    """An argparse type: a positive number of seconds (`inf`: no deadline, as 1e9 and more are)."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not seconds > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value!r}")
    return seconds


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
        "--timeout", type=positive_seconds, default=default(10.0),
        help="deadline of each call in seconds (default 10; inf, or 1e9 or more: no deadline)",
    )
    parser.add_argument(
        "--retries", type=positive_int, default=default(6), help="most attempts per call on UNAVAILABLE"
    )
    tls = parser.add_argument_group("TLS (each option implies --tls)")
    tls.add_argument(
        "--tls", action="store_true", default=default(False),
        help="use TLS with gRPC's default root certificates (its bundled roots, or the file "
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH names)",
    )
    tls.add_argument("--tls-ca", default=default(None), help="PEM CA bundle to verify the server")
    tls.add_argument(
        "--tls-cert", default=default(None), help="PEM client certificate for mutual TLS (with --tls-key)"
    )
    tls.add_argument(
        "--tls-key", default=default(None), help="PEM key of the client certificate (with --tls-cert)"
    )
    tls.add_argument(
        "--tls-server-name", default=default(None), help="name to check the server certificate against"
    )


def client_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for TRMClient / AsyncTRMClient from the parsed options.

    Raises:
        ValueError: naming the option to change: a malformed --target, --tls-cert without --tls-key (or
            the reverse), a TLS file that cannot be read or holds no PEM block of its kind.
    """
    try:
        resolve_target(args.target)
    except ValueError as error:
        raise ValueError(f"{'--target' if args.target is not None else '$' + TARGET_ENV}: {error}") from error
    if (args.tls_cert is None) != (args.tls_key is None):
        given, missing = ("--tls-cert", "--tls-key") if args.tls_key is None else ("--tls-key", "--tls-cert")
        raise ValueError(f"{given} needs {missing}: mutual TLS takes the client certificate and its key")
    tls = None
    if args.tls or any(option is not None for option in (args.tls_ca, args.tls_cert, args.tls_server_name)):
        files = {"root_certificates": ("--tls-ca", args.tls_ca), "certificate_chain": ("--tls-cert", args.tls_cert),
                 "private_key": ("--tls-key", args.tls_key)}
        try:
            tls = TLSConfig(**{field: _read(*option) for field, option in files.items()},
                            server_name=args.tls_server_name)
        except MissingPEMBlock as error:
            option, path = files[error.field]
            raise ValueError(f"{option}: {path} {error.problem}") from error
        except KeyPairMismatch as error:
            raise ValueError(f"--tls-cert {args.tls_cert} and --tls-key {args.tls_key} {error.problem}") from error
    return {
        "target": args.target,
        "tls": tls,
        "timeout_s": args.timeout,
        "retry": RetryPolicy(max_attempts=args.retries),
    }


def checked_client_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """client_settings(args); a bad option ends the program through ``parser.error`` (usage, message, status 2)."""
    try:
        return client_settings(args)
    except ValueError as error:
        parser.error(str(error))


def _read(option: str, path: str | None) -> bytes | None:
    """The file an option names, or None when the option was not given."""
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"{option}: {error.strerror or error}: {path}") from error
