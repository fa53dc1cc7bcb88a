#!/usr/bin/env bash
# Regenerate harpagon/v1/*_pb2*.py from protos/ (needs grpcio-tools; the output is committed).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. protos/harpagon/v1/worker.proto
