"""The Dockerfile and compose file, checked without a Docker engine (test_ops_image.py runs a real one): the image is
built by the tested install script, runs as non-root with a gRPC health check and no toolchain, and
compose validates and wires the service to Prometheus and Grafana."""

from __future__ import annotations

import fnmatch
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
    assert "HEALTHCHECK" in final and 'CMD ["trm-healthcheck"]' in final  # at $TRM_PORT: test_image_command...
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


def _image_environment() -> dict[str, str]:
    """The runtime stage's ENV settings (its `KEY=VALUE` lines, PATH's `$PATH` left as written)."""
    runtime = stages()[-1]
    block = re.search(r"(?ms)^ENV (.+?)(?<!\\)\n", runtime).group(1)
    return dict(pair.split("=", 1) for pair in block.replace("\\\n", " ").split())


def test_image_command_is_accepted_by_the_real_server_cli() -> None:
    """The address comes from TRM_* variables (QA: the image's CMD flags won over `docker run -e TRM_PORT=...`,
    silently), and the health check probes the port they set."""
    entrypoint = json.loads(re.search(r"(?m)^ENTRYPOINT (.+)$", DOCKERFILE).group(1))
    assert entrypoint == ["trm-service", "serve"] and not re.search(r"(?m)^CMD ", stages()[-1])
    environment = _image_environment()
    config = config_from_args(build_parser().parse_args(["serve"]), environ=environment)
    assert (config.host, config.port, config.metrics_port) == ("0.0.0.0", 50051, 9090)
    moved = config_from_args(build_parser().parse_args(["serve"]), environ={**environment, "TRM_PORT": "6000"})
    assert moved.port == 6000
    assert environment["HOME"] == "/tmp"  # writable with a read-only root: ONNX Runtime's telemetry id


def test_the_build_context_leaves_out_the_venv_and_git_but_nothing_the_image_copies() -> None:
    """QA: no .dockerignore, so a legacy builder sent the 2 GB .venv of `make install` with every build."""
    ignored = [line for line in (DEPLOY.parent / ".dockerignore").read_text().splitlines()
               if line and not line.startswith("#")]
    assert {".git", ".venv"} <= set(ignored)
    copied = [path for line in re.findall(r"(?m)^COPY (?!--)(.+) \S+$", stages()[0]) for path in line.split()]
    assert not [path for path in copied for pattern in ignored if fnmatch.fnmatch(path, pattern.removeprefix("**/"))]
