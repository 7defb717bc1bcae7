#!/usr/bin/env bash
# Installs the serving runtime into a Python virtual environment: the trm-proto stubs, the
# trm_service package with its default bundles, and trm-healthcheck (a gRPC health probe).
# No trainer, no torch, no compilers. The Dockerfile runs exactly this, and so does
# tests/test_ops_runtime_install.py in a fresh venv, so the image's install is tested without Docker.
#
# Usage: deploy/install-runtime.sh VENV_DIR [SOURCE_DIR]
#   VENV_DIR    an existing virtual environment, or a path where one is created
#   SOURCE_DIR  the repository root (default: the parent of this script's folder)
set -euo pipefail

venv="${1:?usage: install-runtime.sh VENV_DIR [SOURCE_DIR]}"
src="$(cd "${2:-$(dirname "$0")/..}" && pwd)"
python_bin="${PYTHON:-python3}"

[ -x "$venv/bin/python" ] || "$python_bin" -m venv "$venv"
venv="$(cd "$venv" && pwd)"

# Stage only what the runtime image holds, so the trainer package never gets into site-packages.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
tar -C "$src" --exclude='*.egg-info' --exclude='__pycache__' --exclude='build' \
  -cf - pyproject.toml README.md protos trm_bundle trm_service | tar -C "$stage" -xf -

PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install --quiet -c "$src/constraints.txt" "$stage/protos" "$stage"
# The package's trm-train script would only fail here, with the trainer left out.
rm -f "$venv/bin/trm-train"

# The container HEALTHCHECK: a console script bound to this venv's interpreter.
{ echo "#!$venv/bin/python"; tail -n +2 "$src/deploy/healthcheck.py"; } > "$venv/bin/trm-healthcheck"
chmod 0755 "$venv/bin/trm-healthcheck"

# Serving must never pull in torch (directly or through a dependency).
if "$venv/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"; then
  echo "install-runtime.sh: torch ended up in the runtime environment" >&2
  exit 1
fi
echo "runtime installed in $venv"
