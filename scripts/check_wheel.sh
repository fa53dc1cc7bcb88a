#!/usr/bin/env bash
# What a user installs, checked as a user runs it: build the wheel, install it (the base install, no
# extras) into a fresh environment in a folder outside the source tree, and run it from there:
# --version, the packaged examples, a plan of one by name, and a short demo. Torch must not be there.
# Used by .ci/run; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" -m pip wheel -q --no-deps . -w "$work/dist"
"$py" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$work"/dist/harpagon-*.whl
cd "$work"  # nothing of the source tree is reachable from here
if "$work/venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "check_wheel: the base install brought torch" >&2; exit 1
fi
"$work/venv/bin/harpagon" --version
"$work/venv/bin/harpagon" examples
"$work/venv/bin/harpagon" plan multi
"$work/venv/bin/python" - <<'PY'
import sys
import harpagon.cli.demo, harpagon.runtime.serve  # noqa: F401  (what the demo loads)
heavy = sorted(m for m in ("torch", "torchvision", "av", "scipy", "matplotlib") if m in sys.modules)
sys.exit(f"check_wheel: the demo imports {heavy}" if heavy else 0)
PY
# A short demo: 1 means it served but an app missed the plan's promise (a slow or busy host), which
# is not a packaging fault; anything else is.
rc=0
timeout 300 "$work/venv/bin/harpagon" demo --seconds 5 || rc=$?
if [ "$rc" -eq 1 ]; then
  echo "check_wheel: the demo ran but missed a promise on this host (exit 1); the install works"
elif [ "$rc" -ne 0 ]; then
  echo "check_wheel: the demo failed (exit $rc)" >&2; exit "$rc"
fi
echo "check_wheel: the wheel installs and runs without the source tree or torch"
