#!/usr/bin/env bash
# Fetch NVIDIA perf_analyzer 2.51 (it ships inside tritonclient's wheel) with the two libraries it
# needs to start on a machine without a GPU (libb64 from Debian, libcudart from PyPI), into .tools/.
# Then: .tools/perf_analyzer ARGS (a wrapper that sets LD_LIBRARY_PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.tools
py=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
mkdir -p "$dest/tc" "$dest/cuda" "$dest/b64"
"$py" -m pip install -q --no-deps --target "$dest/tc" 'tritonclient==2.51.0'
"$py" -m pip install -q --no-deps --target "$dest/cuda" 'nvidia-cuda-runtime-cu12==12.9.79'
(cd "$dest" && apt-get download libb64-0d >/dev/null 2>&1 && dpkg-deb -x libb64-0d_*.deb b64)
cat > "$dest/perf_analyzer" <<WRAP
#!/usr/bin/env bash
here=\$(cd "\$(dirname "\$0")" && pwd)
export LD_LIBRARY_PATH="\$here/b64/usr/lib/x86_64-linux-gnu:\$here/cuda/nvidia/cuda_runtime/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "\$here/tc/bin/perf_analyzer" "\$@"
WRAP
chmod +x "$dest/perf_analyzer" "$dest/tc/bin/perf_analyzer"
"$dest/perf_analyzer" --version 2>&1 | head -1
