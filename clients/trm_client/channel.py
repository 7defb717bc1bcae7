"""Opens gRPC channels: target URIs for one or many replicas, round-robin balancing, TLS and mutual TLS."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

DEFAULT_TARGET = "127.0.0.1:50051"
TARGET_ENV = "TRM_TARGET"

# Round robin over every address the resolver returns: a list of replicas, or every A record of a
# dns:/// name (e.g. a Kubernetes headless service). The resolver's own service config is ignored so
# that this policy always applies.
_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
_BASE_OPTIONS: tuple[tuple[str, int | str], ...] = (
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.service_config_disable_resolution", 1),
    # Reconnect to a restarted replica within a second or two instead of gRPC's default of up to 2 minutes. Not
    # grpc.min_reconnect_backoff_ms: gRPC core reads it as the time one connection attempt may take (20 s by
    # default); at 200 ms a link of 0.9 s round trip never finished a TLS handshake.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # A replica that hangs, or whose host drops off the network, keeps its connection open: a ping unanswered
    # within 5 s closes it, and round robin skips that replica from then on (without, every other call waited out
    # its deadline on it). Both timeouts: gRPC's keepalive ping waits on a ping already in flight (each new call
    # sends one), and that one's timeout is grpc.http2.ping_timeout_ms (1 minute by default). The server allows a
    # ping every 5 s (trm_service/server.py).
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.ping_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)


_PEM_BLOCKS = {
    "root_certificates": ("CERTIFICATE", re.compile(rb"-----BEGIN CERTIFICATE-----")),
    "certificate_chain": ("CERTIFICATE", re.compile(rb"-----BEGIN CERTIFICATE-----")),
    "private_key": ("PRIVATE KEY", re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
}
"""What each TLSConfig field must hold: gRPC core only logs a file it cannot read and fails the handshake."""

# gRPC's own target URI schemes; any other target is HOST:PORT.
_URI_SCHEMES = frozenset({"dns", "ipv4", "ipv6", "unix", "unix-abstract", "vsock", "xds", "google-c2p"})


class MissingPEMBlock(ValueError):
    """A TLSConfig field whose bytes hold no PEM block of the kind it needs."""

    def __init__(self, field: str, kind: str) -> None:
        self.field, self.kind = field, kind
        super().__init__(f"{field} {self.problem}")

    @property
    def problem(self) -> str:
        """What is wrong, without the field's name."""
        return f"holds no PEM {self.kind} (no '-----BEGIN {self.kind}-----' line)"


class KeyPairMismatch(ValueError):
    """A TLSConfig whose private_key is not the (unencrypted) key of its certificate_chain: gRPC would only fail
    each call with "Failed to create security handshaker"."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"certificate_chain and private_key {self.problem}")

    @property
    def problem(self) -> str:
        """What is wrong, without the fields' names."""
        return f"must be a certificate and its unencrypted private key: {self.reason}"


class EncryptedKey(ValueError):
    """A TLSConfig private_key that asks for a passphrase: gRPC reads only unencrypted keys."""

    def __init__(self) -> None:
        super().__init__(self.told("private_key", "KEY"))

    @staticmethod
    def told(key: str, path: str) -> str:
        """The problem said of `key` (a field or an option), read from the file `path`."""
        return (f"{key} is encrypted (it asks for a passphrase), and gRPC reads only unencrypted keys: write one with "
                f"`openssl pkey -in {path} -out KEY.pem`")


def _check_key_pair(certificate_chain: bytes, private_key: bytes) -> None:
    """Raises KeyPairMismatch unless `private_key` is the unencrypted key of `certificate_chain` (EncryptedKey where
    it asks for a passphrase). Python's ssl reads them from files only; where none can be made (no memfd, no
    writable temporary folder) the check is skipped, and gRPC's handshake fails instead."""
    asked_passphrase = False

    def passphrase() -> bytes:
        nonlocal asked_passphrase
        asked_passphrase = True
        return b""

    try:
        with _readable_paths(certificate_chain, private_key) as (cert, key):
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key, password=passphrase)
    except ssl.SSLError as error:
        if asked_passphrase:
            raise EncryptedKey from error
        raise KeyPairMismatch(str(error.reason or error)) from error
    except OSError:  # ssl.SSLError is one too, hence the order
        return


@contextmanager
def _readable_paths(*contents: bytes) -> Iterator[list[str]]:
    """Paths that read `contents`: anonymous in-memory files on Linux (the key never reaches a disk, and a read-only
    container has no writable temporary folder), else files in a temporary folder only this user can read, removed
    at the end."""
    if not hasattr(os, "memfd_create"):
        with tempfile.TemporaryDirectory() as folder:
            paths = [Path(folder, f"{number}.pem") for number in range(len(contents))]
            for path, data in zip(paths, contents, strict=True):
                path.write_bytes(data)
            yield [str(path) for path in paths]
        return
    descriptors = [os.memfd_create("trm-client-tls") for _ in contents]
    try:
        for descriptor, data in zip(descriptors, contents, strict=True):
            with open(descriptor, "wb", closefd=False) as file:
                file.write(data)
        yield [f"/proc/self/fd/{descriptor}" for descriptor in descriptors]
    finally:
        for descriptor in descriptors:
            os.close(descriptor)


@dataclass(frozen=True)
class TLSConfig:
    """Transport security: server authentication with a CA, plus a client certificate for mutual TLS.

    Attributes:
        root_certificates: PEM CA bundle that signed the server's certificate; None uses gRPC's default roots.
        certificate_chain: PEM client certificate chain (mutual TLS); requires ``private_key``.
        private_key: PEM key of the client certificate (mutual TLS).
        server_name: the name to check the server certificate against, when it differs from the target's host.
    """

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("mutual TLS needs both certificate_chain and private_key")
        for name, (kind, block) in _PEM_BLOCKS.items():
            data = getattr(self, name)
            if data is not None and not block.search(data):
                raise MissingPEMBlock(name, kind)
        if self.certificate_chain is not None and self.private_key is not None:
            _check_key_pair(self.certificate_chain, self.private_key)

    @classmethod
    def from_files(
        cls,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        server_name: str | None = None,
    ) -> TLSConfig:
        """Reads PEM files: ``ca`` to verify the server, ``cert`` and ``key`` for mutual TLS."""

        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return cls(read(ca), read(cert), read(key), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        """The gRPC channel credentials for this configuration."""
        return grpc.ssl_channel_credentials(self.root_certificates, self.private_key, self.certificate_chain)

    def options(self) -> tuple[tuple[str, str], ...]:
        """Channel options that go with the credentials."""
        return (("grpc.ssl_target_name_override", self.server_name),) if self.server_name else ()


def resolve_target(target: str | Sequence[str] | None) -> str:
    """Turns a target, a comma-separated list or a list of replicas into one gRPC target URI.

    A single target passes through unchanged (``host:port``, ``dns:///name:port``, ``ipv4:...``).
    Several ``ip:port`` endpoints become an ``ipv4:`` or ``ipv6:`` list that round robin spreads over.
    None falls back to $TRM_TARGET, then to 127.0.0.1:50051.

    Raises:
        TypeError: for a target that is neither a string nor a sequence of strings (a port number alone).
        ValueError: for an endpoint with a space, no port or a port out of range (gRPC would fail only when it
            connects, or quietly use port 443), or several endpoints that are not all IPv4 or all IPv6
            literals (use ``dns:///``).
    """
    if target is None:
        target = os.environ.get(TARGET_ENV) or DEFAULT_TARGET
    given = target.split(",") if isinstance(target, str) else target
    if not isinstance(given, Sequence) or not all(isinstance(endpoint, str) for endpoint in given):
        raise TypeError(f"target must be 'host:port' or a list of them, got {target!r}")
    endpoints = [t.strip() for t in given if t.strip()]
    if not endpoints:
        raise ValueError("no target given")
    if len(endpoints) == 1:
        _check_endpoint(endpoints[0])
        return endpoints[0]
    families = {_ip_family(endpoint) for endpoint in endpoints}
    if len(families) != 1 or None in families:
        raise ValueError(
            f"several endpoints must all be IPv4 or all IPv6 'ip:port' literals, got {endpoints}; "
            "for host names use one dns:///name:port target, which resolves every replica"
        )
    for endpoint in endpoints:
        _check_endpoint(endpoint)
    return f"{families.pop()}:{','.join(endpoints)}"


def _check_endpoint(endpoint: str) -> None:
    """Raises ValueError for a HOST:PORT endpoint that gRPC would not reach (gRPC's URI forms pass)."""
    if any(char.isspace() for char in endpoint):
        raise ValueError(f"{endpoint!r} has a space; write HOST:PORT, e.g. {DEFAULT_TARGET}")
    if endpoint.split(":", 1)[0] in _URI_SCHEMES:
        return
    scheme, slashes, rest = endpoint.partition("://")
    if slashes:
        raise ValueError(f"{endpoint!r}: a gRPC target has no {scheme}:// in front: write HOST:PORT, e.g. {rest} "
                         "(TLS is an option of its own)")
    host, _, port = endpoint.rpartition(":")
    if not host or (":" in host and not host.startswith("[")):
        raise ValueError(f"{endpoint!r} names no port: write HOST:PORT, e.g. {DEFAULT_TARGET} ([ADDRESS]:PORT "
                         "for IPv6); gRPC would use port 443")
    if not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"{endpoint!r}: the port must be a number from 1 to 65535")


def _ip_family(endpoint: str) -> str | None:
    """'ipv4' or 'ipv6' for an ``ip:port`` / ``[ip]:port`` literal, None for anything else."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if address.version == 6 and not host.startswith("["):
        return None
    return f"ipv{address.version}"


def channel_options(
    tls: TLSConfig | None, extra: Sequence[tuple[str, int | str]] = ()
) -> list[tuple[str, int | str]]:
    """The options every channel gets: round robin, quick reconnects, keepalive, TLS name override, then ``extra``,
    whose keys replace those (gRPC core reads the first of two options of one key: a caller's own keepalive was
    ignored)."""
    return list(dict([*_BASE_OPTIONS, *(tls.options() if tls else ()), *extra]).items())


def loopback_options(target: str) -> list[tuple[str, int | str]]:
    """No HTTP proxy for a target on this machine (127.0.0.0/8, ::1, localhost): gRPC honours http_proxy and
    https_proxy for every target that no_proxy does not name, and a proxy cannot reach the caller's own loopback
    (every call to a local server failed UNAVAILABLE where a proxy was set, as on many company machines)."""
    endpoints = re.sub(r"^(ipv4:|ipv6:|dns:(//[^/]*)?/?)", "", target).split(",")
    return [("grpc.enable_http_proxy", 0)] if all(_is_loopback(endpoint) for endpoint in endpoints) else []


def _is_loopback(endpoint: str) -> bool:
    host = endpoint.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ReplicaHostsDiffer(ValueError):
    """Several replicas over TLS at different hosts, without a server_name to check their certificates against."""

    def __init__(self, hosts: Sequence[str]) -> None:
        self.hosts = list(hosts)
        super().__init__(self.asking("server_name"))

    def asking(self, option: str) -> str:
        """The problem, asking for `option` (a field or a flag)."""
        return (f"over TLS, replicas at different hosts ({', '.join(self.hosts)}) need {option}: a name every "
                "replica's certificate holds")


def replica_name_options(target: str, tls: TLSConfig | None) -> list[tuple[str, int | str]]:
    """With TLS and no server_name, several replicas' one host as the name their certificates are checked against:
    gRPC checks an ipv4:/ipv6: list against no host of the list, and every replica failed "Hostname Verification".

    Raises:
        ReplicaHostsDiffer: for replicas at different hosts (which name would be a guess).
    """
    if tls is None or tls.server_name or not target.startswith(("ipv4:", "ipv6:")):
        return []
    endpoints = re.sub(r"^ipv[46]:(//[^/]*/)?", "", target).split(",")
    hosts = sorted({endpoint.rpartition(":")[0].strip("[]") for endpoint in endpoints})
    if len(hosts) > 1:
        raise ReplicaHostsDiffer(hosts)
    return [("grpc.ssl_target_name_override", hosts[0])]


def open_channel(
    target: str, tls: TLSConfig | None, extra: Sequence[tuple[str, int | str]] = ()
) -> grpc.Channel:
    """Opens a blocking channel to a resolved target (ReplicaHostsDiffer: see replica_name_options)."""
    options = channel_options(tls, [*loopback_options(target), *replica_name_options(target, tls), *extra])
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, tls.credentials(), options=options)


def open_aio_channel(
    target: str, tls: TLSConfig | None, extra: Sequence[tuple[str, int | str]] = ()
) -> grpc.aio.Channel:
    """Opens an asyncio channel to a resolved target (ReplicaHostsDiffer: see replica_name_options)."""
    options = channel_options(tls, [*loopback_options(target), *replica_name_options(target, tls), *extra])
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, tls.credentials(), options=options)
