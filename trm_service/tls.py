"""The server's TLS files (--tls-cert, --tls-key, --tls-client-ca): checked when read, and read again on SIGHUP.

gRPC takes any bytes and fails only when it binds (as if the port were the problem) or at each handshake, so Python's
ssl module reads every file first. The credentials are gRPC's dynamic ones: before each new connection's handshake
gRPC asks for a renewed certificate (`_renewed`), which `reread` sets where the files changed; connections already
open keep the certificate they were made with.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc
import structlog

from trm_service.config import ConfigError, ServeConfig

_log = structlog.get_logger("trm_service.tls")


class ServerCertificates:
    """The TLS files of a server that serves TLS; `credentials()` for its port, `reread()` on SIGHUP."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        self._cert, self._key, self._client_ca = cert, key, client_ca
        self._files = self._read()
        self._renewal: tuple[bytes, bytes, bytes | None] | None = None

    @classmethod
    def of(cls, config: ServeConfig) -> ServerCertificates | None:
        """The certificates `config` names (None without TLS); ConfigError naming the flag of a bad file."""
        if config.tls_cert is None or config.tls_key is None:
            return None
        return cls(config.tls_cert, config.tls_key, config.tls_client_ca)

    def credentials(self) -> grpc.ServerCredentials:
        """gRPC's credentials for the port: the files as read, and each renewal `reread` finds."""
        return grpc.dynamic_ssl_server_credentials(
            _configuration(self._files), self._renewed, require_client_authentication=self._client_ca is not None)

    def reread(self) -> None:
        """Read the files again (after SIGHUP): where they changed and are sound, new connections get them; where one
        is not, it is logged (`tls_files_refused`) and the certificate in use stays."""
        try:
            files = self._read()
        except ConfigError as error:
            _log.error("tls_files_refused", error=str(error), hint="the certificate in use stays; fix the files "
                       "and send SIGHUP again")
            return
        if files != self._files:
            self._files, self._renewal = files, files
            _log.info("tls_files_renewed", tls_cert=str(self._cert), tls_client_ca=str(self._client_ca or ""))

    def _renewed(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's question before each handshake: the renewed files once, else None (no change)."""
        renewal, self._renewal = self._renewal, None
        return _configuration(renewal) if renewal is not None else None

    def _read(self) -> tuple[bytes, bytes, bytes | None]:
        """The files' bytes (certificate, key, client CA), each checked by Python's ssl module first."""
        cert, key, client_ca = self._cert, self._key, self._client_ca
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=_refuse_passphrase)
        except _EncryptedKey:
            raise ConfigError(f"--tls-key {key} is encrypted (it asks for a passphrase), and gRPC reads only "
                              f"unencrypted keys: write one with `openssl pkey -in {key} -out KEY.pem` and make it "
                              "readable by the server alone") from None
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"--tls-cert {cert} and --tls-key {key} must be a PEM certificate and its private key: "
                              f"{exc}") from exc
        if client_ca is not None:
            try:
                ssl.create_default_context(cafile=client_ca)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(f"--tls-client-ca {client_ca} must hold PEM certificates: {exc}") from exc
        try:
            return cert.read_bytes(), key.read_bytes(), client_ca.read_bytes() if client_ca else None
        except OSError as exc:  # replaced between the check and the read
            raise ConfigError(f"--tls-cert, --tls-key or --tls-client-ca: {exc}") from exc


def _configuration(files: tuple[bytes, bytes, bytes | None]) -> grpc.ServerCertificateConfiguration:
    cert, key, client_ca = files
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=client_ca)


class _EncryptedKey(Exception):
    """The --tls-key file is encrypted."""


def _refuse_passphrase() -> str:
    """ssl's passphrase callback, called only for an encrypted key: refuse it at once (without one, OpenSSL
    prompts on the terminal)."""
    raise _EncryptedKey
