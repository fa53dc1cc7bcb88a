"""Per-frame traces through the frontend's data plane on fake workers and the virtual clock, caught by
the OpenTelemetry SDK's in-memory exporter: a span per frame and per hop, each hop with its planned
latency and the plan's version, and a late frame naming the hop that overran."""

from __future__ import annotations

import asyncio

import pytest

from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.traces import OVERRAN_HOP, PLANNED_MS, VERSION, Tracing
from harpagon.runtime.wire.errors import DeadlineExceeded
from harpagon.runtime.wire.routes import ModuleRoute
from tests.fakes import FakeWorkers
from tests.unit.test_frontend_plane import FRAME, frame, make_app, route, run, table

pytest.importorskip("opentelemetry.sdk", reason="the [traces] extra")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import StatusCode  # noqa: E402


def tracing() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider.get_tracer("test")), exporter


def planned(r: ModuleRoute, ms: float) -> ModuleRoute:
    return ModuleRoute(r.module, r.input_shape, r.tuples, r.workers, r.names, (ms,))


CHAIN = make_app("chain", [{"name": "a", "model": "m"}, {"name": "b", "model": "m", "after": ["a"]}], slo_ms=300.0)


def serve(latency: dict[str, float], frames: int = 1):
    """`frames` frames through a chain a -> b planned at 100 ms a hop, plan version 7."""
    tr, exporter = tracing()
    fake = FakeWorkers(latency=latency)

    async def scenario():
        plane = FrontendDataPlane(table(CHAIN, {"a": planned(route("a", "wa"), 100.0),
                                                "b": planned(route("b", "wb"), 100.0)}, version=7),
                                  frame_shape=FRAME, client=fake, tracing=tr)
        return await asyncio.gather(*(plane.infer("chain", frame()) for _ in range(frames)), return_exceptions=True)

    return run(scenario()), exporter.get_finished_spans()


def test_a_frame_is_a_span_with_a_child_per_hop_carrying_its_planned_latency_and_the_plan_version():
    results, spans = serve({"wa": 0.02, "wb": 0.03})
    assert isinstance(results[0], dict)
    frame_span = next(s for s in spans if s.name == "frame chain")
    hops = {s.name: s for s in spans if s.name.startswith("hop ")}
    assert set(hops) == {"hop a", "hop b"}
    for h in hops.values():
        assert h.parent.span_id == frame_span.context.span_id
        assert h.attributes[PLANNED_MS] == 100.0 and h.attributes[VERSION] == 7
    # the virtual clock's times: b starts after a ends, and each lasts its worker's latency
    assert hops["hop a"].end_time <= hops["hop b"].start_time
    assert (hops["hop b"].end_time - hops["hop b"].start_time) / 1e6 == pytest.approx(30.0, abs=1.0)
    assert frame_span.attributes["harpagon.outcome"] == "answered" and OVERRAN_HOP not in frame_span.attributes
    assert frame_span.status.status_code != StatusCode.ERROR


def test_a_late_frame_names_the_hop_that_overran():
    results, spans = serve({"wa": 0.02, "wb": 0.5})  # b takes 500 ms against its planned 100 ms
    assert isinstance(results[0], DeadlineExceeded)
    frame_span = next(s for s in spans if s.name == "frame chain")
    assert frame_span.attributes["harpagon.outcome"] == "late"
    assert frame_span.attributes[OVERRAN_HOP] == "b"
    assert frame_span.status.status_code == StatusCode.ERROR and "hop b overran" in frame_span.status.description
    assert next(s for s in spans if s.name == "hop b").status.status_code == StatusCode.ERROR


def test_without_tracing_the_plane_keeps_no_trace_at_all(monkeypatch):
    """Off by default at no cost: no frame or hop trace is even made."""
    import harpagon.runtime.traces as traces

    def made(*args, **kwargs):
        raise AssertionError("a trace was made with tracing off")

    monkeypatch.setattr(traces.FrameTrace, "__init__", made)
    monkeypatch.setattr(traces.HopTrace, "__init__", made)
    fake = FakeWorkers(latency={"wa": 0.01, "wb": 0.01})

    async def scenario():
        plane = FrontendDataPlane(table(CHAIN, {"a": route("a", "wa"), "b": route("b", "wb")}), frame_shape=FRAME,
                                  client=fake)
        return [await plane.infer("chain", frame()) for _ in range(3)]

    assert all(isinstance(r, dict) for r in run(scenario()))


@pytest.mark.parametrize("command", [["serve", "demo"], ["frontend", "--controller", "127.0.0.1:1", "--insecure"]])
def test_a_bad_otlp_endpoint_is_one_line_and_exit_2(command, capsys):
    from harpagon.cli import main

    assert main([*command, "--otlp-endpoint", "collector:4317"]) == 2
    assert "--otlp-endpoint must be http://HOST:PORT or https://HOST:PORT, got 'collector:4317'" in \
        capsys.readouterr().err
