"""Big messages beside small frames: what a client sending big ModelInfer requests back to back costs
another client that streams ordinary frames at a steady rate.

Starts `harpagon serve`'s cluster in this process (one app on EMULATED workers, the config's frame
shape), a small-frame sender (its own process, a gRPC deadline of the app's SLO) and big-message
senders (processes of their own, unary calls one after another, each a [H, W, 3] UINT8 frame of
`--big`), and prints what each client got: the small client's failures are the cost.

    python scripts/bench_big_messages.py [--big 4882,4096] [--seconds 10] [--rate 30] [--big-clients 1]
        [--frame 480,640] [--small H,W] [--typed] [--parse-whole]

`--big 4882,4096` is a 60 MB message (over the message limit of the default 480x640 frame; inside
the fixed 64 MiB limit the frontend had before, then refused for its height); `--big 4096,4096` a
50 MB frame. `--frame` is the configured frame (it sets the limit), `--small` the small client's
frames (default: the configured ones). `--typed` sends the big frames as typed contents, and
`--parse-whole` parses big requests whole (the frontend's decoding before it cut frames out).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONFIG = """
hardware: [{name: t4, price_per_hour: 0.526, memory_gb: 16}]
profiles:
  - {model: light, hardware: t4, batches: [[1, 4.0, 0, 300], [2, 5.0, 0, 400], [4, 7.0, 0, 500], [8, 11.0, 0, 600]]}
apps:
  - {name: cam, rate: RATE, slo_ms: 300, modules: [{name: x, model: light}]}
serve:
  workers: [{device: "emulated:t4", count: 2}]
  input_shape: [3, 32, 32]
  frame_shape: FRAME
"""


def big_client(address: str, shape: tuple[int, int, int], seconds: float, out: str, typed: bool) -> None:
    """Send one big frame after another for `seconds`; write each call's status and time (s)."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as rpc

    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 256 << 20)])
    stub = rpc.GRPCInferenceServiceStub(channel)
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    tensor = pb.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8", shape=list(shape))
    request = pb.ModelInferRequest(model_name="cam", inputs=[tensor])
    if typed:
        request.inputs[0].contents.uint_contents.extend(frame.ravel().tolist())
    else:
        request.raw_input_contents.append(frame.tobytes())
    codes: collections.Counter = collections.Counter()
    took: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            stub.ModelInfer(request, timeout=30)
            codes["OK"] += 1
        except grpc.RpcError as exc:
            codes[f"{exc.code().name}: {(exc.details() or '')[:70]}"] += 1
        took.append(time.monotonic() - t0)
    channel.close()
    Path(out).write_text(json.dumps({"codes": codes, "took": took, "bytes": request.ByteSize()}))


async def main() -> None:
    from harpagon.bench.live.load import OK, python_sender
    from harpagon.config.loader import load_workload
    from harpagon.runtime.serve import LocalCluster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big", default="4882,4096", help="H,W of the big frames (default: a 60 MB message)")
    ap.add_argument("--big-clients", type=int, default=1, help="big-message senders (0: the small client alone)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=30.0, help="the small client's frames/s (the app's planned rate)")
    ap.add_argument("--frame", default="480,640", help="H,W of the configured frame")
    ap.add_argument("--small", default=None, help="H,W of the small client's frames (default: --frame)")
    ap.add_argument("--typed", action="store_true", help="big frames as typed contents (uint32 values)")
    ap.add_argument("--parse-whole", action="store_true", help="parse big requests whole (no cut)")
    args = ap.parse_args()
    if args.parse_whole:
        from harpagon.runtime.frontend import servicer
        servicer.CUT_MIN_BYTES = 1 << 62
    big = (*map(int, args.big.split(",")), 3)
    frame = [*map(int, args.frame.split(",")), 3]
    small_frame = [*map(int, args.small.split(",")), 3] if args.small else frame
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "big.yaml"
        config.write_text(CONFIG.replace("RATE", f"{args.rate:g}").replace("FRAME", json.dumps(frame)))
        workload = load_workload([config])
        async with LocalCluster(workload, grpc_port=0, metrics_port=0, follow_rates=False).running() as cluster:
            address = f"127.0.0.1:{cluster.port}"
            outs = [Path(tmp) / f"big-{i}.json" for i in range(args.big_clients)]
            bigs = [await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--big-client", address, ",".join(map(str, big)), str(args.seconds + 2),
                str(out), *(["--typed"] if args.typed else [])) for out in outs]
            times = np.arange(0.0, args.seconds, 1.0 / args.rate)
            stalls0 = cluster.plane.watch.stalls
            small = (await python_sender(address, small_frame, {"cam": times}, timeout_s=0.3))["apps"][0]
            for p in bigs:
                await p.wait()
            stalls = cluster.plane.watch.stalls - stalls0
        results = [json.loads(out.read_text()) for out in outs]
    status = np.asarray(small["status"])
    latency = np.asarray(small["latency_ms"], float)
    ok = status == OK
    print(f"small client: {len(status)} frames of {small_frame} at {args.rate:g}/s, {int(ok.sum())} OK, "
          f"{len(status) - int(ok.sum())} failed ({100 * (1 - ok.mean()):.1f}%); P50 "
          f"{np.nanpercentile(latency[ok], 50):.1f} ms, P99 {np.nanpercentile(latency[ok], 99):.1f} ms"
          if ok.any() else f"small client: {len(status)} frames, none OK")
    for k, n in collections.Counter(status.tolist()).items():
        print(f"  status {k}: {n}")
    for msg, n in small["errors"].items():
        print(f"  {n} x {msg}")
    for data in results:
        took = np.asarray(data["took"]) * 1000
        print(f"big client: {len(took)} messages of {data['bytes'] / 1e6:.1f} MB ({big[0]}x{big[1]}), call P50 "
              f"{np.percentile(took, 50):.0f} ms; " + ", ".join(f"{n} x {c}" for c, n in data["codes"].items()))
    print(f"frontend event-loop stalls (> 100 ms): {stalls}")


if __name__ == "__main__":
    if len(sys.argv) in (6, 7) and sys.argv[1] == "--big-client":
        big_client(sys.argv[2], tuple(map(int, sys.argv[3].split(","))), float(sys.argv[4]), sys.argv[5],
                   sys.argv[6:] == ["--typed"])
    else:
        asyncio.run(main())
