"""What cutting crops costs a detector's worker: one real detector (torch, on `--device`) run with
and without crops edges, side by side in alternating rounds on the same inputs, so that machine
noise falls on both alike. Prints each setting's batch time (P50, P90) and the ratio, and the crop
time alone (the difference), per crop.

    python scripts/bench_crops.py [--device cpu] [--batch 2] [--crops 8] [--rounds 10] [--runs 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from harpagon.runtime.wire.modules import CropEdge, ModuleSpec
from harpagon.runtime.worker.executor import TorchExecutor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="ssdlite320_mobilenet_v3_large")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--input", type=int, default=320, help="input side (pixels)")
    ap.add_argument("--crop", type=int, default=224, help="crop side (pixels): the child's input")
    ap.add_argument("--crops", type=int, default=8, help="crops per image, over two edges")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5, help="batches per setting and round")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    ex = TorchExecutor(args.device, threads=args.threads)
    shape = (3, args.input, args.input)
    crop = (3, args.crop, args.crop)
    half = args.crops // 2
    edges = (CropEdge("a", crop, (), 0.0, half), CropEdge("b", crop, (), 0.0, args.crops - half))
    runners = {"no crops": ex.load(ModuleSpec("plain@b", args.model, args.batch, shape)),
               f"{args.crops} crops": ex.load(ModuleSpec("crops@b", args.model, args.batch, shape, crops=edges))}
    x = np.random.default_rng(0).integers(0, 255, (args.batch, *shape), dtype=np.uint8)
    times: dict[str, list[float]] = {k: [] for k in runners}
    cut = 0
    for _ in range(args.rounds):
        for name, run in runners.items():
            for _ in range(args.runs):
                t0 = time.perf_counter()
                out = run(x)
                times[name].append((time.perf_counter() - t0) * 1000)
                cut = max(cut, sum(int(c.counts.sum()) for c in out.crops.values()))
    print(f"{args.model} on {args.device}, batch {args.batch}, input {list(shape)}, crops {list(crop)}; "
          f"{args.rounds} alternating rounds of {args.runs} batches")
    base = np.percentile(times["no crops"], 50)
    for name, t in times.items():
        p50, p90 = np.percentile(t, 50), np.percentile(t, 90)
        print(f"  {name:>10}: P50 {p50:7.1f} ms  P90 {p90:7.1f} ms  ({p50 / base:.3f}x)")
    extra = np.percentile(times[f"{args.crops} crops"], 50) - base
    print(f"  {cut} crops a batch cost {extra:.1f} ms at P50, {extra / max(cut, 1):.2f} ms a crop")


if __name__ == "__main__":
    main()
