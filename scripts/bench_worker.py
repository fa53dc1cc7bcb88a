"""Achieved throughput of one worker at each batch size against its profile's T(b) = 1000 b / mean.

Run: python scripts/bench_worker.py [--model M] [--device cpu|cuda:0|emulated:HW] [--batches 1,2,4,8]
[--seconds S] (Markdown on stdout). On an emulated device the profile is the catalog's (the device
sleeps it), so the ratio isolates the serving path's own overhead. In one run, side by side: the profiler measures the model in this process,
then a real worker process serves it over gRPC on 127.0.0.1 while client threads keep it busy with
full batches; throughput counts the items the worker answered per second of wall time. Both use the
same torch thread count, so the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from harpagon.config.loader import load_profile_rows
from harpagon.profiler import profile
from harpagon.runtime.wire.tensors import from_numpy
from harpagon.runtime.worker.registry import entry
from harpagon.v1 import worker_pb2 as pb
from harpagon.v1 import worker_pb2_grpc as rpc

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO / "models" / "profiles" / "catalog.yaml"


def start_worker(device: str, threads: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "harpagon.cli", "worker", "--device", device, "--port", "0",
                             "--threads", str(threads)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if line.startswith("worker listening on "):
            return proc, line.split()[3]
    raise RuntimeError("worker did not start")


def drive(address: str, module: str, batch: int, shape: tuple[int, ...], seconds: float, clients: int) -> float:
    """Items per second the worker answers with `clients` callers each sending full batches back to back."""
    x = from_numpy(np.random.default_rng(0).integers(0, 255, (batch, *shape)).astype(np.uint8))
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def client(i: int) -> None:
        stub = rpc.WorkerStub(grpc.insecure_channel(address))
        while time.perf_counter() < stop:
            stub.Infer(pb.InferRequest(module=module, input=x), timeout=60)
            done[i] += batch

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, for the profile and the worker")
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    shape = entry(args.model).input

    proc, address = start_worker(args.device, args.threads)
    try:
        stub = rpc.WorkerStub(grpc.insecure_channel(address))
        print(f"{args.model} ({args.device}, {args.threads} torch thread(s), {args.clients} clients, "
              f"{args.seconds:g} s per batch size; each profile taken just before its run)\n")
        print("| batch | profile mean ms | T(b) /s | achieved /s | achieved / T(b) | worker exec ms | device busy |")
        print("|---|---|---|---|---|---|---|")
        for version, b in enumerate(batches, start=1):
            if args.device.startswith("emulated:"):  # the emulated device sleeps the catalog's mean + std
                rows = load_profile_rows([CATALOG])[(args.model, args.device.split(":", 1)[1])]
                mean = sum(rows[b])
            else:
                _, ((_, mean, _std),) = profile(args.model, args.device, [b], shape, repeats=20, warmup=3,
                                                threads=args.threads)
            stub.ApplyConfig(pb.ApplyConfigRequest(config=pb.WorkerConfig(version=version, modules=[
                pb.ModuleConfig(name="m", model=args.model, batch=b, input_shape=list(shape))])), timeout=300)
            drive(address, "m", b, shape, 1.0, args.clients)  # settle
            before = stub.Stats(pb.StatsRequest()).modules[0]
            got = drive(address, "m", b, shape, args.seconds, args.clients)
            after = stub.Stats(pb.StatsRequest()).modules[0]
            exec_ms = (after.exec_ms_total - before.exec_ms_total) / max(1, after.batches - before.batches)
            t = 1000.0 * b / mean
            print(f"| {b} | {mean:.2f} | {t:.1f} | {got:.1f} | {got / t:.1%} | {exec_ms:.2f} | "
                  f"{got * exec_ms / (1000.0 * b):.1%} |")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
