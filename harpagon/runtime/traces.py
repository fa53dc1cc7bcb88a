"""Per-frame traces (OpenTelemetry), off unless a frontend is given an OTLP endpoint.

A frame is one span (`frame APP`) with a child per hop (`hop MODULE`: the module's requests for that
frame, from dispatch to their results). Each hop carries the latency the plan in force gave its module
(the slowest of its tuples' planned latencies, docs/model.md) and the plan's version, so a late frame
names the hop that overran: the frame span's `harpagon.overran_hop`.

The spans are built when the frame ends, from the times recorded on the way, so nothing of
OpenTelemetry runs on a frame's path but a clock read per hop; with tracing off (the default) the data
plane holds no tracer and skips even that. The OpenTelemetry SDK and exporter are the `[traces]` extra.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], int]
"""Nanoseconds since the epoch (a span's time): `time.time_ns`, or the frontend's event-loop clock
anchored to it, so that spans agree with the deadlines the loop keeps."""

#: Span attributes (harpagon.*), named once: the tests and dashboards read them.
APP, SLO_MS, VERSION, STREAM, OUTCOME = ("harpagon.app", "harpagon.slo_ms", "harpagon.plan_version",
                                         "harpagon.stream", "harpagon.outcome")
MODULE, PLANNED_MS, REQUESTS, ELAPSED_MS = ("harpagon.module", "harpagon.planned_ms", "harpagon.requests",
                                            "harpagon.elapsed_ms")
OVERRAN_HOP, OVERRUN_MS = "harpagon.overran_hop", "harpagon.overrun_ms"


@dataclass
class HopTrace:
    module: str
    planned_ms: float
    """The plan's latency for this module's hop (0: unknown)."""
    start_ns: int
    requests: int = 0
    clock: Clock = time.time_ns
    end_ns: int | None = None
    error: str | None = None

    def done(self, error: BaseException | None = None) -> None:
        self.end_ns = self.clock()
        if error is not None:
            self.error = f"{type(error).__name__}: {error}"

    def overrun_ms(self, end_ns: int) -> float:
        """How far past its planned latency the hop ran (negative: within it); -inf when unplanned."""
        if self.planned_ms <= 0:
            return float("-inf")
        return ((self.end_ns or end_ns) - self.start_ns) / 1e6 - self.planned_ms


@dataclass
class FrameTrace:
    tracer: Any
    app: str
    slo_ms: float
    version: int
    stream: str
    clock: Clock = time.time_ns
    start_ns: int = 0
    hops: list[HopTrace] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.start_ns = self.start_ns or self.clock()

    def hop(self, module: str, planned_ms: float, requests: int) -> HopTrace:
        h = HopTrace(module, planned_ms, self.clock(), requests, self.clock)
        self.hops.append(h)
        return h

    def overran(self, end_ns: int) -> HopTrace | None:
        """The hop that ran furthest past its planned latency, if any did."""
        worst = max(self.hops, key=lambda h: h.overrun_ms(end_ns), default=None)
        return worst if worst is not None and worst.overrun_ms(end_ns) > 0 else None

    def end(self, outcome: str, error: BaseException | None = None) -> None:
        """The frame is answered (`answered`), late (`late`) or failed (`failed`): its spans go out."""
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        end_ns = self.clock()
        worst = self.overran(end_ns)
        attributes: dict[str, Any] = {APP: self.app, SLO_MS: self.slo_ms, VERSION: self.version,
                                      STREAM: self.stream, OUTCOME: outcome}
        if worst is not None:
            attributes |= {OVERRAN_HOP: worst.module, OVERRUN_MS: worst.overrun_ms(end_ns)}
        span = self.tracer.start_span(f"frame {self.app}", start_time=self.start_ns, attributes=attributes)
        parent = trace.set_span_in_context(span)
        for h in self.hops:
            child = self.tracer.start_span(
                f"hop {h.module}", context=parent, start_time=h.start_ns,
                attributes={APP: self.app, MODULE: h.module, PLANNED_MS: h.planned_ms, REQUESTS: h.requests,
                            VERSION: self.version, ELAPSED_MS: ((h.end_ns or end_ns) - h.start_ns) / 1e6})
            if h.error is not None:
                child.set_status(Status(StatusCode.ERROR, h.error))
            child.end(end_time=h.end_ns or end_ns)
        if outcome != "answered":
            why = f"{type(error).__name__}: {error}" if error is not None else outcome
            if worst is not None:
                why += f"; hop {worst.module} overran its planned {worst.planned_ms:.3g} ms by " \
                       f"{worst.overrun_ms(end_ns):.3g} ms"
            span.set_status(Status(StatusCode.ERROR, why))
        span.end(end_time=end_ns)


class Tracing:
    """Frame traces from an OpenTelemetry tracer (the SDK's, or a test's)."""

    def __init__(self, tracer: Any):
        self.tracer = tracer

    def frame(self, app: str, slo_ms: float, version: int, stream: str, clock: Clock = time.time_ns) -> FrameTrace:
        return FrameTrace(self.tracer, app, slo_ms, version, stream, clock)


def loop_clock(loop_time: Callable[[], float]) -> Clock:
    """An event loop's clock as epoch nanoseconds (anchored now)."""
    offset = time.time_ns() - int(loop_time() * 1e9)
    return lambda: offset + int(loop_time() * 1e9)


def otlp_tracing(endpoint: str, service: str) -> Tracing:
    """Spans exported in batches over OTLP/gRPC to `endpoint` (`http://HOST:4317` in plaintext,
    `https://...` with TLS), as service `service`; flushed when the process exits."""
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"--otlp-endpoint needs {exc.name}", name="opentelemetry") from exc
    check_endpoint(endpoint)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint,
                                                                    insecure=endpoint.startswith("http://"))))
    return Tracing(provider.get_tracer("harpagon"))


def check_endpoint(endpoint: str) -> None:
    if not endpoint.startswith(("http://", "https://")) or len(endpoint.split("://", 1)[1]) == 0:
        raise ValueError(f"--otlp-endpoint must be http://HOST:PORT or https://HOST:PORT, got {endpoint!r}")
