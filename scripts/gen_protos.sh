#!/usr/bin/env bash
# Regenerate harpagon/v1/*_pb2*.py from protos/ (needs grpcio-tools 1.81, from `pip install -e '.[test]'`);
# the output is committed and tests/unit/test_protos.py checks it is in step.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
"$py" -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. protos/harpagon/v1/worker.proto protos/harpagon/v1/controller.proto
