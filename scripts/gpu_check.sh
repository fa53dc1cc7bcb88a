#!/usr/bin/env bash
# The GPU checks of the worker, as one script for a machine with an NVIDIA GPU: profile the example
# models on cuda:0 (written under the GPU's name, e.g. models/profiles/h200.yaml) and measure the
# worker's throughput against those profiles. Results go to $OUT (default ./out).
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
