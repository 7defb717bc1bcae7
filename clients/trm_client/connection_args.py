"""Command-line options shared by ``trm-client``, ``trm-mcp`` and the examples: where the server is and how to reach
it, and the option to change where a call failed on them (`connection_hint`)."""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from trm_client.channel import (
    TARGET_ENV,
    EncryptedKey,
    KeyPairMismatch,
    MissingPEMBlock,
    ReplicaHostsDiffer,
    TLSConfig,
    replica_name_options,
    resolve_target,
)
from trm_client.errors import (
    CERTIFICATE_EXPIRED,
    CERTIFICATE_NAMES_ANOTHER_HOST,
    CERTIFICATE_NOT_YET_VALID,
    CERTIFICATE_UNTRUSTED,
    TRMError,
)
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
            the reverse), a TLS file that cannot be read or holds no PEM block of its kind, an encrypted --tls-key,
            replicas at different hosts over TLS without --tls-server-name.
    """
    target_option = "--target" if args.target is not None else "$" + TARGET_ENV
    try:
        target = resolve_target(args.target)
    except ValueError as error:
        raise ValueError(f"{target_option}: {error}") from error
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
        except EncryptedKey as error:
            raise ValueError(EncryptedKey.told(f"--tls-key {args.tls_key}", args.tls_key)) from error
    try:
        replica_name_options(target, tls)
    except ReplicaHostsDiffer as error:
        raise ValueError(f"{target_option}: {error.asking('--tls-server-name')}") from error
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


def connection_hint(error: TRMError, target: str | None, tls: TLSConfig | None, *, ca_file: str | None = None,
                    cert_file: str | None = None) -> str:
    """The connection option to change where a call failed on the address or TLS (a server that closes the
    connection at once expects a TLS handshake, or refused the client's certificate; one that answers a TLS
    handshake with a wrong record version speaks plaintext), as "; ..." to add to its message, else "".

    `target` and `tls` are the client's (None: $TRM_TARGET or its default; no TLS); `ca_file` and `cert_file`
    the files of --tls-ca and --tls-cert, for the hint to name.
    """
    if error.code is not grpc.StatusCode.UNAVAILABLE:
        return ""
    if "Socket closed" in error.details and "Stream removed" not in error.details:
        if tls is None:
            return "; a TLS server? connect with --tls-ca CA.pem (or --tls for gRPC's default roots)"
        if tls.certificate_chain is None:
            return "; a server that asks for a client certificate (mutual TLS)? give --tls-cert and --tls-key"
        return (f"; the server refused the handshake, likely over the client certificate given with --tls-cert "
                f"{cert_file or 'CERT.pem'}: it must be signed by the CA the server trusts (its --tls-client-ca), "
                "valid now, allowed for client auth, and come with its intermediates")
    if CERTIFICATE_NAMES_ANOTHER_HOST in error.details:
        named = tls.server_name if tls and tls.server_name else "the host of --target"
        return f"; the server's certificate does not name {named}: give a name it holds with --tls-server-name"
    if CERTIFICATE_EXPIRED in error.details:
        return "; the server's certificate has expired: the server needs a renewed one (its --tls-cert)"
    if CERTIFICATE_NOT_YET_VALID in error.details:
        return ("; the server's certificate is not valid yet: this machine's clock is behind the certificate's start "
                "(check both clocks)")
    if CERTIFICATE_UNTRUSTED in error.details:
        trusted = f"--tls-ca {ca_file}" if ca_file else "gRPC's default roots"
        return (f"; the server's certificate is not signed by a CA this client trusts ({trusted}): give the CA that "
                "signed it with --tls-ca")
    if error.server_speaks_plaintext:
        return "; a server without TLS? connect without the TLS flags (--tls, --tls-ca, --tls-cert, --tls-key)"
    if "Connection refused" in error.details:
        named_by = "--target" if target is not None else f"--target (or ${TARGET_ENV})"
        return f"; no server listens at {resolve_target(target)}: start one, or name its address with {named_by}"
    return ""


def connection_hint_for(args: argparse.Namespace, settings: dict[str, Any]) -> Callable[[TRMError], str]:
    """connection_hint for the client made from `settings`, the client_settings of the parsed options `args`."""
    return functools.partial(connection_hint, target=args.target, tls=settings["tls"], ca_file=args.tls_ca,
                             cert_file=args.tls_cert)
