"""Calls the suite makes from the clients' namespace, each in a process of its own that prints its
answer as JSON: the routing table as a frontend sees it, hostile control-plane calls (and the allowed
calls that show the same servers answer), a flood of big messages, and abuse of the health ports."""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harpagon.bench.faults.frames import OK
from harpagon.bench.faults.goals import (
    ABUSE_CHECKS,
    ABUSE_IDLE,
    ABUSE_WATCHES,
    CHECK_TIMEOUT_S,
    EXPECTED_REFUSAL,
)

#: The configuration version of the hostile ApplyConfig (the largest uint64: newer than any real one).
HOSTILE_VERSION = (1 << 64) - 1
#: The big messages: the 60 MB request that stalled every client, and a 4096x4096 RGB frame.
FLOOD_BYTES = (60_000_000, 4096 * 4096 * 3)
FLOOD_CONCURRENCY = 2


def routes(controller: str, tls_dir: str) -> dict:
    """The controller's routing table: WatchRoutes under a frontend's certificate, first message only."""
    from harpagon.runtime.wire.rpc import sync_channel
    from harpagon.runtime.wire.tls import TlsFiles
    from harpagon.v1 import controller_pb2 as cpb
    from harpagon.v1 import controller_pb2_grpc as crpc

    with sync_channel(controller, TlsFiles.load(tls_dir), "controller") as ch:
        stream = crpc.ControllerStub(ch).WatchRoutes(cpb.WatchRoutesRequest(frontend_id="faults-probe"), timeout=10)
        try:
            table = next(stream)
        finally:
            stream.cancel()
    return {"version": table.version, "refused": dict(table.refused),
            "modules": [{"app": m.app, "module": m.module,
                         "tuples": [{"batch": t.batch, "name": t.worker_module, "addresses": list(t.addresses)}
                                    for t in m.tuples]} for m in table.modules]}


def hostile_calls(controller: str, worker: str, pki: Path, foreign: Path, app: str) -> list[dict]:
    """Each control-plane call a stranger might try, with no certificate, with a certificate of a CA the
    cluster does not trust (for the right role, and verifying the server with the cluster's public CA),
    and with the cluster's certificate of a role that may not make it; then, as the positive control, an
    allowed call that changes nothing to each of the same two servers. The status each got, the status
    it should get (EXPECTED_REFUSAL; OK for a control) and whether it did."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from harpagon.v1 import controller_pb2 as cpb
    from harpagon.v1 import controller_pb2_grpc as crpc
    from harpagon.v1 import worker_pb2 as pb
    from harpagon.v1 import worker_pb2_grpc as rpc

    channels = _Channels(pki, foreign)
    register = cpb.RegisterRequest(worker_id="intruder", address="10.255.255.1:1", hardware="t4",
                                  device="emulated:t4", emulated=True)
    # the newest version there can be, with no modules: taken, it would unload everything for good
    apply = pb.ApplyConfigRequest(config=pb.WorkerConfig(version=HOSTILE_VERSION))
    calls = [  # name, address, the server's role, the role allowed, a role not allowed, the call
        ("Register as a worker", controller, "controller", "worker", "frontend",
         lambda ch: crpc.ControllerStub(ch).Register(register, timeout=5)),
        ("ApplyConfig (empty) to a worker", worker, "worker", "controller", "frontend",
         lambda ch: rpc.WorkerStub(ch).ApplyConfig(apply, timeout=5)),
        ("WatchRoutes", controller, "controller", "frontend", "worker",
         lambda ch: next(crpc.ControllerStub(ch).WatchRoutes(cpb.WatchRoutesRequest(frontend_id="intruder"),
                                                             timeout=5))),
        ("ReportRates (1e9 frames/s)", controller, "controller", "frontend", "worker",
         lambda ch: crpc.ControllerStub(ch).ReportRates(cpb.RatesReport(frontend_id="intruder", app_rates={app: 1e9},
                                                                      window_s=1.0), timeout=5)),
    ]
    out = []
    for name, address, peer, allowed, wrong, call in calls:
        for creds, role, label in (("none", "", "no certificate (plaintext)"),
                                   ("foreign", allowed, f"foreign CA, role {allowed}"),
                                   ("ours", wrong, f"our CA, wrong role ({wrong})")):
            code = channels.status(call, address, creds, role, peer)
            expected = EXPECTED_REFUSAL[creds]
            out.append({"call": name, "credentials": label, "code": code, "expected": expected,
                        "as_expected": code == expected, "control": False})
    controls = [  # name, address, the server's role, an allowed role, the call: read-only, changes nothing
        ("Worker/Health to the worker", worker, "worker", "controller",
         lambda ch: rpc.WorkerStub(ch).Health(pb.HealthRequest(), timeout=5)),
        ("grpc.health.v1.Health/Check to the controller", controller, "controller", "frontend",
         lambda ch: health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)),
    ]
    for name, address, peer, allowed, call in controls:
        code = channels.status(call, address, "ours", allowed, peer)
        out.append({"call": name, "credentials": f"our CA, allowed role ({allowed})", "code": code, "expected": OK,
                    "as_expected": code == OK, "control": True})
    return out


class _Channels:
    """Channels to the cluster's servers under each kind of credentials: none (plaintext), a foreign CA's
    certificate, or one of ours; the server is verified with the cluster's CA."""

    def __init__(self, pki: Path, foreign: Path):
        self.pki, self.foreign = pki, foreign
        self.ca = (pki / "ca.crt").read_bytes()

    def open(self, address: str, creds: str, role: str, peer: str) -> Any:
        import grpc

        from harpagon.runtime.wire.rpc import MESSAGE_OPTIONS
        from harpagon.runtime.wire.tls import channel_options

        if creds == "none":
            return grpc.insecure_channel(address, options=MESSAGE_OPTIONS)
        d = (self.foreign if creds == "foreign" else self.pki) / role
        c = grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=(d / "tls.key").read_bytes(),
                                         certificate_chain=(d / "tls.crt").read_bytes())
        return grpc.secure_channel(address, c, options=[*MESSAGE_OPTIONS, *channel_options(peer)])  # type: ignore[arg-type]

    def status(self, call: Callable[[Any], Any], address: str, creds: str, role: str, peer: str) -> str:
        """The status `call` got on a channel of its own."""
        import grpc

        ch = self.open(address, creds, role, peer)
        try:
            call(ch)
            return "OK"
        except grpc.RpcError as exc:
            return exc.code().name  # type: ignore[attr-defined]
        except StopIteration:
            return "OK (empty stream)"
        finally:
            ch.close()


async def flood(address: str, app: str, seconds: float) -> dict:
    """FLOOD_CONCURRENCY callers sending FLOOD_BYTES-sized frames (each a legal [H, W, 3] tensor) back to
    back for `seconds`: how many, the status each got, and the slowest answer."""
    import grpc
    from tritonclient.grpc import service_pb2 as tpb
    from tritonclient.grpc import service_pb2_grpc as trpc

    shapes = {60_000_000: [5000, 4000, 3]}
    limit = max(FLOOD_BYTES) + (1 << 20)
    channel = grpc.aio.insecure_channel(address, options=[("grpc.max_send_message_length", limit),
                                                          ("grpc.max_receive_message_length", limit)])
    stub = trpc.GRPCInferenceServiceStub(channel)
    requests = []
    for n in FLOOD_BYTES:
        shape = shapes.get(n) or [math.isqrt(n // 3)] * 2 + [3]
        assert math.prod(shape) == n, (n, shape)
        requests.append(tpb.ModelInferRequest(
            model_name=app, inputs=[tpb.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8",
                                                                           shape=shape)],
            raw_input_contents=[bytes(n)]))
    counts: dict[str, int] = {}
    slowest = 0.0
    end = time.monotonic() + seconds

    async def caller(k: int) -> None:
        nonlocal slowest
        i = k
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                await stub.ModelInfer(requests[i % len(requests)], timeout=30.0)
                code = OK
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
            except Exception as exc:  # noqa: BLE001 - counted, never lost
                code = f"CLIENT_{type(exc).__name__}"
            slowest = max(slowest, (time.perf_counter() - t0) * 1000.0)
            counts[code] = counts.get(code, 0) + 1
            i += 1

    try:
        await asyncio.gather(*(caller(k) for k in range(FLOOD_CONCURRENCY)))
    finally:
        await channel.close()
    return {"sent": sum(counts.values()), "codes": counts, "max_ms": slowest}


def abuse(targets: dict[str, str]) -> dict:
    """On each plaintext health port: ABUSE_WATCHES Watch streams (each on a connection of its own) and
    ABUSE_IDLE idle TCP connections held open while ABUSE_CHECKS Checks are made, each on a connection
    of its own as a probe makes them; per target, how many answered SERVING within CHECK_TIMEOUT_S."""
    return {name: _abuse_one(address) for name, address in targets.items()}


def _abuse_one(address: str) -> dict:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    host, port = address.rsplit(":", 1)
    idle, watch_channels, watches = [], [], []
    try:
        for _ in range(ABUSE_IDLE):
            idle.append(socket.create_connection((host, int(port)), timeout=5))
        for _ in range(ABUSE_WATCHES):
            ch = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
            watch_channels.append(ch)
            watches.append(health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service="")))
        time.sleep(0.5)
        ok, slowest, errors = 0, 0.0, {}
        for _ in range(ABUSE_CHECKS):
            t0 = time.perf_counter()
            with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
                try:
                    reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""),
                                                                 timeout=CHECK_TIMEOUT_S)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        ok += 1
                    else:
                        errors["NOT_SERVING"] = errors.get("NOT_SERVING", 0) + 1
                except grpc.RpcError as exc:
                    code = exc.code().name  # type: ignore[attr-defined]
                    errors[code] = errors.get(code, 0) + 1
            slowest = max(slowest, (time.perf_counter() - t0) * 1000.0)
        watch_codes: dict[str, int] = {}
        for w in watches:
            code = w.code().name if w.done() else "OPEN"
            watch_codes[code] = watch_codes.get(code, 0) + 1
        return {"checks": ABUSE_CHECKS, "ok": ok, "max_ms": slowest, "errors": errors, "watches": watch_codes}
    finally:
        for w in watches:
            w.cancel()
        for ch in watch_channels:
            ch.close()
        for sock in idle:
            sock.close()
