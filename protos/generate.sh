#!/usr/bin/env bash
# Regenerates the Python stubs next to the .proto files. Usage: protos/generate.sh [OUT_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here}"
python -m grpc_tools.protoc -I"$here" --python_out="$out" --grpc_python_out="$out" --pyi_out="$out" \
  "$here"/trm/v1/*.proto
