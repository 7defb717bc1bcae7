"""Target resolution: one target passes through, several replicas become one round-robin target."""

import pytest
from sdk_test_support import TEXT_MODEL
from trm_client import TRMClient
from trm_client.channel import TLSConfig, channel_options, loopback_options, resolve_target


def test_single_target_passes_through_unchanged():
    assert resolve_target("localhost:50051") == "localhost:50051"
    assert resolve_target("dns:///trm.default.svc:50051") == "dns:///trm.default.svc:50051"


def test_ipv4_replicas_become_one_ipv4_target():
    assert resolve_target(["127.0.0.1:1", "127.0.0.1:2"]) == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert resolve_target("10.0.0.1:5, 10.0.0.2:5") == "ipv4:10.0.0.1:5,10.0.0.2:5"


def test_ipv6_replicas_become_one_ipv6_target():
    assert resolve_target(["[::1]:7", "[::1]:8"]) == "ipv6:[::1]:7,[::1]:8"


@pytest.mark.parametrize(
    "endpoints",
    [["trm-a:1", "trm-b:1"], ["127.0.0.1:1", "[::1]:2"], ["127.0.0.1", "127.0.0.2:1"], ["::1:7", "::1:8"]],
)
def test_several_endpoints_must_be_ip_literals_of_one_family(endpoints):
    with pytest.raises(ValueError, match="dns:///"):
        resolve_target(endpoints)


def test_missing_target_reads_the_environment(monkeypatch):
    monkeypatch.setenv("TRM_TARGET", "127.0.0.1:9,127.0.0.1:10")
    assert resolve_target(None) == "ipv4:127.0.0.1:9,127.0.0.1:10"
    monkeypatch.delenv("TRM_TARGET")
    assert resolve_target(None) == "127.0.0.1:50051"


def test_mutual_tls_needs_both_certificate_and_key():
    with pytest.raises(ValueError, match="both"):
        TLSConfig(certificate_chain=b"cert")


def test_a_callers_channel_option_replaces_the_sdks_of_the_same_key() -> None:
    """gRPC core reads the first of two options of one key: a caller's keepalive of 5 minutes (for a server older
    than 2026-12-07, which cuts a client pinging every 10 s) was ignored, and its calls were still cut at 30 s."""
    options = channel_options(None, [("grpc.keepalive_time_ms", 300_000), ("grpc.primary_user_agent", "agent/1")])
    keys = [key for key, _ in options]
    assert len(keys) == len(set(keys))
    assert dict(options)["grpc.keepalive_time_ms"] == 300_000 and dict(options)["grpc.primary_user_agent"] == "agent/1"
    assert dict(options)["grpc.keepalive_timeout_ms"] == 5_000  # the SDK's others stay


@pytest.mark.parametrize("target", ["127.0.0.1:1", "localhost:1", "[::1]:1", "127.0.0.2:1",
                                    "ipv4:127.0.0.1:1,127.0.0.1:2", "ipv6:[::1]:7,[::1]:8", "dns:///localhost:1",
                                    "dns://8.8.8.8/localhost:1"])
def test_a_target_on_this_machine_is_reached_without_a_proxy(target: str) -> None:
    assert loopback_options(target) == [("grpc.enable_http_proxy", 0)]


@pytest.mark.parametrize("target", ["10.0.0.1:1", "trm.example.com:443", "ipv4:127.0.0.1:1,10.0.0.1:2",
                                    "dns:///trm.default.svc:50051", "unix:/tmp/trm.sock"])
def test_a_target_elsewhere_keeps_the_environments_proxy(target: str) -> None:
    assert loopback_options(target) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_calls_to_a_local_server_pass_by_a_proxy_the_environment_names(server, monkeypatch, host: str) -> None:
    """QA: with http_proxy set (as on many company machines) and no no_proxy, every call to a server on this machine
    went to the proxy, which cannot reach the caller's loopback: UNAVAILABLE "ipv4:127.0.0.1:9 ... refused"."""
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(key, "http://127.0.0.1:9")  # a proxy that refuses every connection
    for key in ("no_proxy", "NO_PROXY", "no_grpc_proxy"):
        monkeypatch.delenv(key, raising=False)
    with TRMClient(f"{host}:{server.port}", timeout_s=10.0) as client:
        assert client.reason(TEXT_MODEL, "book a table").prediction
