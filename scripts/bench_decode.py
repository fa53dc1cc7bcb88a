"""Decode and resize time per frame on a device: what a worker spends on each frame it gets as bytes
(`harpagon/runtime/worker/decode.py`), by frame size, encoding and batch size, for the decode term of
a module's d(b). Frames are synthetic (gradients and noise, JPEG quality 85).

    python scripts/bench_decode.py --device cpu [--batches 1,8,32] [--repeats 5] [--input 3,224,224]
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from harpagon.runtime.wire.frames import EncodedFrame, encode_frame, synthetic_frame
from harpagon.runtime.worker.decode import decode_frames


def ms_per_frame(frames: list[EncodedFrame], shape: tuple[int, ...], device: str, pool: ThreadPoolExecutor,
                 repeats: int) -> float:
    def once() -> float:
        t0 = time.perf_counter()
        decoded = decode_frames(frames, shape, device, pool)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        assert not decoded.errors, decoded.errors
        return (time.perf_counter() - t0) * 1000.0 / len(frames)

    once()  # warm up (decoder libraries, CUDA context and kernels)
    return statistics.median(once() for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--input", default="3,224,224", help="the module's input C,H,W")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    shape = tuple(int(x) for x in args.input.split(","))
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    print(f"decode + resize to {list(shape)} on {args.device} ({name}); median of {args.repeats}, ms per frame")
    print("| frame | encoding | bytes | " + " | ".join(f"b={b}" for b in batches) + " | ms per megapixel (largest b) |")
    print("|---|---|---:|" + "---:|" * len(batches) + "---:|")
    with ThreadPoolExecutor(4, thread_name_prefix="decode") as pool:
        for h, w in ((480, 640), (720, 1280), (1080, 1920)):
            frame = synthetic_frame(h, w)
            for encoding in ("jpeg", "png", "raw"):
                one = encode_frame(frame, encoding)
                times = [ms_per_frame([one] * b, shape, args.device, pool, args.repeats) for b in batches]
                print(f"| {h}x{w} | {encoding} | {len(one.data):,} | " + " | ".join(f"{t:.2f}" for t in times)
                      + f" | {times[-1] / (h * w / 1e6):.2f} |", flush=True)


if __name__ == "__main__":
    main()
