"""What the live bench measured, as plain data: the report, the CSV and the plots are built from these
alone, so that they can be made (and tested) without running anything."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


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


@dataclass
class ScaleOut:
    """The capacity search through `frontends` frontends, and the plan's cost at its highest kept rate
    against one frontend's plan at the same rate (planner only)."""

    frontends: int
    capacity: Capacity
    cost_per_hour: float = math.nan
    one_frontend_cost_per_hour: float = math.nan


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
    frame_kinds: list[tuple[str, int, Capacity]] = field(default_factory=list)
    """Per frame kind asked (`FrameKind.name`, e.g. "1280x720 JPEG"): the size of one request on the wire,
    bytes, and the capacity search of the one-module app with those frames (the Python sender)."""
    scale_out: list[ScaleOut] = field(default_factory=list)
    """The capacity search of the one-module app through 1, 2, 4, ... frontends (`--frontends`)."""
    elapsed_s: float = math.nan
    machine: str = ""
    notes: list[str] = field(default_factory=list)
