"""One frontend->worker hop with and without mutual TLS, side by side.

Starts one EMULATED worker (t4; its batches sleep their profiled latency) per transport and
security setting, then sends the same batches to each in alternating rounds, so that machine noise
falls on all of them alike, and prints P50/P99 of the hop's overhead (round trip less the worker's
queue and execution) and their ratios against plaintext.

    python scripts/bench_tls_hop.py [--rounds 20] [--calls 50] [--batch 4]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harpagon.runtime.wire.clients import GrpcWorkerClient
from harpagon.runtime.wire.modules import ModuleSpec
from harpagon.runtime.wire.tls import TlsFiles, make_certs


def start_worker(listen: list[str], tls_dir: str | None) -> tuple[subprocess.Popen, str]:
    args = [sys.executable, "-m", "harpagon.cli", "worker", "--device", "emulated:t4", *listen]
    if tls_dir:
        args += ["--tls-dir", tls_dir]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.startswith("worker listening on "):
        raise RuntimeError(f"worker did not start: {line!r}")
    return proc, line.split()[3]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--calls", type=int, default=50, help="calls per setting per round")
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="harpagon-hop-"))
    make_certs(tmp / "pki", days=1)
    settings = {}
    procs = []
    for transport in ("uds", "tcp"):
        for secure in (False, True):
            listen = (["--unix-socket", str(tmp / f"w-{len(procs)}.sock")] if transport == "uds"
                      else ["--port", "0"])
            proc, address = start_worker(listen, str(tmp / "pki/worker") if secure else None)
            procs.append(proc)
            client = GrpcWorkerClient(TlsFiles.load(tmp / "pki/controller") if secure else None)
            settings[(transport, secure)] = (address, client)
    spec = ModuleSpec("bench/m", "resnet50", args.batch, (3, 64, 64))
    batch = np.random.default_rng(0).integers(0, 255, (args.batch, 3, 64, 64), dtype=np.uint8)
    overhead = {k: [] for k in settings}
    try:
        for address, client in settings.values():
            await client.apply(address, 1, [spec], 60)
        frontends = {k: GrpcWorkerClient(TlsFiles.load(tmp / "pki/frontend") if k[1] else None) for k in settings}
        for _ in range(args.rounds):
            for k, (address, _) in settings.items():
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    reply = await frontends[k].infer(address, spec.name, batch, timeout_s=5)
                    rtt = (time.perf_counter() - t0) * 1000.0
                    overhead[k].append(rtt - reply.queue_ms - reply.exec_ms)
        print(f"hop overhead (ms), batch {args.batch} of uint8 3x64x64, {args.rounds} x {args.calls} calls per setting")
        print(f"{'transport':<10}{'mTLS':<6}{'P50':>8}{'P99':>8}{'P50 x':>8}{'P99 x':>8}")
        for (transport, secure), xs in overhead.items():
            p50, p99 = np.percentile(xs, [50, 99])
            b50, b99 = np.percentile(overhead[(transport, False)], [50, 99])
            print(f"{transport:<10}{'yes' if secure else 'no':<6}{p50:8.2f}{p99:8.2f}{p50 / b50:8.2f}{p99 / b99:8.2f}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


if __name__ == "__main__":
    asyncio.run(main())
