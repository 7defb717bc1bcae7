"""TLS and mutual TLS with certificates made by openssl for 127.0.0.1."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import grpc
import pytest
from test_service_support import TEXT_MODEL, run_healthcheck, wait_for
from trm.v1 import trm_pb2, trm_pb2_grpc

from trm_service.testing import ServerProcess

REQUEST = trm_pb2.ReasonRequest(model=TEXT_MODEL, text="over tls", budget=trm_pb2.Budget(max_steps=1))
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", *EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN={name}", cwd=directory)


def _signed(directory: Path, name: str, ca: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions)
    _openssl("req", *EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=directory)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    _ca(directory, "ca")
    _ca(directory, "other-ca")
    _signed(directory, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _signed(directory, "client", "ca", "extendedKeyUsage=clientAuth\n")
    _signed(directory, "stranger", "other-ca", "extendedKeyUsage=clientAuth\n")
    _signed(directory, "renewed", "other-ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    return directory


def _encrypted_key(pki: Path, name: str) -> Path:
    """`name`'s key, encrypted with a passphrase."""
    _openssl("pkey", "-in", f"{name}.key", "-aes256", "-passout", "pass:secret", "-out", f"{name}.encrypted.key",
             cwd=pki)
    return pki / f"{name}.encrypted.key"


def _call(target: str, credentials: grpc.ChannelCredentials | None) -> trm_pb2.ReasonResponse:
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    with channel:
        return trm_pb2_grpc.ReasoningServiceStub(channel).Reason(REQUEST, timeout=10)


def _credentials(pki: Path, client: str | None = None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=(pki / "ca.pem").read_bytes())
    return grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / f"{client}.key").read_bytes(),
        certificate_chain=(pki / f"{client}.pem").read_bytes(),
    )


def _refused(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        _call(target, credentials)
    return caught.value.code()


def test_tls_serves_clients_that_trust_the_ca_and_refuses_plaintext(pki: Path, text_bundle: Path):
    tls = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")]
    with ServerProcess([text_bundle], extra_args=tls) as server:
        assert _call(server.target, _credentials(pki)).steps == 1
        assert _refused(server.target, None) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate_from_the_client_ca(pki: Path, text_bundle: Path):
    mutual = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
              "--tls-client-ca", str(pki / "ca.pem")]
    with ServerProcess([text_bundle], extra_args=mutual) as server:
        assert _call(server.target, _credentials(pki, "client")).steps == 1
        assert _refused(server.target, _credentials(pki)) == grpc.StatusCode.UNAVAILABLE
        assert _refused(server.target, _credentials(pki, "stranger")) == grpc.StatusCode.UNAVAILABLE


def _trusting(pki: Path, ca: str) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=(pki / f"{ca}.pem").read_bytes())


def test_sighup_reads_the_tls_files_again_and_new_connections_get_the_renewed_certificate(
    pki: Path, text_bundle: Path, tmp_path: Path
):
    """QA: a certificate renewed on disk (cert-manager, certbot) was served only after a restart."""
    cert, key = tmp_path / "tls.pem", tmp_path / "tls.key"
    cert.write_bytes((pki / "server.pem").read_bytes())
    key.write_bytes((pki / "server.key").read_bytes())
    with ServerProcess([text_bundle], extra_args=["--tls-cert", str(cert), "--tls-key", str(key)]) as server:
        assert _call(server.target, _trusting(pki, "ca")).steps == 1
        assert _refused(server.target, _trusting(pki, "other-ca")) == grpc.StatusCode.UNAVAILABLE
        cert.write_bytes((pki / "renewed.pem").read_bytes())  # signed by the other CA
        key.write_bytes((pki / "renewed.key").read_bytes())
        server.send_signal(signal.SIGHUP)
        wait_for(lambda: any(r.get("event") == "tls_files_renewed" for r in server.log_records()))
        assert _call(server.target, _trusting(pki, "other-ca")).steps == 1
        assert _refused(server.target, _trusting(pki, "ca")) == grpc.StatusCode.UNAVAILABLE

        key.write_bytes((pki / "server.key").read_bytes())  # not the certificate's key: refused, the renewed one stays
        server.send_signal(signal.SIGHUP)
        wait_for(lambda: any(r.get("event") == "tls_files_refused" for r in server.log_records()))
        assert _call(server.target, _trusting(pki, "other-ca")).steps == 1


def test_the_container_health_probe_checks_a_mutual_tls_server(pki: Path, text_bundle: Path):
    mutual = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
              "--tls-client-ca", str(pki / "ca.pem")]
    client = ["--tls-ca", str(pki / "ca.pem"), "--tls-cert", str(pki / "client.pem"),
              "--tls-key", str(pki / "client.key")]
    with ServerProcess([text_bundle], extra_args=mutual) as server:
        probed = run_healthcheck(server.target, *client)
        assert (probed.returncode, probed.stdout.strip()) == (0, "SERVING"), probed.stderr
        named = run_healthcheck(server.target, *client, "--tls-server-name", "localhost")  # in the certificate
        assert (named.returncode, named.stdout.strip()) == (0, "SERVING"), named.stderr
        for refused in (
            run_healthcheck(server.target),  # plaintext
            run_healthcheck(server.target, "--tls-ca", str(pki / "ca.pem")),  # no client certificate
            run_healthcheck(server.target, *client, "--tls-server-name", "elsewhere.example"),  # not its name
        ):
            assert refused.returncode == 1 and refused.stderr.startswith("unhealthy: UNAVAILABLE: "), refused
            assert refused.stderr.count("\n") == 1  # one line: none of gRPC's own
        assert "a TLS server? probe it with --tls-ca CA.pem" in run_healthcheck(server.target).stderr
        uncertified = run_healthcheck(server.target, "--tls-ca", str(pki / "ca.pem")).stderr
        assert "a server that asks for a client certificate? give --tls-cert and --tls-key" in uncertified  # QA: none
        stranger = ["--tls-cert", str(pki / "stranger.pem"), "--tls-key", str(pki / "stranger.key")]
        refused = run_healthcheck(server.target, "--tls-ca", str(pki / "ca.pem"), *stranger).stderr
        assert f"the server refused the client certificate --tls-cert {pki / 'stranger.pem'}?" in refused
        unknown = run_healthcheck(server.target, *client, "--service", "nosuch")
        assert unknown.returncode == 1 and "no health status named 'nosuch'" in unknown.stderr
        for endless in ("inf", "1e10"):  # QA: taken, then "unhealthy: DEADLINE_EXCEEDED" from a healthy server
            refused = run_healthcheck(server.target, *client, "--timeout", endless)
            assert refused.returncode == 2
            assert (f"argument --timeout: must be a number of seconds above 0 and at most 3600, got {endless}"
                    in refused.stderr)
    for options, message in (
        (["--tls-cert", str(pki / "client.pem")], "--tls-cert and --tls-key go together"),
        (["--tls-ca", str(pki / "ca.key")], f"--tls-ca {pki / 'ca.key'} must hold PEM CA certificates"),
        (["--tls-cert", str(pki / "client.pem"), "--tls-key", str(pki / "stranger.key")],
         f"--tls-cert {pki / 'client.pem'} and --tls-key {pki / 'stranger.key'} must be a PEM certificate and its "
         "private key"),
        (["--tls-cert", str(pki / "client.pem"), "--tls-key", str(_encrypted_key(pki, "client"))],
         f"--tls-key {pki / 'client.encrypted.key'} is encrypted (it asks for a passphrase)"),  # QA: a traceback
        (["--timeout", "-1"], "--timeout: must be a number of seconds above 0"),
    ):
        bad = run_healthcheck("127.0.0.1:1", *options)
        assert bad.returncode == 2 and message in bad.stderr, bad
