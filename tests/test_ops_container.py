"""The Dockerfile and compose file, checked without a Docker engine (none runs here): the image is
built by the tested install script, runs as non-root with a gRPC health check and no toolchain, and
compose validates and wires the service to Prometheus and Grafana."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from trm_service.cli import build_parser, config_from_args
from trm_service.config import ServeConfig

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()
INSTALL_SCRIPT = (DEPLOY / "install-runtime.sh").read_text()


def stages() -> list[str]:
    """The Dockerfile's build stages, each from its FROM line."""
    return re.split(r"(?m)^(?=FROM )", DOCKERFILE)[1:]


def test_final_stage_is_slim_non_root_with_a_grpc_healthcheck() -> None:
    final = stages()[-1]
    assert final.startswith("FROM ${PYTHON_IMAGE} AS runtime")
    assert re.search(r"(?m)^ARG PYTHON_IMAGE=python:3\.\d+-slim", DOCKERFILE)
    assert re.search(r"(?m)^USER 10001:10001$", final)
    assert "HEALTHCHECK" in final and 'CMD ["trm-healthcheck", "127.0.0.1:50051"]' in final
    assert "COPY --from=build /opt/trm /opt/trm" in final
    for forbidden in ("apt-get", "pip install", "torch", "gcc", "build-essential"):
        assert forbidden not in final, forbidden


def test_image_installs_with_the_tested_script_and_copies_what_it_stages() -> None:
    build = stages()[0]
    assert "RUN deploy/install-runtime.sh /opt/trm /src" in build
    staged = re.search(r"-cf - (.+) \|", INSTALL_SCRIPT).group(1).split()
    copied = [path for line in re.findall(r"(?m)^COPY (?!--)(.+) \S+$", build) for path in line.split()]
    assert set(staged) <= set(copied)
    assert "trainer" not in " ".join(copied)


def test_compose_file_is_valid() -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.fail("docker-compose not found: `make install-system` installs the Debian package")
    result = subprocess.run(
        [compose, "-f", str(DEPLOY / "compose.yaml"), "config", "-q"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_compose_wires_service_prometheus_and_grafana() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"trm-service", "prometheus", "grafana"}
    server = services["trm-service"]
    assert server["build"]["dockerfile"] == "deploy/Dockerfile" and server["read_only"] is True
    assert int(server["stop_grace_period"].removesuffix("s")) > ServeConfig().grace_period
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"trm-service:{ServeConfig().metrics_port}"]
    mounted = {volume.split(":")[0] for volume in services["prometheus"]["volumes"]}
    assert {"./prometheus/prometheus.yml", "./prometheus/alerts.yml"} <= mounted


def test_image_command_is_accepted_by_the_real_server_cli() -> None:
    entrypoint = json.loads(re.search(r"(?m)^ENTRYPOINT (.+)$", DOCKERFILE).group(1))
    command = json.loads(re.search(r"(?m)^CMD (.+)$", DOCKERFILE).group(1))
    assert entrypoint == ["trm-service", "serve"]
    config = config_from_args(build_parser().parse_args(["serve", *command]), environ={})
    assert (config.host, config.port, config.metrics_port) == ("0.0.0.0", 50051, 9090)
