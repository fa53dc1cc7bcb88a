"""`harpagon bench live`: the live serving system on EMULATED workers, measured end to end.

An emulated worker "runs" a batch by sleeping its profiled latency (`EmulatedExecutor`), so every figure
here measures the frontend, the controller, the dispatch and the RPCs of this runtime on this machine,
never a GPU. The serving process (`LocalCluster`: frontend and controller, each on an event loop of its own) is this
process; every worker is its own process, and the LOAD GENERATOR is another process (a Python gRPC
sender, or NVIDIA's C++ perf_analyzer), so that the client does not steal the frontend's event loop.

What is measured (see docs/benchmarks/live.md):

1. Per config (default configs/demo.yaml and configs/multi.yaml), per dispatch policy (batch-aware and
   request-level), with constant and with Poisson arrivals at the planned rates (`send_times` of the
   demo, seeded): each app's attainment (answered within the SLO; dropped and failed frames are late)
   against the plan's promise (`promise.target` / `promise.predicted`), the cost of the plan, the
   serving process's CPU per frame, and how far behind schedule the sender fell (client-bound?).
2. Per module: measured P50/P99/max latency against the plan's `predicted_latency_ms`.
3. Per module, the time of each hop split into frontend queue, batch collection, serialisation +
   transport, worker queue and execution (`FrontendDataPlane.stats()`, where the runtime has it).
4. The capacity of one frontend process: the highest frame rate through a one-module app at which the
   promise is still kept, found by doubling then bisection over short bounded runs.
5. perf_analyzer figures on the demo's traffic app: sync, streaming, a concurrency range.

The pure parts (attainment from per-frame records, the capacity search, the tables, the report) take
plain data and are unit-tested with fakes; the rest drives processes.
"""

from __future__ import annotations

import asyncio
import cProfile
import csv
import io
import json
import math
import os
import pstats
import re
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harpagon.runtime.controller.controller import settings_of
from harpagon.runtime.demo import AppLoad, send_times
from harpagon.runtime.promise import ARRIVALS_NAME, floor_pct, goal_text, predicted, target

ROOT = Path(__file__).resolve().parents[2]
PERF_ANALYZER = ROOT / ".tools" / "perf_analyzer"
DEFAULT_CONFIGS = ("configs/demo.yaml", "configs/multi.yaml")
DISPATCHES = ("batch-aware", "request-level")
ARRIVALS = ("constant", "poisson")
#: Per-frame status codes in the sender's records.
OK, DROPPED, FAILED, NO_REPLY = 0, 1, 2, 3
#: The hop split, in the order a request meets it; (stats field, label, per request or per batch).
HOPS = (("prepare_ms", "frontend queue", "request"), ("collect_ms", "batch collection", "batch"),
        ("transport_ms", "serialisation + transport", "batch"), ("worker_queue_ms", "worker queue", "batch"),
        ("exec_ms", "execution (emulated)", "batch"))
#: The per-hop overhead goal (P99 of the frontend queue plus serialisation + transport, ms).
HOP_OVERHEAD_GOAL_MS = 2.0
#: The capacity goal of one frontend process (frames/s through a one-module app, promise kept).
CAPACITY_GOAL = 2000.0
#: A run whose sender got out less than this share of the scheduled frames on time did not offer the rate.
OFFERED_SHARE = 0.95
#: A frame sent later than this after its scheduled time counts as sent late by the client.
LATE_SEND_MS = 5.0


# --------------------------------------------------------------------------------------------------
# Pure parts: attainment from records, the capacity search, tables.
# --------------------------------------------------------------------------------------------------


def app_load(name: str, rate: float, slo_ms: float, latency_ms: Iterable[float], status: Iterable[int],
             errors: dict[str, int] | None = None) -> AppLoad:
    """The demo's `AppLoad` of one app from per-frame records: `latency_ms` (client-measured, from the
    frame's send to its reply; ignored unless answered) and `status` (OK, DROPPED past its deadline,
    FAILED, NO_REPLY before the sender gave up). A dropped, failed or unanswered frame is late."""
    ld = AppLoad(name, rate, slo_ms)
    for lat, st in zip(latency_ms, status, strict=True):
        ld.sent += 1
        if st == OK:
            ld.answered += 1
            ld.latencies.append(float(lat))
            ld.within_slo += float(lat) <= slo_ms
        elif st == DROPPED:
            ld.dropped += 1
        else:
            ld.failed += 1
    ld.errors = dict(errors or {})
    return ld


def kept(ld: AppLoad, goal: float | None) -> bool | None:
    """Whether the measured attainment keeps the promise `goal` (None: no promise for these arrivals)."""
    if goal is None:
        return None
    return ld.done > 0 and ld.attainment >= goal


def lateness(scheduled_s: Sequence[float], sent_s: Sequence[float]) -> dict[str, float]:
    """How far behind its schedule the client sent frames: P50/P99/max of (sent - scheduled) in ms, and
    the share sent more than LATE_SEND_MS late."""
    lag = (np.asarray(sent_s, float) - np.asarray(scheduled_s, float)) * 1000.0
    lag = lag[np.isfinite(lag)]
    if not lag.size:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan, "late_share": math.nan}
    return {"p50": float(np.percentile(lag, 50)), "p99": float(np.percentile(lag, 99)), "max": float(lag.max()),
            "late_share": float(np.mean(lag > LATE_SEND_MS))}


def percentiles(samples: Iterable[float]) -> tuple[float, float, float, int]:
    """(P50, P99, max, n) of samples; NaNs when there are none."""
    a = np.asarray(list(samples), float)
    if not a.size:
        return math.nan, math.nan, math.nan, 0
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max()), int(a.size)


@dataclass
class Step:
    """One bounded run of the capacity search."""

    rate: float
    ok: bool
    attainment: float = math.nan
    goal: float | None = None
    offered: float = math.nan  # frames/s the client actually got out
    answered: float = math.nan  # frames/s answered within the run
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    server_cpu_per_frame_ms: float = math.nan
    server_cores: float = math.nan  # CPU seconds per second of the serving process
    client_cores: float = math.nan
    workers: int = 0
    plans: int = 0
    why: str = ""  # why not ok: "client-bound", "missed", an error


@dataclass
class Capacity:
    best: float | None  # the highest rate whose run kept the promise (None: not even the first)
    first_failure: float | None  # the lowest rate whose run did not (None: none failed)
    steps: list[Step]


def search_capacity(measure: Callable[[float], Step], start: float, limit: float, bisect_steps: int = 3,
                    progress: Callable[[Step], None] | None = None) -> Capacity:
    """The highest rate at which `measure(rate).ok`: doubling from `start` until a run fails or `limit`
    is passed (the last doubling is clipped to `limit`), then `bisect_steps` bisections between the best
    rate that passed and the lowest that failed. Rates are rounded to whole frames/s; a rate measured
    once is not measured again."""
    if not (start > 0 and limit >= start):
        raise ValueError(f"need 0 < start <= limit, got start={start:g}, limit={limit:g}")
    steps: list[Step] = []
    seen: dict[float, Step] = {}

    def run(rate: float) -> Step:
        rate = float(round(rate))
        if rate not in seen:
            s = measure(rate)
            seen[rate] = s
            steps.append(s)
            if progress:
                progress(s)
        return seen[rate]

    best: float | None = None
    fail: float | None = None
    rate = start
    while True:
        s = run(rate)
        if not s.ok:
            fail = s.rate
            break
        best = s.rate
        if s.rate >= limit:
            break
        rate = min(rate * 2, limit)
    if best is not None and fail is not None:
        lo, hi = best, fail
        for _ in range(bisect_steps):
            mid = float(round((lo + hi) / 2))
            if mid <= lo or mid >= hi:
                break
            if run(mid).ok:
                lo = mid
            else:
                hi = mid
        best, fail = lo, hi
    return Capacity(best, fail, steps)


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Iterable[int] | None = None) -> list[str]:
    """A markdown table; columns in `right` (default every one but the first) right-aligned."""
    right = set(range(1, len(headers)) if right is None else right)
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---:" if i in right else ":---" for i in range(len(headers))) + "|"]
    for r in rows:
        cells = [str(c) for c in r]
        if len(cells) != len(headers):
            raise ValueError(f"a row has {len(cells)} cells for {len(headers)} columns: {cells}")
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return out


def fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def hop_rows(stats: dict[tuple[str, str], Any] | None) -> list[dict[str, Any]]:
    """Per (app, module) of `FrontendDataPlane.stats()`: counters, and (P50, P99, max, n) of each hop
    and of the module's latency; the overhead bound is P99(frontend queue) + P99(serialisation +
    transport), the two hops this runtime adds on top of collection, queueing and execution."""
    rows = []
    for (app, module), s in sorted((stats or {}).items()):
        row: dict[str, Any] = {"app": app, "module": module, "requests": int(getattr(s, "requests", 0)),
                               "batches": int(getattr(s, "batches", 0)), "dummies": int(getattr(s, "dummies", 0)),
                               "latency_ms": percentiles(getattr(s, "latency_ms", ()))}
        for name, _, _ in HOPS:
            row[name] = percentiles(getattr(s, name, ()))
        row["overhead_p99_ms"] = row["prepare_ms"][1] + row["transport_ms"][1]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------
# Results of a run (plain data, so that the report is built from them alone).
# --------------------------------------------------------------------------------------------------


@dataclass
class AppResult:
    app: str
    rate: float
    slo_ms: float
    sent: int
    answered: int
    within: int
    dropped: int
    failed: int
    attainment: float
    goal: float | None
    replay: float | None
    kept: bool | None
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class ModuleResult:
    app: str
    module: str
    predicted_ms: float
    budget_ms: float
    overhead_ms: float  # the plan's per-hop allowance (settings.overhead_ms), outside predicted_ms
    requests: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    source: str  # "stats" (FrontendDataPlane.stats) or "window" (the live module's latency window)


@dataclass
class RunResult:
    config: str
    dispatch: str
    arrivals: str
    seconds: float
    generator: str
    cost_per_hour: float
    workers: dict[str, int]
    promise: str
    plans_during: int
    apps: list[AppResult]
    server_cpu_s: float
    wall_s: float
    frames: int
    client_cpu_s: float
    lag: dict[str, float]
    offered_share: float  # share of the scheduled frames the client sent (on time or not)

    @property
    def cpu_per_frame_ms(self) -> float:
        return 1000.0 * self.server_cpu_s / self.frames if self.frames else math.nan

    @property
    def server_cores(self) -> float:
        return self.server_cpu_s / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def client_cores(self) -> float:
        return self.client_cpu_s / self.wall_s if self.wall_s > 0 else math.nan


@dataclass
class ClusterResult:
    """One cluster (config x dispatch): its runs, and what the frontend saw over all of them."""

    config: str
    dispatch: str
    runs: list[RunResult]
    modules: list[ModuleResult]
    hops: list[dict[str, Any]] | None  # None: the runtime has no FrontendDataPlane.stats()
    perf_analyzer: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    warmup_replans: int | None = None  # re-plans during the warm-up (None: no warm-up)


def _verdict_cell(a: AppResult) -> str:
    if a.kept is None:
        return "no promise"
    return "kept" if a.kept else "**missed**"


# --------------------------------------------------------------------------------------------------
# The load generators (separate processes).
# --------------------------------------------------------------------------------------------------


def _sender_main(spec_path: str, out_path: str) -> None:
    """The Python load generator (run as `python -m harpagon.bench.live send SPEC OUT`): sends each
    app's frames at its scheduled offsets through the Triton gRPC API (tritonclient's stubs, requests
    built once), and writes per-frame records."""
    spec = json.loads(Path(spec_path).read_text())
    out = asyncio.run(_send(spec))
    Path(out_path).write_text(json.dumps(out))


async def _send(spec: dict) -> dict:
    import grpc
    from tritonclient.grpc import service_pb2 as tpb
    from tritonclient.grpc import service_pb2_grpc as trpc

    channel = grpc.aio.insecure_channel(spec["address"], options=[("grpc.max_receive_message_length", 256 << 20),
                                                                 ("grpc.max_send_message_length", 256 << 20)])
    stub = trpc.GRPCInferenceServiceStub(channel)
    rng = np.random.default_rng(0)
    shape = spec["frame_shape"]
    frames = [rng.integers(0, 255, shape, dtype=np.uint8).tobytes() for _ in range(8)]
    apps = spec["apps"]
    requests = [[tpb.ModelInferRequest(
        model_name=a["name"], inputs=[tpb.ModelInferRequest.InferInputTensor(name="FRAME", datatype="UINT8",
                                                                              shape=list(shape))],
        raw_input_contents=[f]) for f in frames] for a in apps]
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
            await stub.ModelInfer(requests[ai][i % len(frames)], timeout=timeout)
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
    return {"apps": [{"name": a["name"], "times": sched[k].tolist(), "sent": sent[k].tolist(),
                      "latency_ms": lat[k].tolist(), "status": status[k].tolist(), "errors": errors[k]}
                     for k, a in enumerate(apps)],
            "cpu_s": ru.ru_utime + ru.ru_stime}


def _nan_list(xs: list) -> list[float]:
    return [math.nan if x is None else float(x) for x in xs]


#: Frames per second one Python sender process is given at most (it falls behind above a few hundred).
SENDER_RATE = 600.0


async def python_sender(address: str, frame_shape: Sequence[int], schedules: dict[str, np.ndarray],
                        timeout_s: float) -> dict:
    """Run the Python sender over `schedules` (app -> send offsets, s) in processes of their own, one
    per SENDER_RATE frames/s (at most 4), each taking every k-th frame of every app; the per-frame
    records come back merged in schedule order."""
    total = sum(len(v) / max(float(v[-1]), 1e-9) for v in schedules.values() if len(v))
    k = max(1, min(4, math.ceil(total / SENDER_RATE)))
    delay = 1.5 + 0.2 * k  # the processes start together once all are up
    start_at = time.time() + delay
    longest = max((float(v[-1]) for v in schedules.values() if len(v)), default=0.0)
    parts = await asyncio.gather(*(_sender_process(address, frame_shape, {a: v[j::k] for a, v in schedules.items()},
                                                   timeout_s, start_at, longest) for j in range(k)))
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
    return {"apps": apps, "cpu_s": sum(p["cpu_s"] for p in parts), "processes": k, "start_delay_s": delay}


async def _sender_process(address: str, frame_shape: Sequence[int], schedules: dict[str, np.ndarray],
                          timeout_s: float, start_at: float, longest: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        out = Path(tmp) / "out.json"
        spec.write_text(json.dumps({"address": address, "frame_shape": list(frame_shape), "timeout_s": timeout_s,
                                    "start_at": start_at,
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


def intervals_file(times: np.ndarray, path: Path) -> None:
    """perf_analyzer's `--request-intervals`: the gaps between send times, in whole microseconds (>= 1)."""
    gaps = np.diff(np.concatenate([[0.0], np.asarray(times, float)]))
    path.write_text("\n".join(str(max(1, int(round(g * 1e6)))) for g in gaps) + "\n")


def parse_pa_csv(text: str) -> list[dict[str, float]]:
    """Rows of perf_analyzer's `-f` CSV: concurrency or request rate, throughput, P50/P90/P95/P99 and
    average latency (ms)."""
    rows = []
    for r in csv.DictReader(io.StringIO(text)):
        def us(key: str, r: dict = r) -> float:
            v = r.get(key)
            return float(v) / 1000.0 if v not in (None, "") else math.nan
        level_key = "Concurrency" if "Concurrency" in r else "Request Rate"
        rows.append({"level": float(r.get(level_key) or math.nan), "throughput": float(r["Inferences/Second"]),
                     "p50_ms": us("p50 latency"), "p90_ms": us("p90 latency"), "p95_ms": us("p95 latency"),
                     "p99_ms": us("p99 latency"), "avg_ms": us("Avg latency")})
    return rows


def pa_records(export: dict, slo_ms: float) -> dict[str, Any]:
    """Per-request figures of a perf_analyzer `--profile-export-file` (one experiment): latency (ms,
    send to last response), status (OK, or NO_REPLY without a response), and the span of sends (s)."""
    reqs = [r for e in export.get("experiments", []) for r in e.get("requests", [])]
    ts = np.array([r["timestamp"] for r in reqs], float)
    lat, st = [], []
    for r in reqs:
        resp = r.get("response_timestamps") or []
        if resp:
            lat.append((resp[-1] - r["timestamp"]) / 1e6)
            st.append(OK)
        else:
            lat.append(math.nan)
            st.append(NO_REPLY)
    span = float((ts.max() - ts.min()) / 1e9) if ts.size > 1 else math.nan
    return {"latency_ms": lat, "status": st, "span_s": span, "requests": len(reqs)}


def _pa_summary(out: str) -> dict[str, float]:
    """Throughput and client latencies from perf_analyzer's text output (the last measurement)."""
    def last(pattern: str) -> float:
        found = re.findall(pattern, out)
        return float(found[-1]) if found else math.nan
    return {"throughput": last(r"Throughput: ([\d.]+) infer/sec"), "p50_ms": last(r"p50 latency: (\d+) usec") / 1000,
            "p99_ms": last(r"p99 latency: (\d+) usec") / 1000, "avg_ms": last(r"Avg latency: (\d+) usec") / 1000}


async def run_pa(args: Sequence[str], timeout_s: float) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(str(PERF_ANALYZER), *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, "perf_analyzer timed out"
    return proc.returncode or 0, out.decode(errors="replace")


# --------------------------------------------------------------------------------------------------
# Configs: an emulated `serve` section where a config has none; the one-module capacity config.
# --------------------------------------------------------------------------------------------------


def with_emulated_serve(workload, dispatch: str | None = None):
    """The workload with a `serve` section of emulated workers: its own if it has one (dispatch
    overridden), else the demo's serve settings with one emulated worker per declared GPU of each
    hardware kind (kinds without a count: as many as the plan uses)."""
    from harpagon.config import load_workload
    from harpagon.config.schema import ServeConfig, WorkerGroup

    serve = workload.serve
    if serve is None:
        demo = load_workload([ROOT / "configs" / "demo.yaml"]).serve
        counts = {h.name: h.count for h in workload.hardware}
        if any(c is None for c in counts.values()):
            from harpagon.planner.harpagon import plan as harpagon_plan
            used = harpagon_plan(workload, settings_of(demo)).workers_by_hardware()
            counts = {h: c if c is not None else used.get(h, 0) for h, c in counts.items()}
        serve = demo.model_copy(update={"workers": tuple(WorkerGroup(device=f"emulated:{h}", count=c)
                                                         for h, c in counts.items() if c),
                                        "frame_shape": CAPACITY_FRAME})
    else:
        groups = tuple(g for g in serve.workers)
        if not groups or any(not g.device.startswith("emulated:") for g in groups):
            raise ValueError("the live bench runs emulated workers only: list emulated:HARDWARE workers")
        serve = ServeConfig.model_validate(serve.model_dump())
    if dispatch:
        serve = serve.model_copy(update={"dispatch": dispatch})
    return workload.model_copy(update={"serve": serve})


#: The capacity app: ResNet-50 on emulated V100s, a generous SLO, tiny frames (the dispatch cost per
#: frame is what is measured, not the bytes; and perf_analyzer's per-request export stays small).
CAPACITY_SLO_MS = 200.0
CAPACITY_FRAME = (8, 8, 3)
CAPACITY_INPUT = (3, 8, 8)


def capacity_workload(rate: float):
    """A one-module app at `rate` on as many emulated V100s as the planner wants for it."""
    import yaml

    from harpagon.config.schema import ServeConfig, WorkerGroup, Workload
    from harpagon.planner.harpagon import plan as harpagon_plan

    raw = {k: (yaml.safe_load((ROOT / "models" / "profiles" / f"{k}.yaml").read_text()) or {})
           for k in ("hardware", "catalog")}
    w = Workload.model_validate({
        "hardware": [h for h in raw["hardware"]["hardware"] if h["name"] == "v100"],
        "profiles": [p for p in raw["catalog"]["profiles"] if p["hardware"] == "v100" and p["model"] == "resnet50"],
        "apps": [{"name": "one", "rate": rate, "slo_ms": CAPACITY_SLO_MS,
                  "modules": [{"name": "classify", "model": "resnet50"}]}],
    })
    serve = ServeConfig(input_shape=CAPACITY_INPUT, frame_shape=CAPACITY_FRAME, overhead_ms=5, max_utilization=0.8)
    n = harpagon_plan(w, settings_of(serve)).workers_by_hardware().get("v100", 1)
    return w.model_copy(update={"serve": serve.model_copy(update={"workers": (WorkerGroup(device="emulated:v100",
                                                                                          count=max(1, n)),)})})


# --------------------------------------------------------------------------------------------------
# Driving a cluster.
# --------------------------------------------------------------------------------------------------


def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _plane_stats(plane) -> dict | None:
    stats = getattr(plane, "stats", None)
    if not callable(stats):
        return None
    try:
        return dict(stats())
    except Exception:  # the runtime under refactor: report the split as missing rather than fail the bench
        return None


def module_results(plane, plan) -> list[ModuleResult]:
    """Each planned module's measured latency (dispatch to result) against the plan's prediction: from
    `stats()` (cumulative) where the runtime has it, else from the live module's latency window."""
    stats = _plane_stats(plane)
    out = []
    for ap in plan.apps:
        for mp in ap.modules:
            key = (ap.name, mp.name)
            if stats is not None:
                s = stats.get(key)
                samples, source = (list(getattr(s, "latency_ms", ())) if s is not None else []), "stats"
            else:
                live = getattr(plane, "modules", {}).get(key)
                samples, source = list(getattr(live, "latencies_ms", ()) or ()), "window"
            p50, p99, mx, n = percentiles(samples)
            out.append(ModuleResult(ap.name, mp.name, mp.predicted_latency_ms, mp.budget_ms, plan.settings.overhead_ms,
                                    n, p50, p99, mx, source))
    return out


def _app_results(data: dict, plan, arrivals: str, rates: dict[str, float]) -> list[AppResult]:
    out = []
    for a in data["apps"]:
        ap = plan.app(a["name"])
        ld = app_load(a["name"], rates.get(a["name"], ap.rate), ap.slo_ms, a["latency_ms"], a["status"], a.get("errors"))
        goal = target(plan.promise, arrivals)
        p50, p99, mx, _ = percentiles(ld.latencies)
        out.append(AppResult(ld.name, ld.rate, ld.slo_ms, ld.sent, ld.answered, ld.within_slo, ld.dropped, ld.failed,
                             ld.attainment, goal, predicted(plan.promise, arrivals, ld.name), kept(ld, goal),
                             p50, p99, mx, ld.errors))
    return out


#: Above this total rate (frames/s) the Python sender falls behind on this machine; perf_analyzer sends.
PY_SENDER_MAX = 400.0


async def pa_sender(address: str, schedules: dict[str, np.ndarray], seconds: float, slo_ms: dict[str, float]) -> dict:
    """One perf_analyzer process per app at once (`--async`, its seeded gaps as `--request-intervals`,
    3 windows over `seconds`), per-request records from `--profile-export-file`. perf_analyzer has no
    per-frame schedule to compare with, so the records carry no lateness; `offered` is what it sent per
    second of its windows."""
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for name, times in schedules.items():
            iv, export = Path(tmp) / f"{name}.iv", Path(tmp) / f"{name}.json"
            intervals_file(times, iv)
            jobs.append((name, export, run_pa(
                ["-m", name, "-u", address, "-i", "grpc", "--async", "--request-intervals", str(iv),
                 "--max-threads", "8", "-p", str(max(1000, int(seconds * 1000 / 3))), "-r", "3", "-s", "1000",
                 "--profile-export-file", str(export)], seconds * 6 + 60)))
        results = await asyncio.gather(*(j[2] for j in jobs))
        apps = []
        for (name, export, _), (rc, out) in zip(jobs, results, strict=True):
            if rc != 0 or not export.exists():
                lines = [ln for ln in out.strip().splitlines() if ln.strip()]
                msg = f"perf_analyzer: {lines[-1][:120] if lines else rc}"
                apps.append({"name": name, "latency_ms": [], "status": [], "errors": {msg: 1}, "offered": math.nan})
                continue
            rec = pa_records(json.loads(export.read_text()), slo_ms[name])
            apps.append({"name": name, "latency_ms": rec["latency_ms"], "status": rec["status"], "errors": {},
                         "offered": rec["requests"] / rec["span_s"] if rec["span_s"] else math.nan})
    return {"apps": apps}


async def run_arrivals(cluster, config: str, arrivals: str, seconds: float, seed: int, use_pa: bool) -> RunResult:
    """One run of every app's frames at its planned rate, `arrivals`: through the Python sender process,
    or (`use_pa`) one perf_analyzer per app; the serving process's CPU over the window."""
    from harpagon.runtime.promise import describe

    controller = cluster.controller
    plan = controller.plan
    rates = {a.name: a.rate for a in cluster.workload.apps}  # the configured (planned) rates
    served = [a.name for a in plan.apps]
    schedules = {name: send_times(rates[name], seconds if not use_pa else max(2 * seconds, 10.0), arrivals,  # type: ignore[arg-type]
                                  np.random.default_rng([seed, i])) for i, name in enumerate(served)}
    plans_before = controller.plans
    cpu0, child0, t0 = _cpu_self(), _cpu_children(), time.perf_counter()
    slo = {a.name: a.slo_ms for a in plan.apps}
    address = f"{cluster.host}:{cluster.port}"
    if use_pa:
        data = await pa_sender(address, schedules, seconds, slo)
        wall = time.perf_counter() - t0
        generator = f"perf_analyzer ({len(served)} processes, --async)"
        frames = sum(len(a["status"]) for a in data["apps"])
        offered = sum(a["offered"] for a in data["apps"] if not math.isnan(a["offered"]))
        lag = {"p50": math.nan, "p99": math.nan, "max": math.nan, "late_share": math.nan}
        share = offered / sum(rates[n] for n in served) if served else math.nan
        # perf_analyzer sends between and around its windows too: CPU per frame over everything it sent
        sent_total = offered * wall if offered else frames
    else:
        data = await python_sender(address, cluster.serve.frame_shape, schedules,
                                   timeout_s=max(10.0, 20 * max(slo.values()) / 1000))
        wall = time.perf_counter() - t0 - data["start_delay_s"]  # the senders start together after a delay
        generator = f"python sender ({data['processes']} process{'es' if data['processes'] > 1 else ''})"
        sched = np.concatenate([np.asarray(a["times"], float) for a in data["apps"]])
        sent = np.concatenate([np.asarray(a["sent"], float) for a in data["apps"]])
        frames = int(sched.size)
        lag = lateness(sched, sent)
        share = float(np.isfinite(sent).mean()) if frames else math.nan
        sent_total = frames
    cpu, child = _cpu_self() - cpu0, _cpu_children() - child0
    final = controller.plan or plan
    r = RunResult(config, cluster.serve.dispatch, arrivals, seconds, generator,
                  final.cost_per_hour, dict(final.workers_by_hardware()), describe(final.promise),
                  controller.plans - plans_before, _app_results(data, final, arrivals, rates), cpu, wall,
                  int(round(sent_total)), child, lag, share)
    return r


async def _start(workload, console, unix_sockets: bool = True):
    from harpagon.runtime.serve import LocalCluster

    # The bench sends at the configured rates in runs with idle gaps between them; the controller would
    # read a gap as a rate drop and re-plan for a lower rate, so its rate-driven re-planning is off here
    # (any other re-plan, such as calibration's, still happens and is counted).
    cluster = LocalCluster(workload, grpc_port=0, metrics_port=0, follow_rates=False, unix_sockets=unix_sockets)
    await cluster.start()
    try:
        await cluster.ready(timeout_s=180)
    except BaseException:
        await cluster.stop()
        raise
    return cluster


async def run_cluster(config: str, workload, dispatch: str, seconds: float, seed: int, console,
                      perf_analyzer: bool, quick: bool, warmup_s: float = 0.0) -> ClusterResult:
    """A cluster of `config` with `dispatch`: a warm-up at the planned rates (the controller calibrates
    its plan with what it measures), then constant then Poisson arrivals, then (demo, batch-aware)
    perf_analyzer's figures on its first app."""
    w = with_emulated_serve(workload, dispatch)
    # perf_analyzer aborts the whole run at the first failed or dropped frame ("Thread [n] had error"), so
    # it cannot judge attainment where frames are dropped: the Python sender drives these runs, and its
    # lateness says where it, not the server, is the bottleneck. (`pa_sender` stays for loads without drops.)
    use_pa = False
    with console.status(f"{config} ({dispatch}): starting {sum(g.count for g in w.serve.workers)} emulated "
                        "workers and planning..."):
        cluster = await _start(w, console)
    try:
        warmup = None
        if warmup_s > 0:
            controller = cluster.controller
            plans = controller.plans
            with console.status(f"{config} ({dispatch}): {warmup_s:g} s of warm-up..."):
                await run_arrivals(cluster, config, "poisson", warmup_s, seed + 1000, use_pa)
                for _ in range(300):  # a re-plan the warm-up's measurements asked for finishes (bounded)
                    if controller.settled:
                        break
                    await asyncio.sleep(0.2)
            warmup = controller.plans - plans
            console.print(f"  {config} {dispatch}: warm-up {warmup_s:g} s, {warmup} re-plan(s)")
            cluster.plane.reset_stats()
        runs = []
        for arrivals in ARRIVALS:
            with console.status(f"{config} ({dispatch}): {seconds:g} s of {ARRIVALS_NAME[arrivals]} arrivals..."):
                r = await run_arrivals(cluster, config, arrivals, seconds, seed, use_pa)
            runs.append(r)
            console.print(f"  {config} {dispatch} {arrivals}: " + ", ".join(
                f"{a.app} {floor_pct(a.attainment)} ({goal_text(a.goal)})" for a in r.apps)
                + f"; server {r.cpu_per_frame_ms:.2f} ms CPU/frame, {r.server_cores:.2f} cores; "
                  f"client lag P99 {r.lag['p99']:.1f} ms")
            await asyncio.sleep(1.0)
        plan = cluster.controller.plan
        result = ClusterResult(config, dispatch, runs, module_results(cluster.plane, plan),
                               None if _plane_stats(cluster.plane) is None else hop_rows(_plane_stats(cluster.plane)),
                               warmup_replans=warmup)
        if perf_analyzer and dispatch == "batch-aware" and Path(config).name == "demo.yaml":
            result.perf_analyzer = await perf_analyzer_figures(cluster, plan.apps[0].name, console, quick)
        return result
    finally:
        await cluster.stop()


async def transport_comparison(config: str, workload, seconds: float, seed: int, console,
                               rounds: int = 2) -> list[dict[str, Any]]:
    """The demo's hops with workers on loopback TCP and on Unix sockets, side by side in one run
    (alternating, `rounds` times each: the machine's noise drifts over minutes): pooled transport
    samples of every module, Poisson arrivals at the planned rates."""
    w = with_emulated_serve(workload, "batch-aware")
    pooled: dict[str, list[float]] = {"tcp": [], "unix": []}
    for r in range(rounds):
        for transport in ("tcp", "unix"):
            with console.status(f"{config}: hops over {transport} (round {r + 1} of {rounds})..."):
                cluster = await _start(w, console, unix_sockets=transport == "unix")
                try:
                    await run_arrivals(cluster, config, "poisson", seconds, seed + 7 * r, False)
                    for st in cluster.plane.stats().values():
                        pooled[transport].extend(st.transport_ms)
                finally:
                    await cluster.stop()
    rows = []
    for transport, samples in pooled.items():
        p50, p99, _, n = percentiles(samples)
        rows.append({"transport": transport, "hops": n, "p50_ms": p50, "p99_ms": p99})
    console.print("  transport: " + ", ".join(f"{x['transport']} P50 {fmt(x['p50_ms'], 2)} / P99 "
                                              f"{fmt(x['p99_ms'], 2)} ms ({x['hops']} hops)" for x in rows))
    return rows


async def perf_analyzer_figures(cluster, app: str, console, quick: bool) -> list[dict[str, Any]]:
    """perf_analyzer on one app of a running cluster: sync and streaming over a concurrency range."""
    rows = []
    levels = "1:4:3" if quick else "1:8:3"
    window = "1000" if quick else "2000"
    modes = [("sync", ["--sync"]), ("streaming", ["--streaming", "--async"])]
    if not quick:
        modes.append(("async", ["--async"]))
    for mode, flags in modes:
        with console.status(f"perf_analyzer {mode} --concurrency-range {levels} on {app}..."), \
                tempfile.TemporaryDirectory() as tmp:
            csv_path = Path(tmp) / "pa.csv"
            rc, out = await run_pa(["-m", app, "-u", f"{cluster.host}:{cluster.port}", "-i", "grpc", "-p", window,
                                    "-r", "3", "-s", "1000", "--concurrency-range", levels, *flags,
                                    "-f", str(csv_path)], 240)
            if rc != 0 or not csv_path.exists():
                rows.append({"mode": mode, "error": out.strip().splitlines()[-1][:200] if out.strip() else f"rc {rc}"})
                continue
            for r in parse_pa_csv(csv_path.read_text()):
                rows.append({"mode": mode, **r})
    return rows


async def capacity_step(rate: float, seconds: float, use_pa: bool, seed: int, console,
                        profile_to: Path | None = None, streaming: bool = False) -> Step:
    """One bounded run of the one-module app at `rate`: fresh cluster sized by the planner, Poisson
    arrivals (perf_analyzer with the seeded intervals, or the Python sender), attainment against the
    plan's Poisson promise."""
    w = capacity_workload(rate)
    n = w.serve.workers[0].count
    try:
        cluster = await _start(w, console)
    except Exception as exc:
        return Step(rate, False, workers=n, why=f"cluster did not start: {exc}")
    prof = cProfile.Profile() if profile_to else None
    try:
        plan = cluster.controller.plan
        goal = target(plan.promise, "poisson")
        plans0 = cluster.controller.plans
        cpu0, child0 = _cpu_self(), _cpu_children()
        if prof:
            prof.enable()
        t0 = time.perf_counter()
        if use_pa:
            rec, offered, wall = await _pa_rate_run(cluster, "one", rate, seconds, seed, streaming)
            if isinstance(rec, str):
                return Step(rate, False, goal=goal, workers=n, why=rec)
        else:
            times = send_times(rate, seconds, "poisson", np.random.default_rng([seed, 0]))
            data = await python_sender(f"{cluster.host}:{cluster.port}", CAPACITY_FRAME, {"one": times}, 10.0)
            a = data["apps"][0]
            rec = {"latency_ms": a["latency_ms"], "status": a["status"]}
            sent = np.asarray(a["sent"], float)
            on_time = np.isfinite(sent) & ((sent - times) * 1000 <= LATE_SEND_MS)
            wall = time.perf_counter() - t0 - data["start_delay_s"]
            offered = rate * float(on_time.mean()) if times.size else math.nan
        if prof:
            prof.disable()
        cpu, child = _cpu_self() - cpu0, _cpu_children() - child0
        ld = app_load("one", rate, CAPACITY_SLO_MS, rec["latency_ms"], rec["status"])
        p50, p99, _, _ = percentiles(ld.latencies)
        ok = bool(kept(ld, goal))
        why = ""
        if offered < OFFERED_SHARE * rate:
            ok, why = False, f"client-bound: got out {offered:.0f} of {rate:.0f} frames/s"
        elif not ok:
            why = f"missed: {floor_pct(ld.attainment)} within {CAPACITY_SLO_MS:g} ms"
        step = Step(rate, ok, ld.attainment, goal, offered, ld.answered / wall if wall > 0 else math.nan, p50, p99,
                    1000 * cpu / max(ld.sent, 1), cpu / wall if wall > 0 else math.nan,
                    child / wall if wall > 0 else math.nan, n, cluster.controller.plans - plans0, why)
        if prof and profile_to:
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
            profile_to.write_text(s.getvalue())
        return step
    finally:
        if prof:
            prof.disable()
        await cluster.stop()


async def _pa_rate_run(cluster, app: str, rate: float, seconds: float, seed: int, streaming: bool = False):
    """perf_analyzer at `rate` with seeded Poisson intervals (async), per-request export: records,
    offered rate (requests in its windows / their span), wall seconds; or an error line."""
    with tempfile.TemporaryDirectory() as tmp:
        iv = Path(tmp) / "intervals.txt"
        intervals_file(send_times(rate, max(seconds * 2, 10.0), "poisson", np.random.default_rng([seed, 0])), iv)
        export = Path(tmp) / "export.json"
        window_ms = max(1000, int(seconds * 1000 / 3))
        t0 = time.perf_counter()
        rc, out = await run_pa(["-m", app, "-u", f"{cluster.host}:{cluster.port}", "-i", "grpc", "--async",
                                "--request-intervals", str(iv), "--max-threads", "16", "-p", str(window_ms),
                                "-r", "3", "-s", "1000", "--profile-export-file", str(export),
                                *(["--streaming"] if streaming else [])], seconds * 6 + 60)
        wall = time.perf_counter() - t0
        if rc != 0 or not export.exists():
            lines = [ln for ln in out.strip().splitlines() if ln.strip()]
            return (f"perf_analyzer failed: {lines[-1][:160] if lines else rc}"), math.nan, wall
        rec = pa_records(json.loads(export.read_text()), CAPACITY_SLO_MS)
        offered = rec["requests"] / rec["span_s"] if rec["span_s"] and rec["span_s"] > 0 else math.nan
        return rec, offered, wall


# --------------------------------------------------------------------------------------------------
# The report.
# --------------------------------------------------------------------------------------------------


@dataclass
class Report:
    command: str
    date: str
    seconds: float
    clusters: list[ClusterResult]
    capacity: Capacity | None
    capacity_generator: str
    profile_text: str = ""
    capacity_streaming: Capacity | None = None
    """The same search with perf_analyzer's `--streaming` (ModelStreamInfer: one stream, many frames)."""
    transports: list[dict[str, Any]] = field(default_factory=list)
    """The demo's hops over loopback TCP and over Unix sockets, side by side."""
    elapsed_s: float = math.nan
    machine: str = ""
    notes: list[str] = field(default_factory=list)


def _capacity_lines(label: str, cap: Capacity) -> list[str]:
    best = "none (not even the first step)" if cap.best is None else f"**{cap.best:.0f} frames/s**"
    lines = [f"**{label}**: highest rate keeping the promise: {best}"
             + (f"; lowest that did not: {cap.first_failure:.0f} frames/s" if cap.first_failure else "")
             + f" (goal ≥ {CAPACITY_GOAL:,.0f} frames/s: "
             + ("met" if cap.best is not None and cap.best >= CAPACITY_GOAL else "**not met**") + ").", ""]
    rows = [[f"{s.rate:g}", str(s.workers), fmt(s.offered, 0), fmt(s.answered, 0), floor_pct(s.attainment),
             goal_text(s.goal), fmt(s.p50_ms), fmt(s.p99_ms), fmt(s.server_cpu_per_frame_ms, 3),
             fmt(s.server_cores, 2), fmt(s.client_cores, 2), str(s.plans), "kept" if s.ok else s.why or "missed"]
            for s in cap.steps]
    lines += md_table(["rate/s", "workers", "offered/s", "answered/s", "attainment", "promise", "P50 ms", "P99 ms",
                       "server CPU ms/frame", "server cores", "client cores", "re-plans", "verdict"], rows,
                      right=range(12))
    return lines + [""]


def _run_rows(clusters: Sequence[ClusterResult]) -> list[list[str]]:
    rows = []
    for c in clusters:
        for r in c.runs:
            for a in r.apps:
                rows.append([Path(c.config).name, c.dispatch, r.arrivals, a.app, f"{a.rate:g}", f"{a.slo_ms:g}",
                             str(a.sent), str(a.answered), str(a.dropped), str(a.failed), fmt(a.p50_ms), fmt(a.p99_ms),
                             floor_pct(a.attainment), goal_text(a.goal), floor_pct(a.replay), _verdict_cell(a)])
    return rows


def build_markdown(rep: Report, plots: Sequence[str] = ()) -> str:
    L: list[str] = []
    L += ["# Live benchmark on EMULATED workers", "",
          ("**Every worker here is emulated**: it \"runs\" a batch by sleeping the batch's profiled latency "
          "(`EmulatedExecutor`), so no GPU is involved. The figures measure this runtime's frontend, "
          "controller, dispatch and RPCs on this machine, and the planner's promise against live traffic; "
          "they say nothing about model execution speed."), "",
          f"Command: `{rep.command}`", "",
          f"Date: {rep.date}" + (f"; {rep.elapsed_s / 60:.1f} min" if not math.isnan(rep.elapsed_s) else "")
          + (f"; machine: {rep.machine}" if rep.machine else ""), "",
          ("Method: each config is served by `LocalCluster` (frontend and controller, each on an event loop of its own) **in the "
          "bench process**, with one process per emulated worker; the load generator is **another process** "
          f"(a Python gRPC sender with requests built once; perf_analyzer where named), so its CPU is not the "
          f"frontend's. Each run sends every app's frames at its planned rate for {rep.seconds:g} s, evenly "
          "spaced (*constant*) or as a seeded Poisson process (*Poisson*; `harpagon.runtime.demo.send_times`, "
          "the same arrivals for both dispatch policies). *Attainment* = frames answered within the SLO / "
          "frames sent, client-measured; dropped and failed frames are late. *Promise*: `promise.target` "
          "(every frame under constant arrivals; the promised share under Poisson); *replay*: what the "
          "planner's replay predicted (`promise.predicted`). A config without a `serve` section gets the "
          "demo's serve settings with one emulated worker per GPU its hardware section declares. The "
          "controller's rate-driven re-planning is switched off during the bench (the idle gaps between runs "
          "would read as a rate drop); any other re-plan still happens and is counted. Every run of sections "
          "1-5 is driven by the Python sender: perf_analyzer aborts its whole run at the first dropped frame "
          "(`Thread [n] had error: ... deadline`), so it cannot measure attainment where frames are dropped. "
          "A config without a `serve` section gets 8x8x3 frames."), ""]
    for n in rep.notes:
        L += [f"> {n}", ""]

    L += ["## 1. Attainment against the promise, per app", ""]
    warm = [c for c in rep.clusters if c.warmup_replans is not None]
    if warm:
        L += [("Before its measured runs each cluster served its apps at their planned rates (Poisson) for a "
               "warm-up, so that the controller could calibrate its plan with the batch latencies and hop overheads "
               "it measured (README, \"Self-calibration\"); per-module figures start after it. Re-plans during the "
               "warm-up: " + ", ".join(f"{Path(c.config).name} {c.dispatch} {c.warmup_replans}" for c in warm)
               + "."), ""]
    L += md_table(["config", "dispatch", "arrivals", "app", "rate/s", "SLO ms", "sent", "answered", "dropped",
                   "failed", "P50 ms", "P99 ms", "attainment", "promise", "replay", "verdict"], _run_rows(rep.clusters),
                  right=range(4, 15))
    L += [""]
    errs = [(Path(c.config).name, c.dispatch, r.arrivals, a.app, m, k) for c in rep.clusters for r in c.runs
            for a in r.apps for m, k in a.errors.items()]
    if errs:
        L += ["Failures:", ""] + [f"- {cfg} {d} {arr} {app}: {k} x `{m}`" for cfg, d, arr, app, m, k in errs] + [""]
    for p in plots:
        if "attainment" in p:
            L += [f"![attainment per app]({p})", ""]

    L += ["## 2. Per module: measured latency against the plan's prediction", "",
          ("Measured from the module's dispatcher to its result (collection, transport, worker queue and "
          "execution), over both runs of the cluster; *predicted* is `predicted_latency_ms` of the plan in "
          "force at the end, *budget* its share of the SLO, *+ overhead* adds the plan's per-hop allowance "
          "`serve.overhead_ms`, which the planner keeps outside a module's prediction."), ""]
    rows = []
    for c in rep.clusters:
        for m in c.modules:
            allowed = m.predicted_ms + m.overhead_ms
            rows.append([Path(c.config).name, c.dispatch, m.app, m.module, str(m.requests), fmt(m.p50_ms),
                         fmt(m.p99_ms), fmt(m.max_ms), fmt(m.predicted_ms), fmt(m.budget_ms), fmt(allowed),
                         "-" if math.isnan(m.p99_ms) else "yes" if m.p99_ms <= m.predicted_ms else
                         "within +overhead" if m.p99_ms <= allowed else "no"])
    L += md_table(["config", "dispatch", "app", "module", "requests", "P50 ms", "P99 ms", "max ms", "predicted ms",
                   "budget ms", "predicted + overhead ms", "P99 ≤ predicted"], rows, right=range(4, 11))
    src = {m.source for c in rep.clusters for m in c.modules}
    if "window" in src:
        L += ["", ("(Latencies from the live modules' windows of the routes in force at the end: the runtime had "
                  "no `FrontendDataPlane.stats()`.)")]
    L += [""]

    L += ["## 3. Where a hop's time goes", ""]
    if all(c.hops is None for c in rep.clusters):
        L += [("**Missing**: the runtime this ran against had no `FrontendDataPlane.stats()`, so the split into "
              "frontend queue, batch collection, serialisation + transport, worker queue and execution could "
              "not be measured. Section 2 has each module's total."), ""]
    else:
        L += [("P50 / P99 in ms from `FrontendDataPlane.stats()` (cumulative over the cluster's runs). Frontend "
              "queue is per request (module runnable → submitted, resize included); the others per batch "
              "(collection: first request in → shipped; transport: the RPC round trip less the worker's queue "
              "and execution, as the worker reported them). *Overhead P99* = P99(frontend queue) + "
              f"P99(transport), against the goal of ≤ {HOP_OVERHEAD_GOAL_MS:g} ms."), ""]
        rows = []
        for c in rep.clusters:
            for h in c.hops or []:
                rows.append([Path(c.config).name, c.dispatch, h["app"], h["module"], str(h["requests"]),
                             str(h["batches"]), str(h["dummies"]),
                             *[f"{fmt(h[k][0], 2)} / {fmt(h[k][1], 2)}" for k, _, _ in HOPS],
                             fmt(h["overhead_p99_ms"], 2)])
        L += md_table(["config", "dispatch", "app", "module", "requests", "batches", "dummies",
                       *[label for _, label, _ in HOPS], "overhead P99"], rows, right=range(4, 13))
        L += [""]
        for p in plots:
            if "hops" in p:
                L += [f"![hop split]({p})", ""]

    if rep.transports:
        base = next((x for x in rep.transports if x["transport"] == "tcp"), None)
        L += ["### Workers on loopback TCP against Unix sockets", "",
              ("The demo (batch-aware, Poisson arrivals at the planned rates), its workers listening on loopback "
               "TCP or on Unix sockets (`harpagon worker --unix-socket`, what `harpagon serve` does), alternating "
               "in one run; serialisation + transport of every batch of every module, pooled."), ""]
        rows = [[x["transport"], str(x["hops"]), fmt(x["p50_ms"], 2), fmt(x["p99_ms"], 2),
                 "-" if base is None or x is base else f"{x['p50_ms'] / base['p50_ms']:.2f} / "
                                                      f"{x['p99_ms'] / base['p99_ms']:.2f}"]
                for x in rep.transports]
        L += md_table(["workers on", "hops", "P50 ms", "P99 ms", "P50 / P99 against TCP"], rows, right=range(1, 5))
        L += [""]
    L += ["## 4. Frontend CPU", "",
          ("CPU seconds of the serving process (frontend + controller; the workers and the load generator are "
          "other processes) over each run's window, per frame sent, and as cores (CPU s per wall s). *Client* "
          "is the load generator's process; *client lag* how late it sent frames against their schedule "
          f"(*late* = more than {LATE_SEND_MS:g} ms)."), ""]
    rows = []
    for c in rep.clusters:
        for r in c.runs:
            rows.append([Path(c.config).name, c.dispatch, r.arrivals, f"{sum(a.rate for a in r.apps):g}",
                         str(r.frames), fmt(r.cpu_per_frame_ms, 2), fmt(r.server_cores, 2), fmt(r.client_cores, 2),
                         floor_pct(r.offered_share), f"{fmt(r.lag['p50'])} / {fmt(r.lag['p99'])}",
                         floor_pct(r.lag["late_share"]), str(r.plans_during), r.generator])
    L += md_table(["config", "dispatch", "arrivals", "frames/s", "frames", "server CPU ms/frame", "server cores",
                   "client cores", "offered", "client lag P50 / P99 ms", "sent late", "re-plans", "load generator"],
                  rows, right=range(3, 12))
    L += [""]

    L += ["## 5. Batch-aware against request-level dispatch", "",
          ("Same config, same seeded arrivals; each policy planned with its own latency formula "
          "(`serve.dispatch`). Worst app's attainment per run, and the plan's cost."), ""]
    rows = []
    by = {(c.config, c.dispatch): c for c in rep.clusters}
    for cfg in dict.fromkeys(c.config for c in rep.clusters):
        for arrivals in ARRIVALS:
            cells = [Path(cfg).name, arrivals]
            for d in DISPATCHES:
                c = by.get((cfg, d))
                r = next((r for r in c.runs if r.arrivals == arrivals), None) if c else None
                if r is None:
                    cells += ["-", "-", "-"]
                    continue
                worst = min(r.apps, key=lambda a: a.attainment if not math.isnan(a.attainment) else -1)
                n_kept = sum(bool(a.kept) for a in r.apps)
                cells += [f"{floor_pct(worst.attainment)} ({worst.app})", f"{n_kept}/{len(r.apps)}",
                          f"${r.cost_per_hour:.3f}/h"]
            rows.append(cells)
    L += md_table(["config", "arrivals", "batch-aware: worst app", "apps kept", "cost", "request-level: worst app",
                   "apps kept", "cost"], rows, right=range(2, 8))
    L += [""]

    L += ["## 6. Capacity of one frontend process", ""]
    cap = rep.capacity
    if cap is None:
        L += ["Not measured in this run.", ""]
    else:
        L += [(f"One-module app (ResNet-50 on emulated V100s, SLO {CAPACITY_SLO_MS:g} ms, "
              f"{'x'.join(map(str, CAPACITY_FRAME))} frames so that the per-frame dispatch cost is measured, not "
              "the bytes), planned for each rate by the planner (workers started = what the plan uses), Poisson "
              f"arrivals, load from {rep.capacity_generator} in its own process. A step keeps the promise when "
              f"its attainment ≥ the plan's Poisson promise and the client got out ≥ {OFFERED_SHARE:.0%} of the "
              "rate. Doubling, then bisection."), ""]
        for label, c in (("unary `ModelInfer` (perf_analyzer `--async`)", cap),
                         ("`ModelStreamInfer` (perf_analyzer `--async --streaming`)", rep.capacity_streaming)):
            if c is not None:
                L += _capacity_lines(label, c)
        for p in plots:
            if "capacity" in p:
                L += [f"![capacity search]({p})", ""]
    if rep.profile_text:
        L += ["### Where the serving process's event loop spends its time", "",
              ("cProfile of the event loop thread (the frontend and controller; gRPC's C threads are not in it) "
              "over one capacity-sized run; top functions by own time. cProfile slows Python, so the shares "
              "matter, not the absolute times."), "", "```", rep.profile_text.strip(), "```", ""]

    L += ["## 7. perf_analyzer on the demo's traffic app", ""]
    pa = [row for c in rep.clusters for row in c.perf_analyzer]
    if not pa:
        L += ["Not run (no perf_analyzer, `--skip-perf-analyzer`, or no demo config).", ""]
    else:
        L += [("perf_analyzer 2.51 against the demo's batch-aware cluster (after its runs), closed loop at each "
              "concurrency: *sync* (`--sync`), *streaming* (`--streaming --async`), *async* (`--async`). A "
              "closed loop offers more than the planned 40 frames/s, so these are the cluster's limits under "
              "its plan, not its promise."), ""]
        rows = [[r["mode"], "-", "-", "-", "-", r["error"]] if "error" in r else
                [r["mode"], f"{r['level']:g}", fmt(r["throughput"]), fmt(r["p50_ms"]), fmt(r["p99_ms"]), ""]
                for r in pa]
        L += md_table(["mode", "concurrency", "frames/s", "P50 ms", "P99 ms", "error"], rows, right=range(1, 5))
        L += [""]
    return "\n".join(L) + "\n"


def write_csv(rep: Report, path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["config", "dispatch", "arrivals", "app", "rate", "slo_ms", "sent", "answered", "dropped", "failed",
                    "p50_ms", "p99_ms", "attainment", "promise", "replay", "kept", "cost_per_hour",
                    "server_cpu_ms_per_frame", "server_cores", "client_lag_p99_ms"])
        for c in rep.clusters:
            for r in c.runs:
                for a in r.apps:
                    w.writerow([Path(c.config).name, c.dispatch, r.arrivals, a.app, a.rate, a.slo_ms, a.sent,
                                a.answered, a.dropped, a.failed, f"{a.p50_ms:.3f}", f"{a.p99_ms:.3f}",
                                f"{a.attainment:.5f}", "" if a.goal is None else a.goal,
                                "" if a.replay is None else a.replay, a.kept, r.cost_per_hour,
                                f"{r.cpu_per_frame_ms:.4f}", f"{r.server_cores:.3f}", f"{r.lag['p99']:.2f}"])


def plots(rep: Report, out_dir: Path, stem: str) -> list[str]:
    """PNG plots next to the report (none if matplotlib is missing); their file names."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    names = []
    runs = [(c, r) for c in rep.clusters for r in c.runs]
    if runs:
        labels, values, colors = [], [], []
        for c, r in runs:
            for a in r.apps:
                labels.append(f"{Path(c.config).stem}/{a.app}\n{'BA' if c.dispatch == 'batch-aware' else 'RL'} "
                              f"{r.arrivals[:4]}")
                values.append(100 * (0 if math.isnan(a.attainment) else a.attainment))
                colors.append("tab:green" if a.kept else "tab:red" if a.kept is False else "tab:gray")
        fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(labels)), 4.5))
        ax.bar(range(len(values)), values, color=colors)
        ax.axhline(99, color="k", lw=0.8, ls="--", label="99% (Poisson promise)")
        ax.set_xticks(range(len(values)), labels, rotation=90, fontsize=6)
        ax.set_ylabel("frames within SLO (%)")
        ax.set_ylim(0, 101)
        ax.set_title("Live attainment per app on EMULATED workers (green: promise kept, red: missed)")
        ax.legend(loc="lower left", fontsize=7)
        fig.tight_layout()
        name = f"{stem}_attainment.png"
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
        names.append(name)
    hops = [(c, h) for c in rep.clusters for h in (c.hops or [])]
    if hops:
        fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(hops)), 4.5))
        bottom = np.zeros(len(hops))
        for k, label, _ in HOPS:
            v = np.nan_to_num(np.array([h[k][0] for _, h in hops]))
            ax.bar(range(len(hops)), v, bottom=bottom, label=label)
            bottom += v
        ax.set_xticks(range(len(hops)), [f"{Path(c.config).stem}/{h['app']}/{h['module']}\n"
                                         f"{'BA' if c.dispatch == 'batch-aware' else 'RL'}" for c, h in hops],
                      rotation=90, fontsize=6)
        ax.set_ylabel("median ms (stacked; batch hops per batch)")
        ax.set_title("Hop split per module (EMULATED workers)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"{stem}_hops.png"
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
        names.append(name)
    if rep.capacity and rep.capacity.steps:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax2 = ax.twinx()
        for label, c, color in (("unary", rep.capacity, "tab:blue"), ("streaming", rep.capacity_streaming, "tab:green")):
            if c is None or not c.steps:
                continue
            steps = sorted((s for s in c.steps if not math.isnan(s.attainment)), key=lambda s: s.rate)  # measured
            x = [s.rate for s in steps]
            ax.plot(x, [100 * s.attainment for s in steps], "o-", color=color, label=f"attainment (%), {label}")
            ax2.plot(x, [s.server_cores for s in steps], "s--", color=color, alpha=0.5, label=f"server cores, {label}")
        ax.set_xscale("log")
        ax.set_xlabel("offered frames/s (one-module app)")
        ax.set_ylabel("frames within SLO (%)")
        ax.axvline(CAPACITY_GOAL, color="gray", ls=":", label=f"goal {CAPACITY_GOAL:,.0f}/s")
        ax2.set_ylabel("serving process CPU (cores)")
        ax.set_title("Capacity of one frontend process (EMULATED workers)")
        fig.legend(loc="center left", bbox_to_anchor=(0.1, 0.45), fontsize=7)
        fig.tight_layout()
        name = f"{stem}_capacity.png"
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
        names.append(name)
    return names


def write_report(rep: Report, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.stem
    names = plots(rep, out.parent, stem)
    write_csv(rep, out.with_suffix(".csv"))
    text = build_markdown(rep, names)
    reading = out.with_name(f"{stem}.reading.md")
    if reading.exists():  # a hand-written reading of the figures, kept across re-runs
        text += "\n" + reading.read_text()
    out.write_text(text)
    return out


# --------------------------------------------------------------------------------------------------
# The whole bench.
# --------------------------------------------------------------------------------------------------


async def run_bench(configs: Sequence[str], seconds: float, out: Path, command: str, *, seed: int = 0,
                    perf_analyzer: bool = True, quick: bool = False, capacity: bool = True,
                    capacity_limit: float = 8000.0, console=None, rate_scale: float = 1.0,
                    warmup_s: float = 0.0) -> Path:
    from rich.console import Console

    from harpagon.config import load_workload

    console = console or Console()
    started = time.perf_counter()
    import signal

    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop the clusters' workers on the way out
        loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
    pa = perf_analyzer and PERF_ANALYZER.exists()
    notes = []
    if perf_analyzer and not pa:
        notes.append(f"perf_analyzer was not found at {PERF_ANALYZER.relative_to(ROOT)} (scripts/get_perf_analyzer.sh); "
                     "its sections use the Python sender or are skipped.")
    clusters = []
    for cfg in configs:
        workload = load_workload([cfg])
        if rate_scale != 1.0:
            workload = workload.model_copy(update={"apps": tuple(a.model_copy(update={"rate": a.rate * rate_scale})
                                                                 for a in workload.apps)})
            notes.append(f"Every app of {Path(cfg).name} runs at {rate_scale:g}x its configured rate "
                         "(`--rate-scale`), planned for that rate.")
        for d in DISPATCHES:
            try:
                clusters.append(await run_cluster(cfg, workload, d, seconds, seed, console, pa, quick, warmup_s))
            except Exception as exc:
                console.print(f"[red]{cfg} {d}: {exc}[/red]")
                notes.append(f"{cfg} with {d} dispatch did not run: {exc}")
    transports: list[dict[str, Any]] = []
    demo = next((c for c in configs if Path(c).name == "demo.yaml"), None)
    if demo is not None and not quick:
        transports = await transport_comparison(demo, load_workload([demo]), seconds, seed, console)
    if clusters and all(c.hops is None for c in clusters):
        notes.append("The hop split (section 3) is missing: the runtime had no `FrontendDataPlane.stats()`.")
    cap = cap_streaming = None
    profile_text = ""
    generator = "perf_analyzer 2.51 (C++, `--async --request-intervals`, seeded Poisson gaps)" if pa else \
        "the Python sender"
    if capacity:
        step_s = 6.0 if quick else 9.0

        def progress(s: Step) -> None:
            console.print(f"  capacity {s.rate:g}/s on {s.workers} workers: {floor_pct(s.attainment)} "
                          f"(promise {goal_text(s.goal)}), offered {fmt(s.offered, 0)}/s, server "
                          f"{fmt(s.server_cores, 2)} cores, client {fmt(s.client_cores, 2)} cores: "
                          + ("kept" if s.ok else s.why))

        cap = await _search_async(lambda r: capacity_step(r, step_s, pa, seed, console),
                                  start=250.0 if not quick else 500.0,
                                  limit=capacity_limit if not quick else 2000.0,
                                  bisect_steps=0 if quick else 3, progress=progress)
        if pa:
            console.print("capacity with perf_analyzer --streaming (ModelStreamInfer)")
            cap_streaming = await _search_async(
                lambda r: capacity_step(r, step_s, pa, seed, console, streaming=True),
                start=250.0 if not quick else 1000.0, limit=capacity_limit if not quick else 2000.0,
                bisect_steps=0 if quick else 3, progress=progress)
        if not quick:  # at 3/4 of the best rate: the profiler slows the loop
            rate = 0.75 * (cap.best or 500.0)
            with console.status(f"cProfile of the serving process at {rate:g} frames/s..."), \
                    tempfile.TemporaryDirectory() as tmp:
                p = Path(tmp) / "profile.txt"
                s = await capacity_step(rate, step_s, pa, seed, console, profile_to=p)
                profile_text = (f"at {rate:g} frames/s offered (under the profiler: {floor_pct(s.attainment)} "
                                f"within SLO, server {fmt(s.server_cores, 2)} cores)\n"
                                + (p.read_text() if p.exists() else ""))
                profile_text = _trim_profile(profile_text)
    rep = Report(command, time.strftime("%Y-%m-%d %H:%M %Z"), seconds, clusters, cap, generator, profile_text,
                 elapsed_s=time.perf_counter() - started, machine=_machine(), notes=notes,
                 capacity_streaming=cap_streaming, transports=transports)
    return write_report(rep, out)


async def _search_async(measure: Callable[[float], Awaitable[Step]], start: float, limit: float, bisect_steps: int,
                        progress: Callable[[Step], None]) -> Capacity:
    """`search_capacity` with an async `measure`: the pure driver runs in a thread and each of its
    measurements is awaited on this loop."""
    loop = asyncio.get_running_loop()

    def sync_measure(rate: float) -> Step:
        return asyncio.run_coroutine_threadsafe(measure(rate), loop).result()

    return await asyncio.to_thread(search_capacity, sync_measure, start, limit, bisect_steps, progress)


def _trim_profile(text: str) -> str:
    """cProfile's table without its preamble lines about ordering, paths shortened to the package."""
    out = []
    for line in text.splitlines():
        if line.strip().startswith(("Ordered by", "List reduced")):
            continue
        line = re.sub(r"\S*/site-packages/", "", line)
        line = re.sub(r"\S*/(harpagon/)", r"\1", line)
        line = re.sub(r"\S*/lib/python3\.\d+/", "", line)
        out.append(line.rstrip())
    return "\n".join(out)


def _machine() -> str:
    cores = os.cpu_count()
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{cores} cores ({model}), Python {sys.version.split()[0]}, no GPU used"


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "send":
        _sender_main(sys.argv[2], sys.argv[3])
    else:
        print("usage: python -m harpagon.bench.live send SPEC OUT (the bench's load generator)", file=sys.stderr)
        sys.exit(2)
