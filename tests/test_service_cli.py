"""`trm-service serve` configuration: flags, TRM_* variables, and errors a person can fix."""

from __future__ import annotations

import importlib.metadata
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from trm_service.cli import build_parser, config_from_args
from trm_service.config import DEFAULT_MODELS_DIR, ConfigError, ServeConfig
from trm_service.cpu_affinity import compute_cpu_count
from trm_service.observability.metrics import serve_metrics
from trm_service.server import load_options
from trm_service.testing import ServerProcess


def _config(argv: list[str], environ: dict[str, str] | None = None) -> ServeConfig:
    return config_from_args(build_parser().parse_args(["serve", *argv]), environ or {})


def test_defaults_listen_on_localhost_50051_with_metrics_on_their_own_port():
    config = _config([])
    assert (config.host, config.port, config.metrics_port) == ("127.0.0.1", 50051, 9090)
    assert config.model_directories() == [DEFAULT_MODELS_DIR]
    assert (config.max_batch_size, config.max_queue, config.workers) == (64, 256, 1)


@pytest.mark.parametrize("command", ["trm-service", "trm-train"])
def test_every_command_tells_its_version(command: str):
    shown = subprocess.run([str(Path(sys.executable).parent / command), "--version"], capture_output=True,
                           text=True, timeout=60)
    assert (shown.returncode, shown.stdout) == (0, f"{command} {importlib.metadata.version('trm-coprocessor')}\n")


def test_serve_help_names_the_signals_it_answers(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "SIGHUP reloads the model folders" in help_text
    assert "SIGTERM or SIGINT (Ctrl-C) drains" in help_text


def test_environment_variables_apply_and_flags_win_over_them(tmp_path: Path):
    a, b, c, d = (tmp_path / name for name in "abcd")
    for folder in (a, b, c, d):
        folder.mkdir()
    environ = {
        "TRM_PORT": "6000", "TRM_METRICS_PORT": "6001", "TRM_MAX_BATCH_SIZE": "8", "TRM_NO_DEFAULT_MODELS": "true",
        "TRM_MODELS_DIR": f"{a}:{b}", "TRM_LOG_INPUTS": "0", "TRM_GRACE_PERIOD": "2.5",
    }
    config = _config(["--port", "7000"], environ)
    assert (config.port, config.metrics_port, config.max_batch_size) == (7000, 6001, 8)
    assert config.model_directories() == [a, b]
    assert config.log_inputs is False and config.grace_period == 2.5
    flagged = _config(["--models-dir", str(c), "--models-dir", str(d), "--fp32"], environ)
    assert flagged.models_dirs == (c, d) and flagged.fp32


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {"TRM_PORT": "http"}, "TRM_PORT='http' is not valid"),
        ([], {"TRM_FP32": "maybe"}, "TRM_FP32='maybe' is not valid"),
        ([], {"TRM_WORKERS": "0"}, "TRM_WORKERS='0' is not valid: --workers must be at least 1, got 0"),  # QA: named
        ([], {"TRM_MAX_QUEUE": "-1"}, "TRM_MAX_QUEUE='-1' is not valid: --max-queue must be at least 0"),  # the flag
        ([], {"TRM_MODELS_DIR": "/nonexistent/m"}, "TRM_MODELS_DIR='/nonexistent/m' is not valid: --models-dir"),
        (["--host", ""], {}, "--host must name an address to listen on: 127.0.0.1 for this machine only"),  # QA: it
        ([], {"TRM_HOST": " "}, "TRM_HOST=' ' is not valid: --host must name an address"),  # failed after loading
        (["--port", "70000"], {}, "--port must be 0..65535"),
        (["--max-batch-size", "0"], {}, "--max-batch-size must be at least 1"),
        (["--intra-op-threads", "-1"], {}, "--intra-op-threads must be at least 0"),
        (["--tls-cert", "cert.pem"], {}, "--tls-cert and --tls-key go together"),
        (["--tls-cert", "a", "--tls-key", "b"], {}, "--tls-cert a: no such file"),
        (["--tls-cert", "/", "--tls-key", "b"], {}, "--tls-cert /: a folder, not a PEM file"),  # QA: "no such file"
        (["--metrics-host", " "], {}, "--metrics-host must name an address to listen on"),
        (["--log-level", "loud"], {}, "--log-level must be debug, info, warning or error"),
        (["--grace-period", "-1"], {}, "--grace-period must be a number of seconds, not negative, got -1.0"),
        (["--drain-delay", "nan"], {}, "--drain-delay must be a number of seconds, not negative, got nan"),
        (["--max-message-bytes", "99999999999"], {}, "--max-message-bytes must be at most 2147483647"),
        (["--workers", "100000"], {}, "--workers must be at most 64"),
        (["--intra-op-threads", "1000000"], {}, "--intra-op-threads must be at most 256"),
        (["--max-time-budget-ms", "5000000000"], {}, "--max-time-budget-ms must be at most 4294967295"),
        (["--max-pending-calls", "0"], {}, "--max-pending-calls must be at least 1"),
        ([], {"TRM_MAX_CONNECTIONS": "3000000000"}, "--max-connections must be at most 2147483647"),
        (["--max-connection-age", "-5"], {}, "--max-connection-age must be a number of seconds, not negative"),
        (["--max-connection-age", "3e6"], {}, "--max-connection-age must be 0 (no limit) or 1 to 2147483 seconds"),
        (["--max-connection-age", "0.0001"], {}, "--max-connection-age must be 0 (no limit) or 1 to 2147483"),
        (["--models-dir", "/nonexistent/models"], {}, "--models-dir /nonexistent/models: no such folder"),
        (["--ready-file", "/nonexistent/ready.json"], {}, "--ready-file /nonexistent/ready.json: its folder does"),
    ],
)
def test_bad_settings_are_refused_with_the_setting_named(argv, environ, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _config(argv, environ)


def test_the_command_exits_2_with_the_message_on_a_bad_flag():
    run = subprocess.run(
        [sys.executable, "-m", "trm_service", "serve", "--tls-client-ca", "ca.pem"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 2
    assert "--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key" in run.stderr


def test_files_that_are_not_pem_are_named_as_such_not_taken_for_a_busy_port(tmp_path: Path, text_bundle: Path):
    """... and before any bundle loads, so that a typo does not cost a load of every model."""
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("not a certificate\n")
    run = subprocess.run(
        [sys.executable, "-m", "trm_service", "serve", "--no-default-models", "--port", "0", "--metrics-port", "0",
         "--models-dir", str(text_bundle), "--tls-cert", str(tmp_path / "cert.pem"),
         "--tls-key", str(tmp_path / "key.pem")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 2
    assert f"--tls-cert {tmp_path / 'cert.pem'} and --tls-key {tmp_path / 'key.pem'} must be a PEM" in run.stdout
    assert "port is in use" not in run.stdout
    assert "bundle_loaded" not in run.stdout


def test_an_encrypted_key_is_named_as_such_at_once_without_a_passphrase_prompt(tmp_path: Path, text_bundle: Path):
    """gRPC reads only unencrypted keys: OpenSSL had prompted on the terminal, and with the passphrase typed the
    server loaded every model, then failed as if the port were in use."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-passout", "pass:secret", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2",
                    "-subj", "/CN=127.0.0.1"], cwd=tmp_path, check=True, capture_output=True)
    run = subprocess.run(
        [sys.executable, "-m", "trm_service", "serve", "--no-default-models", "--port", "0", "--metrics-port", "0",
         "--models-dir", str(text_bundle), "--tls-cert", str(tmp_path / "cert.pem"),
         "--tls-key", str(tmp_path / "key.pem")],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 2
    assert f"--tls-key {tmp_path / 'key.pem'} is encrypted" in run.stdout
    assert "pass phrase" not in run.stderr.lower() and "bundle_loaded" not in run.stdout


def test_a_port_in_use_is_reported_instead_of_shared(text_bundle: Path):
    with ServerProcess([text_bundle]) as first:
        second = ServerProcess([text_bundle], port=first.port)
        with pytest.raises(RuntimeError, match=re.escape(f"cannot listen on 127.0.0.1:{first.port}")):
            second.start()


def test_a_metrics_port_in_use_is_reported_with_the_flag_to_change(text_bundle: Path):
    with ServerProcess([text_bundle]) as first:
        second = ServerProcess([text_bundle], metrics_port=first.metrics_port)
        with pytest.raises(RuntimeError, match=re.escape(f"cannot serve metrics on 127.0.0.1:{first.metrics_port}")):
            second.start()
        assert "choose another --metrics-port" in second.logs() and "Traceback" not in second.logs()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_a_wildcard_host_serves_grpc_and_metrics_on_ipv4_and_ipv6(text_bundle: Path):
    """--host 0.0.0.0 is every interface for both listeners (an IPv6-only cluster scrapes /metrics over IPv6)."""
    with ServerProcess([text_bundle], extra_args=["--host", "0.0.0.0"]) as server:
        for host in ("127.0.0.1", "[::1]"):
            with urllib.request.urlopen(f"http://{host}:{server.metrics_port}/metrics", timeout=10) as scraped:
                assert "trm_model_info{" in scraped.read().decode()
            with grpc.insecure_channel(f"{host}:{server.port}") as channel:
                grpc.channel_ready_future(channel).result(timeout=10)


def test_metrics_listen_on_their_own_host_where_one_is_given(text_bundle: Path):
    """/metrics is plaintext HTTP even beside a TLS port: an operator keeps it on loopback (or a private network)
    while gRPC listens on every interface."""
    with ServerProcess([text_bundle], extra_args=["--host", "0.0.0.0", "--metrics-host", "127.0.0.2"]) as server:
        with urllib.request.urlopen(f"http://127.0.0.2:{server.metrics_port}/metrics", timeout=10) as scraped:
            assert "trm_model_info{" in scraped.read().decode()
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10)
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=10)


@pytest.mark.parametrize("host", ["10.9.8.7", "no-such-host.invalid"])
def test_a_metrics_host_not_of_this_machine_is_named_not_taken_for_a_busy_port(host: str):
    """QA: "choose another --metrics-port" for an address this machine does not have."""
    with pytest.raises(ConfigError, match=re.escape("choose another --metrics-host (or --host): an address of this")):
        serve_metrics(host, 0, CollectorRegistry())


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_an_ipv6_host_in_brackets_serves_metrics_too():
    """gRPC takes `[::1]`, as URLs write it; the metrics server could not resolve it, and the error blamed the port."""
    host = _config(["--host", "[::1]"], {}).host
    assert host == _config([], {"TRM_HOST": "[::1]"}).host == "::1"
    port = serve_metrics(host, 0, CollectorRegistry())
    with urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=10) as scraped:
        assert scraped.status == 200


def test_sessions_get_one_thread_and_heavy_steps_every_cpu_unless_a_count_is_given():
    chosen = load_options(_config([]))
    assert (chosen.session.intra_op_threads, chosen.heavy_step_threads) == (1, compute_cpu_count())
    fixed = load_options(_config(["--intra-op-threads", "3"]))
    assert (fixed.session.intra_op_threads, fixed.heavy_step_threads) == (3, 3)
