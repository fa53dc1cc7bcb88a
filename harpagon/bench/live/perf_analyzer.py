"""NVIDIA's perf_analyzer (C++) as a load generator and as a probe of a running cluster: its inputs
(send intervals), its outputs (CSV, per-request export) and its runs."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harpagon.bench.live.load import NO_REPLY, OK
from harpagon.bench.report import ROOT

PERF_ANALYZER = ROOT / ".tools" / "perf_analyzer"


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
