#!/usr/bin/env bash
# The GPU checks of the worker, as one script for a machine with an NVIDIA GPU: profile the example
# models on cuda:0 (written under the GPU's name, e.g. models/profiles/h200.yaml), measure the
# worker's throughput against those profiles, and check and time frames decoded on the GPU (nvJPEG).
# Results go to $OUT (default ./out).
# Run: OUT=/some/dir bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
mkdir -p "$OUT"
py=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
"$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" \
  | tee "$OUT/gpu.txt"
gpu=$("$py" -c "from harpagon.runtime.worker.executor import default_hardware_name as n; print(n('cuda:0'))")
for m in resnet18 resnet50 mobilenet_v3_small mobilenet_v3_large efficientnet_b0 ssdlite320_mobilenet_v3_large; do
  "$py" -m harpagon.cli profile --model "$m" --device cuda:0 --batches 1,2,4,8,16,32,64 --repeats 30 \
    --out "$OUT/$gpu.yaml" 2>&1 | grep -v "━" | tee -a "$OUT/profile.log"
done
"$py" scripts/bench_worker.py --model resnet50 --device cuda:0 --batches 1,4,16,64 --seconds 5 --clients 4 \
  | tee "$OUT/worker.md"
# Frames decoded on the worker's device: the CUDA decode and crop tests (batched nvJPEG and roi_align against the CPU
# paths), then decode + resize time per frame on cuda:0 and, for comparison, on the CPU.
{ "$py" -m pytest -q -p no:cacheprovider -rs tests/unit/test_decode.py tests/unit/test_crops.py tests/unit/test_worker_plane.py 2>&1 \
  || echo "decode tests FAILED"; } | tee "$OUT/decode_tests.txt"
"$py" scripts/bench_decode.py --device cuda:0 --batches 1,8,32 | tee "$OUT/decode_cuda.md"
"$py" scripts/bench_decode.py --device cpu --batches 1,8 | tee "$OUT/decode_cpu.md"
# A worker on cuda:0 as an operator runs it: its health service answers SERVING, and its metrics carry the
# GPU's gauges under Triton's names, labelled by the GPU's UUID (absent on a machine without a GPU).
"$py" -m harpagon worker --device cuda:0 --host 127.0.0.1 --port 0 --metrics-port 19102 --health-port 19090 \
  > "$OUT/worker_live.log" 2>&1 &
worker=$!
trap 'kill $worker 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do "$py" -m harpagon health 127.0.0.1:19090 --timeout 1 > /dev/null 2>&1 && break; sleep 1; done
{ echo "health: $("$py" -m harpagon health 127.0.0.1:19090 2>&1)"
  sleep 3  # the GPU gauges are read every 2 s
  "$py" - <<'PY'
import urllib.request
text = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
    "http://127.0.0.1:19102/metrics", timeout=5).read().decode()
gpu = [ln for ln in text.splitlines() if ln.startswith(("nv_gpu_utilization{", "nv_gpu_memory_used_bytes{"))]
print("\n".join(gpu) or "no GPU gauges")
assert gpu and all('gpu_uuid="GPU-' in ln or 'gpu_uuid="MIG-' in ln for ln in gpu), "GPU gauges missing or unlabelled"
print("GPU gauges: ok")
PY
} 2>&1 | tee "$OUT/worker_live.txt"
kill "$worker" 2>/dev/null || true
