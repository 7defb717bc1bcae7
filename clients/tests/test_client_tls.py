"""TLS and mutual TLS against real servers started with --tls-cert/--tls-key (and --tls-client-ca).

Certificates come from a throwaway CA made with the openssl command. The server's certificate names
only "trm.test", so reaching it at 127.0.0.1 needs ``server_name`` — which the tests use to show that
the name is really checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mcp import ClientSession, stdio_client
from mcp.shared.exceptions import MCPError
from sdk_test_support import TEXT_MODEL
from test_client_examples import EXAMPLES, VOICE, run_example
from test_client_mcp import mcp_server
from trm_client import NO_RETRY, AsyncTRMClient, RetryPolicy, TLSConfig, TRMClient, Unavailable

from trm_service.testing import ServerProcess

SERVER_NAME = "trm.test"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _issue(pki: Path, name: str, san: str, days: str = "2", ca: str = "ca") -> None:
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={name}",
        cwd=pki,
    )
    (pki / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.pem",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{name}.pem",
        "-days",
        days,
        "-extfile",
        f"{name}.ext",
        cwd=pki,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for trm.test and a client certificate."""
    pki = tmp_path_factory.mktemp("pki")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=trm test CA",
        cwd=pki,
    )
    _issue(pki, "server", f"DNS:{SERVER_NAME}")
    _issue(pki, "client", "DNS:client.trm.test")
    return pki


@pytest.fixture(scope="module")
def other_ca(pki: Path) -> Path:
    """A second CA in `pki` (otherca.pem), a client certificate it signed (by_other_ca.pem) and a server certificate
    of `ca.pem` for 127.0.0.1 (at_ip.pem)."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             "otherca.key", "-out", "otherca.pem", "-days", "2", "-subj", "/CN=another CA", cwd=pki)
    _issue(pki, "by_other_ca", "DNS:client.trm.test", ca="otherca")
    _issue(pki, "at_ip", "IP:127.0.0.1,DNS:localhost")
    return pki


@pytest.fixture(scope="module")
def tls_server(bundles, pki):
    args = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")]
    with ServerProcess([bundles["text"]], extra_args=args) as process:
        yield process


@pytest.fixture(scope="module")
def mtls_server(bundles, pki):
    args = [
        "--tls-cert",
        str(pki / "server.pem"),
        "--tls-key",
        str(pki / "server.key"),
        "--tls-client-ca",
        str(pki / "ca.pem"),
    ]
    with ServerProcess([bundles["text"]], extra_args=args) as process:
        yield process


def test_tls_client_verifies_the_server_with_the_ca(tls_server, pki):
    tls = TLSConfig.from_files(ca=pki / "ca.pem", server_name=SERVER_NAME)
    with TRMClient(tls_server.target, tls=tls) as client:
        assert [m.name for m in client.models()] == [TEXT_MODEL]
        assert client.reason(TEXT_MODEL, "play jazz").steps >= 1


def test_the_server_certificate_name_is_checked(tls_server, pki):
    wrong_name = TLSConfig.from_files(ca=pki / "ca.pem")  # the certificate does not name 127.0.0.1
    with TRMClient(tls_server.target, tls=wrong_name, retry=NO_RETRY) as client, pytest.raises(Unavailable):
        client.models()


def test_plaintext_client_cannot_talk_to_a_tls_server(tls_server):
    with TRMClient(tls_server.target, retry=NO_RETRY) as client, pytest.raises(Unavailable):
        client.models()


async def test_mutual_tls_with_a_client_certificate(mtls_server, pki):
    tls = TLSConfig.from_files(
        pki / "ca.pem", pki / "client.pem", pki / "client.key", server_name=SERVER_NAME
    )
    async with AsyncTRMClient(mtls_server.target, tls=tls) as client:
        assert (await client.reason(TEXT_MODEL, "set an alarm")).model == TEXT_MODEL


def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_server, pki):
    tls = TLSConfig.from_files(ca=pki / "ca.pem", server_name=SERVER_NAME)
    with TRMClient(mtls_server.target, tls=tls, retry=NO_RETRY) as client, pytest.raises(Unavailable):
        client.models()


def test_cli_tls_options(mtls_server, pki):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "trm_client.cli",
            "--target",
            mtls_server.target,
            "--tls-ca",
            str(pki / "ca.pem"),
            "--tls-cert",
            str(pki / "client.pem"),
            "--tls-key",
            str(pki / "client.key"),
            "--tls-server-name",
            SERVER_NAME,
            "models",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert [m["name"] for m in json.loads(done.stdout)] == [TEXT_MODEL]


def _cli(target: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trm_client.cli", "--target", target, "--retries", "1", *options,
                           "models"], capture_output=True, text=True, timeout=120, check=False)


def test_cli_says_which_tls_option_a_closed_connection_asks_for(tls_server, mtls_server, pki):
    """gRPC says only "Socket closed" to a plaintext client of a TLS server, and to a client without the
    certificate a mutual TLS server asks for."""
    plaintext = _cli(tls_server.target)
    assert plaintext.returncode == 1
    assert "Socket closed; a TLS server? connect with --tls-ca CA.pem" in plaintext.stderr
    no_certificate = _cli(mtls_server.target, "--tls-ca", str(pki / "ca.pem"), "--tls-server-name", SERVER_NAME)
    assert no_certificate.returncode == 1
    assert "(mutual TLS)? give --tls-cert and --tls-key" in no_certificate.stderr


def test_cli_says_which_tls_option_a_refused_certificate_asks_for_without_retrying(tls_server, pki):
    """QA: both ended in gRPC's words alone, after six attempts (5-6 s) that met the same certificate."""
    untrusted = _cli(tls_server.target, "--tls", "--retries", "6")
    assert untrusted.returncode == 1
    assert ("CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate: OK; the server's certificate is not "
            "signed by a CA this client trusts (gRPC's default roots): give the CA that signed it with --tls-ca "
            "(request_id=") in untrusted.stderr
    wrong_name = _cli(tls_server.target, "--tls-ca", str(pki / "ca.pem"), "--tls-server-name", "other.test")
    assert wrong_name.returncode == 1
    assert ("Hostname Verification Check failed.; the server's certificate does not name other.test: give a name "
            "it holds with --tls-server-name") in wrong_name.stderr
    retried = []
    policy = RetryPolicy(initial_backoff_s=0.01, on_retry=retried.append)
    wrong_name_sdk = TLSConfig.from_files(ca=pki / "ca.pem")  # the certificate does not name 127.0.0.1
    with TRMClient(tls_server.target, tls=wrong_name_sdk, retry=policy) as client, pytest.raises(Unavailable) as caught:
        client.models()
    assert caught.value.certificate_refused and retried == []


def test_cli_says_a_tls_client_of_a_plaintext_server_should_drop_its_tls_flags(server, pki):
    tls_client = _cli(server.target, "--tls-ca", str(pki / "ca.pem"), "--timeout", "10")
    assert tls_client.returncode == 1
    assert "; a server without TLS? connect without the TLS flags (--tls, --tls-ca" in tls_client.stderr


def test_cli_refuses_a_key_that_is_not_the_certificates(mtls_server, pki):
    mismatched = _cli(mtls_server.target, "--tls-ca", str(pki / "ca.pem"), "--tls-cert", str(pki / "client.pem"),
                      "--tls-key", str(pki / "server.key"))
    assert mismatched.returncode == 1 and "UNAVAILABLE" not in mismatched.stderr  # refused before any call
    assert (f"--tls-cert {pki / 'client.pem'} and --tls-key {pki / 'server.key'} must be a certificate and its "
            "unencrypted private key: KEY_VALUES_MISMATCH") in mismatched.stderr


def test_the_sdk_refuses_a_key_that_is_not_the_certificates(pki):
    """QA: only the CLI checked the pair; an SDK caller's every call failed with "Failed to create security
    handshaker"."""
    with pytest.raises(ValueError, match="certificate_chain and private_key must be a certificate and its "
                       "unencrypted private key: KEY_VALUES_MISMATCH"):
        TLSConfig.from_files(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "server.key")
    assert TLSConfig.from_files(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key").private_key


def test_cli_says_the_servers_certificate_has_expired_not_that_its_ca_is_untrusted(bundles, pki):
    """BoringSSL words an expired certificate as CERTIFICATE_VERIFY_FAILED too: the CLI told its user to give the
    CA they had given."""
    _issue(pki, "expired", f"DNS:{SERVER_NAME}", days="-1")  # valid from now until a day ago
    args = ["--tls-cert", str(pki / "expired.pem"), "--tls-key", str(pki / "expired.key")]
    with ServerProcess([bundles["text"]], extra_args=args) as expired_server:
        refused = _cli(expired_server.target, "--tls-ca", str(pki / "ca.pem"), "--tls-server-name", SERVER_NAME)
    assert refused.returncode == 1
    assert ("certificate has expired: OK; the server's certificate has expired: the server needs a renewed one "
            "(its --tls-cert)") in refused.stderr
    assert "not signed by a CA" not in refused.stderr


def test_cli_says_the_server_refused_the_client_certificate_given(mtls_server, other_ca):
    """QA: a client certificate of another CA got gRPC's "Socket closed" alone, as if none had been given."""
    refused = _cli(mtls_server.target, "--tls-ca", str(other_ca / "ca.pem"), "--tls-server-name", SERVER_NAME,
                   "--tls-cert", str(other_ca / "by_other_ca.pem"), "--tls-key", str(other_ca / "by_other_ca.key"))
    assert refused.returncode == 1
    assert (f"Socket closed; the server refused the handshake, likely over the client certificate given with "
            f"--tls-cert {other_ca / 'by_other_ca.pem'}: it must be signed by the CA the server trusts (its "
            "--tls-client-ca), valid now, allowed for client auth, and come with its intermediates") in refused.stderr


def test_the_installed_cli_prints_one_line_for_an_untrusted_server_not_grpcs_own_log(tls_server, other_ca):
    """QA: gRPC core's "Handshake failed" log lines came before trm-client's one line."""
    program = Path(sys.executable).parent / "trm-client"
    environment = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    done = subprocess.run([str(program), "--target", tls_server.target, "--tls-ca", str(other_ca / "otherca.pem"),
                           "--tls-server-name", SERVER_NAME, "models"], capture_output=True, text=True, timeout=120,
                          env=environment, check=False)
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("trm-client: UNAVAILABLE: ")


async def test_trm_mcp_says_which_tls_option_a_closed_connection_asks_for(tls_server):
    """QA: only trm-client named the TLS flags; trm-mcp's tools/list said gRPC's "Socket closed" alone."""
    parameters = mcp_server(tls_server.target)
    parameters.args += ["--retries", "1"]
    async with stdio_client(parameters) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        with pytest.raises(MCPError) as caught:
            await session.list_tools()
        called = await session.call_tool("trm_intent_test", {"text": "set an alarm"})
    assert "Socket closed; a TLS server? connect with --tls-ca CA.pem" in caught.value.message
    assert called.is_error
    assert "Socket closed; a TLS server? connect with --tls-ca CA.pem" in called.structured_content["error"]["message"]


@pytest.mark.parametrize("script", [EXAMPLES / "agent_loop.py", VOICE / "pipeline.py"])
def test_examples_say_a_tls_client_of_a_plaintext_server_should_drop_its_tls_flags(server, pki, script):
    done = run_example(script, "--target", server.target, "--tls-ca", str(pki / "ca.pem"), "--retries", "1",
                       stdin="set an alarm\n")
    assert done.returncode == 1
    assert "; a server without TLS? connect without the TLS flags (--tls, --tls-ca" in done.stderr


def test_a_tls_client_of_a_plaintext_server_fails_without_retrying(server, pki):
    """QA: BoringSSL's WRONG_VERSION_NUMBER was retried for 5-6 s, as if the server were restarting."""
    retried = []
    policy = RetryPolicy(initial_backoff_s=0.01, on_retry=retried.append)
    tls = TLSConfig.from_files(ca=pki / "ca.pem")
    with TRMClient(server.target, tls=tls, retry=policy) as client, pytest.raises(Unavailable) as caught:
        client.models()
    assert caught.value.server_speaks_plaintext and retried == []


def test_replicas_at_one_ip_are_verified_against_that_ip(bundles, other_ca):
    """QA: `--target 127.0.0.1:P1,127.0.0.1:P2 --tls-ca CA` failed "Hostname Verification Check failed", though
    each replica's certificate names 127.0.0.1."""
    args = ["--tls-cert", str(other_ca / "at_ip.pem"), "--tls-key", str(other_ca / "at_ip.key")]
    with ServerProcess([bundles["text"]], extra_args=args) as first, ServerProcess([bundles["text"]],
                                                                                   extra_args=args) as second:
        tls = TLSConfig.from_files(ca=other_ca / "ca.pem")
        with TRMClient(f"{first.target},{second.target}", tls=tls, retry=NO_RETRY) as client:
            assert [m.name for m in client.models()] == [TEXT_MODEL]
        port = first.target.rpartition(":")[2]
        with pytest.raises(ValueError, match=r"replicas at different hosts .* need server_name"):
            TRMClient(f"127.0.0.1:{port},127.0.0.2:{port}", tls=tls)
        refused = _cli(f"127.0.0.1:{port},127.0.0.2:{port}", "--tls-ca", str(other_ca / "ca.pem"))
    assert refused.returncode == 1 and "UNAVAILABLE" not in refused.stderr
    assert "--tls-server-name" in refused.stderr


def test_an_encrypted_client_key_is_named_as_such(pki):
    """QA: the client said only "[SSL] PEM lib (_ssl.c:3926)" of a key that asks for a passphrase."""
    _openssl("pkey", "-in", "client.key", "-aes256", "-passout", "pass:secret", "-out", "encrypted.key", cwd=pki)
    key = pki / "encrypted.key"
    with pytest.raises(ValueError, match="private_key is encrypted"):
        TLSConfig.from_files(ca=pki / "ca.pem", cert=pki / "client.pem", key=key)
    refused = _cli("127.0.0.1:1", "--tls-ca", str(pki / "ca.pem"), "--tls-cert", str(pki / "client.pem"),
                   "--tls-key", str(key))
    assert refused.returncode == 1
    assert (f"--tls-key {key} is encrypted (it asks for a passphrase), and gRPC reads only unencrypted keys: write "
            f"one with `openssl pkey -in {key} -out KEY.pem`") in refused.stderr


def test_the_key_pair_check_needs_no_temporary_folder(pki, monkeypatch):
    """QA: in a read-only container the check crashed "No usable temporary directory found" (and it wrote the
    private key to disk)."""
    monkeypatch.setattr(tempfile, "tempdir", str(pki / "nonexistent"))  # as where no folder is writable
    with pytest.raises(ValueError, match="KEY_VALUES_MISMATCH"):
        TLSConfig.from_files(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "server.key")
    assert TLSConfig.from_files(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key").private_key


def test_the_key_pair_check_without_memfd_uses_a_temporary_folder_or_is_skipped(pki, monkeypatch):
    """Where os.memfd_create is missing (macOS, Windows), the check reads a temporary folder; without one too, it is
    skipped and gRPC's handshake fails instead."""
    monkeypatch.delattr(os, "memfd_create", raising=False)
    with pytest.raises(ValueError, match="KEY_VALUES_MISMATCH"):
        TLSConfig.from_files(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "server.key")
    monkeypatch.setattr(tempfile, "tempdir", str(pki / "nonexistent"))
    assert TLSConfig.from_files(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "server.key").private_key
