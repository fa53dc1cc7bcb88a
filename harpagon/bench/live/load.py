"""The live bench's load generator: a Python gRPC sender in processes of its own (so that the client
does not steal the frontend's event loop), sending each app's frames at their scheduled offsets and
recording each frame's status and latency."""

from __future__ import annotations

import asyncio
import json
import math
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Per-frame status codes in the sender's records.
OK, DROPPED, FAILED, NO_REPLY = 0, 1, 2, 3
#: Frames per second one Python sender process is given at most (it falls behind above a few hundred).
SENDER_RATE = 600.0


def sender_main(spec_path: str, out_path: str) -> None:
    """The Python load generator (run as `python -m harpagon.bench.live send SPEC OUT`): sends each
    app's frames at its scheduled offsets through the Triton gRPC API (tritonclient's stubs, requests
    built once), and writes per-frame records."""
    spec = json.loads(Path(spec_path).read_text())
    out = asyncio.run(_send(spec))
    Path(out_path).write_text(json.dumps(out))


def _requests(spec: dict) -> list[list[Any]]:
    """Per app, its requests, built once: for raw frames (`encoding` "raw", the default) UINT8 requests
    over 8 random frames; for "jpeg" one BYTES request holding a JPEG of a structured frame (camera-like
    sizes, `harpagon.runtime.wire.frames.synthetic_frame`) in Triton's raw BYTES form (a 4-byte little-endian
    length, then the bytes)."""
    from tritonclient.grpc import service_pb2 as tpb

    shape = list(spec["frame_shape"])
    encoding = spec.get("encoding", "raw")
    if encoding == "jpeg":
        from harpagon.runtime.wire.frames import encode_frame, synthetic_frame

        data = bytes(encode_frame(synthetic_frame(shape[0], shape[1]), "jpeg").data)
        tensor = tpb.ModelInferRequest.InferInputTensor(name="FRAME", datatype="BYTES", shape=[1])
        return [[tpb.ModelInferRequest(model_name=a["name"], inputs=[tensor],
                                       raw_input_contents=[len(data).to_bytes(4, "little") + data])]
                for a in spec["apps"]]
    if encoding != "raw":
        raise ValueError(f"the Python sender sends raw or jpeg frames, not {encoding!r}")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, shape, dtype=np.uint8).tobytes() for _ in range(8)]
    return [[tpb.ModelInferRequest(
        model_name=a["name"], inputs=[tpb.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8",
                                                                              shape=shape)],
        raw_input_contents=[f]) for f in frames] for a in spec["apps"]]


def request_bytes(frame_shape: Sequence[int], encoding: str = "raw", app: str = "one") -> int:
    """The size on the wire of one request the Python sender sends for `app` (its serialised
    ModelInferRequest; the mean where its requests differ)."""
    reqs = _requests({"frame_shape": list(frame_shape), "encoding": encoding, "apps": [{"name": app}]})[0]
    return round(sum(r.ByteSize() for r in reqs) / len(reqs))


async def _send(spec: dict) -> dict:
    import grpc
    from tritonclient.grpc import service_pb2_grpc as trpc

    channel = grpc.aio.insecure_channel(spec["address"], options=[("grpc.max_receive_message_length", 256 << 20),
                                                                 ("grpc.max_send_message_length", 256 << 20)])
    stub = trpc.GRPCInferenceServiceStub(channel)
    apps = spec["apps"]
    requests = _requests(spec)
    sched = [np.asarray(a["times"], float) for a in apps]
    n = [len(t) for t in sched]
    sent = [np.full(k, np.nan) for k in n]
    lat = [np.full(k, np.nan) for k in n]
    status = [np.full(k, NO_REPLY, np.int8) for k in n]
    errors: list[dict[str, int]] = [{} for _ in apps]
    order = sorted(((t, ai, i) for ai, ts in enumerate(sched) for i, t in enumerate(ts)))
    timeout = spec.get("timeout_s", 30.0)
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task] = set()

    async def one(ai: int, i: int) -> None:
        t0 = time.perf_counter()
        try:
            await stub.ModelInfer(requests[ai][i % len(requests[ai])], timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                status[ai][i] = DROPPED
            else:
                status[ai][i] = FAILED
                msg = f"{exc.code().name}: {(exc.details() or '')[:80]}"
                errors[ai][msg] = errors[ai].get(msg, 0) + 1
            return
        lat[ai][i] = (time.perf_counter() - t0) * 1000.0
        status[ai][i] = OK

    # start at the wall-clock instant the bench named (so that CPU windows line up), on the loop's clock
    start = loop.time() + max(0.0, spec.get("start_at", time.time()) - time.time())
    for t, ai, i in order:
        due = start + t
        now = loop.time()
        if due > now:
            await asyncio.sleep(due - now)
        sent[ai][i] = loop.time() - start
        task = asyncio.ensure_future(one(ai, i))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(list(pending), timeout=timeout + 5)
    await channel.close()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"request_bytes": [round(sum(r.ByteSize() for r in rs) / len(rs)) for rs in requests],
            "apps": [{"name": a["name"], "times": sched[k].tolist(), "sent": sent[k].tolist(),
                      "latency_ms": lat[k].tolist(), "status": status[k].tolist(), "errors": errors[k]}
                     for k, a in enumerate(apps)],
            "cpu_s": ru.ru_utime + ru.ru_stime}


def _nan_list(xs: list) -> list[float]:
    return [math.nan if x is None else float(x) for x in xs]


async def python_sender(address: str | Sequence[str], frame_shape: Sequence[int], schedules: dict[str, np.ndarray],
                        timeout_s: float, encoding: str = "raw") -> dict:
    """Run the Python sender over `schedules` (app -> send offsets, s) in processes of their own, one
    per SENDER_RATE frames/s (at most 4; at least one per address), each taking every k-th frame of
    every app, its frames `frame_shape` in `encoding` (raw or jpeg); process j sends to address j mod
    the addresses (several frontends: the frames spread over them). The per-frame records come back
    merged in schedule order, with the size of a request (`request_bytes`, of the first app)."""
    addresses = [address] if isinstance(address, str) else list(address)
    total = sum(len(v) / max(float(v[-1]), 1e-9) for v in schedules.values() if len(v))
    k = max(len(addresses), min(4, math.ceil(total / SENDER_RATE)))
    delay = 1.5 + 0.2 * k  # the processes start together once all are up
    start_at = time.time() + delay
    longest = max((float(v[-1]) for v in schedules.values() if len(v)), default=0.0)
    parts = await asyncio.gather(*(_sender_process(addresses[j % len(addresses)], frame_shape,
                                                   {a: v[j::k] for a, v in schedules.items()}, timeout_s, start_at,
                                                   longest, encoding) for j in range(k)))
    apps = []
    for name, v in schedules.items():
        merged: dict[str, Any] = {"name": name, "times": v.tolist(), "errors": {}}
        for field_name, fill in (("sent", math.nan), ("latency_ms", math.nan), ("status", NO_REPLY)):
            out = np.full(len(v), fill, dtype=np.int8 if field_name == "status" else float)
            for j, part in enumerate(parts):
                a = next(x for x in part["apps"] if x["name"] == name)
                out[j::k] = np.asarray(a[field_name], dtype=out.dtype)
            merged[field_name] = out.tolist()
        for part in parts:
            for msg, n in next(x for x in part["apps"] if x["name"] == name)["errors"].items():
                merged["errors"][msg] = merged["errors"].get(msg, 0) + n
        apps.append(merged)
    return {"apps": apps, "cpu_s": sum(p["cpu_s"] for p in parts), "processes": k, "start_delay_s": delay,
            "request_bytes": parts[0]["request_bytes"][0] if parts and parts[0].get("request_bytes") else None}


async def _sender_process(address: str, frame_shape: Sequence[int], schedules: dict[str, np.ndarray],
                          timeout_s: float, start_at: float, longest: float, encoding: str = "raw") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        out = Path(tmp) / "out.json"
        spec.write_text(json.dumps({"address": address, "frame_shape": list(frame_shape), "timeout_s": timeout_s,
                                    "start_at": start_at, "encoding": encoding,
                                    "apps": [{"name": k, "times": v.tolist()} for k, v in schedules.items()]}))
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "harpagon.bench.live", "send", str(spec),
                                                    str(out), stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), longest + timeout_s + 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError("the Python sender did not finish in time") from None
        if proc.returncode != 0:
            raise RuntimeError(f"the Python sender failed: {err.decode()[-1500:]}")
        data = json.loads(out.read_text())
    for a in data["apps"]:
        a["sent"] = _nan_list(a["sent"])
        a["latency_ms"] = _nan_list(a["latency_ms"])
    return data
