"""The frontend's data plane on fake workers (tests/fakes.py): DAG order, scaling, batching, deadline
drops, worker failures and retries on another worker, suspect workers, admission control, readiness,
re-plans and hop overheads, without a network and on the virtual clock (`run_virtual`): a scenario's
seconds pass at once, and its timings are exact."""

from __future__ import annotations

import asyncio
import contextlib
import io
import math

import numpy as np
import pytest

from harpagon.config.schema import App
from harpagon.dispatch.module import TupleSpec
from harpagon.runtime.controller.assignment import app_route
from harpagon.runtime.frontend.data_plane import FrontendDataPlane, admission_limit
from harpagon.runtime.frontend.failover import (
    INTERNAL_STRIKES,
    SUSPECT_FIRST_S,
    SUSPECT_S,
    Suspects,
    stall_limit_s,
)
from harpagon.runtime.metrics import FrontendMetrics
from harpagon.runtime.wire.clients import WorkerReply
from harpagon.runtime.wire.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from harpagon.runtime.wire.frames import EncodedFrame
from harpagon.runtime.wire.routes import AppRoute, ModuleRoute, RoutingTable
from tests.fakes import FakeWorkers, expected_output, run_virtual

SHAPE = (3, 4, 4)  # what the fake workers "expect"
FRAME = (8, 8, 3)  # [H, W, C] frames
NO_TIMER = 10_000.0  # a flush timer that never runs out within a test
RNG = np.random.default_rng(7)


def make_app(name: str, modules: list[dict], slo_ms: float = 1000.0, rate: float = 50.0) -> AppRoute:
    return app_route(App.model_validate({"name": name, "rate": rate, "slo_ms": slo_ms, "modules": modules}))


def route(module: str, address: str, batch: int = 1, wait_ms: float | None = 0.0, rate: float = 50.0,
          worker_name: str | None = None) -> ModuleRoute:
    """One tuple of one worker at `address`; the module is called `worker_name` there (default `module@b<batch>`)."""
    return ModuleRoute(module, SHAPE, (TupleSpec(batch, 1, rate, 0.0, wait_ms),), ((address,),),
                       (worker_name or f"{module}@b{batch}",))


def table(app: AppRoute, routes: dict[str, ModuleRoute], version: int = 1,
          *more: tuple[AppRoute, dict[str, ModuleRoute]]) -> RoutingTable:
    apps = {app.name: app}
    entries = {(app.name, m): r for m, r in routes.items()}
    for a, rs in more:
        apps[a.name] = a
        entries.update({(a.name, m): r for m, r in rs.items()})
    return RoutingTable(version, "batch-aware", apps, entries)


def frame() -> np.ndarray:
    return RNG.integers(0, 255, FRAME, dtype=np.uint8)


def want(f: np.ndarray) -> float:
    """What the fake answers for a frame's request: the frame reaches the worker at its full size."""
    return expected_output(f)


def run(coro, limit_s: float = 10.0):
    """Run a scenario on the virtual clock; a hang fails the test (at `limit_s` of virtual time)."""
    return run_virtual(asyncio.wait_for(coro, limit_s))


# --- DAG order ---------------------------------------------------------------------------------


def assert_child_after_parent(fake: FakeWorkers, frames: list[np.ndarray], parent: str, child: str) -> None:
    """Each frame's request to `child` was sent only after its parent's result for that frame came back."""
    for f in frames:
        v = want(f)
        parent_call = next(c for c in fake.calls_to(module=parent) if v in c.items)
        child_call = next(c for c in fake.calls_to(module=child) if v in c.items)
        reply = fake.reply_to(parent_call)
        assert reply is not None and reply.error is None
        assert reply.seq < child_call.seq, (parent, child)


def test_a_chain_runs_its_hops_in_order_and_each_frame_gets_its_own_result():
    app = make_app("chain", [{"name": "a", "model": "m"}, {"name": "b", "model": "m", "after": ["a"]},
                             {"name": "c", "model": "m", "after": ["b"]}])
    fake = FakeWorkers(latency={"wa": 0.01, "wb": 0.02, "wc": 0.01})
    frames = [frame() for _ in range(5)]

    async def scenario():
        plane = FrontendDataPlane(table(app, {"a": route("a", "wa", batch=2, wait_ms=5.0), "b": route("b", "wb"),
                                              "c": route("c", "wc", batch=3, wait_ms=5.0)}),
                                  frame_shape=FRAME, client=fake)
        return plane, await asyncio.gather(*(plane.infer("chain", f) for f in frames))

    plane, out = run(scenario())
    for f, reply in zip(frames, out, strict=True):
        assert list(reply) == ["c"] and len(reply["c"]) == 1
        assert float(reply["c"][0][0][0]) == pytest.approx(want(f), rel=1e-5)
    assert_child_after_parent(fake, frames, "a@b2", "b@b1")
    assert_child_after_parent(fake, frames, "b@b1", "c@b3")
    assert sum(c.size for c in fake.calls_to(module="b@b1")) == 5 and plane.counters["chain"].success == 5


def test_children_run_after_their_parents_branches_in_parallel_and_each_frame_gets_its_own_results():
    #   a -> b          (sink)
    #   a -> c -> d     (sink)
    app = make_app("dag", [{"name": "a", "model": "m"}, {"name": "b", "model": "m", "after": ["a"]},
                           {"name": "c", "model": "m", "after": ["a"]}, {"name": "d", "model": "m", "after": ["c"]}])
    fake = FakeWorkers(latency={"wa": 0.01, "wb": 0.05, "wc": 0.05, "wd": 0.01})
    frames = [frame() for _ in range(4)]

    async def scenario():
        plane = FrontendDataPlane(table(app, {"a": route("a", "wa", batch=2, wait_ms=5.0),
                                              "b": route("b", "wb", batch=2, wait_ms=5.0),
                                              "c": route("c", "wc"), "d": route("d", "wd")}),
                                  frame_shape=FRAME, client=fake)
        out = await asyncio.gather(*(plane.infer("dag", f) for f in frames))
        await plane.close()
        return plane, out

    plane, out = run(scenario())
    # the reply holds each sink's outputs, one list of outputs per request, each its own frame's
    for f, reply in zip(frames, out, strict=True):
        assert set(reply) == {"b", "d"}
        for sink in ("b", "d"):
            assert len(reply[sink]) == 1 and len(reply[sink][0]) == 1
            assert float(reply[sink][0][0][0]) == pytest.approx(want(f), rel=1e-5)
    assert plane.counters["dag"].success == 4 and plane.counters["dag"].frames == 4
    # every module saw every frame exactly once
    for m in "abcd":
        got = sorted(v for c in fake.calls_to(module=f"{m}@b{2 if m in 'ab' else 1}") for v in c.items)
        assert got == pytest.approx(sorted(want(f) for f in frames), rel=1e-9), m
    for parent, child in (("a@b2", "b@b2"), ("a@b2", "c@b1"), ("c@b1", "d@b1")):
        assert_child_after_parent(fake, frames, parent, child)
    # the branches b and c ran concurrently: each was called before the other's first reply came back
    first_b, first_c = fake.calls_to(module="b@b2")[0], fake.calls_to(module="c@b1")[0]
    assert first_b.seq < fake.reply_to(first_c).seq and first_c.seq < fake.reply_to(first_b).seq


# --- scaling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.5, 2.0, 0.3, 1.5])
def test_a_module_of_scale_s_gets_floor_f_plus_1_s_minus_floor_f_s_requests_per_frame(scale):
    n_frames = 10
    app = make_app("sc", [{"name": "src", "model": "m"}, {"name": "x", "model": "m", "after": ["src"], "scale": scale}])
    fake = FakeWorkers()

    def per_frame(f: int) -> int:
        return math.floor((f + 1) * scale + 1e-9) - math.floor(f * scale + 1e-9)

    async def scenario():
        plane = FrontendDataPlane(table(app, {"src": route("src", "w1"), "x": route("x", "w2")}),
                                  frame_shape=FRAME, client=fake)
        replies = []
        for _ in range(n_frames):
            f = frame()
            replies.append((f, await plane.infer("sc", f)))
        return plane, replies

    plane, replies = run(scenario())
    total = sum(per_frame(f) for f in range(n_frames))
    assert total == math.floor(n_frames * scale + 1e-9)
    assert sum(c.size for c in fake.calls_to(module="x@b1")) == total
    assert sum(c.size for c in fake.calls_to(module="src@b1")) == n_frames
    assert plane.stats()[("sc", "x")].requests == total
    for f, (fr, reply) in enumerate(replies):
        assert len(reply["x"]) == per_frame(f), f  # the sink's outputs: one entry per request
        assert all(float(r[0][0]) == pytest.approx(want(fr), rel=1e-5) for r in reply["x"])


# --- batching --------------------------------------------------------------------------------


def test_a_full_batch_ships_at_once_and_a_lone_frame_ships_when_its_timer_runs_out():
    app = make_app("b", [{"name": "m", "model": "m"}])
    lone = make_app("lone", [{"name": "m", "model": "m"}])
    fake = FakeWorkers()
    frames = [frame() for _ in range(4)]

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "w1", batch=4, wait_ms=NO_TIMER)}, 1,
                                        (lone, {"m": route("m", "w2", batch=4, wait_ms=50.0)})),
                                  frame_shape=FRAME, client=fake)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        out = await asyncio.gather(*(plane.infer("b", f) for f in frames))
        full_s = loop.time() - t0
        t0 = loop.time()
        single = frame()
        got = await plane.infer("lone", single)
        lone_s = loop.time() - t0
        return plane, out, full_s, single, got, lone_s

    plane, out, full_s, single, got, lone_s = run(scenario())
    (batch,) = fake.calls_to(address="w1")
    assert batch.size == 4 and sorted(batch.items) == pytest.approx(sorted(want(f) for f in frames), rel=1e-9)
    assert full_s < 5.0  # shipped when full, not at its 10 s timer
    for f, reply in zip(frames, out, strict=True):
        assert float(reply["m"][0][0][0]) == pytest.approx(want(f), rel=1e-5)
    (alone,) = fake.calls_to(address="w2")
    assert alone.size == 1 and alone.items == pytest.approx((want(single),), rel=1e-9)  # dummies are not sent
    assert float(got["m"][0][0][0]) == pytest.approx(want(single), rel=1e-5)
    assert 0.045 <= lone_s < 2.0  # waited for its 50 ms flush timer, then shipped
    s = plane.stats()
    assert (s[("b", "m")].batches, s[("b", "m")].dummies) == (1, 0)
    assert (s[("lone", "m")].batches, s[("lone", "m")].dummies) == (1, 3)


# --- deadlines ---------------------------------------------------------------------------------


def test_a_worker_that_never_answers_drops_the_frame_at_its_slo():
    app = make_app("slow", [{"name": "m", "model": "m"}], slo_ms=150.0)
    fake = FakeWorkers(silent={"w1"})

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "w1")}), frame_shape=FRAME, client=fake)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(DeadlineExceeded, match="module 'm'"):
            await plane.infer("slow", frame())
        return plane, loop.time() - t0

    plane, took = run(scenario(), limit_s=5.0)
    assert 0.14 <= took < 1.5  # around its SLO, not hanging
    (call,) = fake.calls
    assert call.timeout_s is not None and 0 < call.timeout_s <= 0.15  # the call carried the frame's deadline
    c = plane.counters["slow"]
    assert (c.frames, c.dropped, c.failed, c.success) == (1, 1, 0, 0)
    assert plane.stats()[("slow", "m")].failed == 1


def test_a_frame_whose_parent_answers_past_its_deadline_is_dropped_before_the_child_is_called():
    """Frames A (t=0) and B (t=0.5 s) share the parent's batch, whose call carries B's (later)
    deadline; the parent answers at ~1.1 s: past A's deadline (1.0 s), well before B's (1.5 s)."""
    app = make_app("late", [{"name": "p", "model": "m"}, {"name": "ch", "model": "m", "after": ["p"]}], slo_ms=1000.0)
    fake = FakeWorkers(latency={"wp": 0.6})
    a, b = frame(), frame()

    async def scenario():
        plane = FrontendDataPlane(table(app, {"p": route("p", "wp", batch=2, wait_ms=NO_TIMER),
                                              "ch": route("ch", "wc")}), frame_shape=FRAME, client=fake)
        first = asyncio.ensure_future(plane.infer("late", a))
        await asyncio.sleep(0.5)
        second = asyncio.ensure_future(plane.infer("late", b))
        results = await asyncio.gather(first, second, return_exceptions=True)
        return plane, results

    plane, (ra, rb) = run(scenario(), limit_s=5.0)
    assert isinstance(ra, DeadlineExceeded) and "before 'ch'" in str(ra)
    assert isinstance(rb, dict) and float(rb["ch"][0][0][0]) == pytest.approx(want(b), rel=1e-5)
    (parent,) = fake.calls_to(module="p@b2")
    assert parent.size == 2 and parent.timeout_s > 0.6  # B's deadline, not A's
    (child,) = fake.calls_to(module="ch@b1")  # only B's request reached the child
    assert child.items == pytest.approx((want(b),), rel=1e-9)
    c = plane.counters["late"]
    assert (c.frames, c.dropped, c.success, c.failed) == (2, 1, 1, 0)


# --- worker failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Unavailable("worker down"), ValueError("a bug in the client")],
                         ids=["unavailable", "other-exception"])
def test_a_failing_worker_fails_every_frame_of_its_batch_with_unavailable(fault):
    app = make_app("f", [{"name": "m", "model": "m"}])
    fake = FakeWorkers(failing={"w1": fault})

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "w1", batch=3, wait_ms=NO_TIMER)}),
                                  frame_shape=FRAME, client=fake)
        results = await asyncio.gather(*(plane.infer("f", frame()) for _ in range(3)), return_exceptions=True)
        return plane, results

    plane, results = run(scenario(), limit_s=5.0)
    assert [c.size for c in fake.calls] == [3]
    assert all(isinstance(r, Unavailable) and "module 'm'" in str(r) for r in results), results
    assert plane.counters["f"].failed == 3 and plane.counters["f"].success == 0
    assert plane.stats()[("f", "m")].failed == 3


def test_a_malformed_reply_fails_its_frames_with_unavailable_not_a_hang():
    app = make_app("bad", [{"name": "m", "model": "m"}, {"name": "n", "model": "m", "after": ["m"]}])
    fake = FakeWorkers(malformed={"w1"})

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "w1", batch=2, wait_ms=NO_TIMER),
                                              "n": route("n", "w2")}), frame_shape=FRAME, client=fake)
        results = await asyncio.gather(*(plane.infer("bad", frame()) for _ in range(2)), return_exceptions=True)
        return plane, results

    plane, results = run(scenario(), limit_s=5.0)
    assert all(isinstance(r, Unavailable) and "answered [3] items for a batch of 2" in str(r) for r in results)
    assert fake.calls_to(module="n@b1") == []  # nothing reaches the child
    assert plane.counters["bad"].failed == 2
    st = plane.stats()[("bad", "m")]
    assert st.failed == 2 and not st.exec_ms and plane.take_hops() == []  # not measured as a good hop


def test_a_result_that_comes_back_past_the_frames_deadline_is_not_a_success():
    """A (t=0) and B (t=0.1 s) share a batch whose call carries B's deadline; it answers at ~0.45 s, past
    A's 0.4 s deadline: A is answered DEADLINE_EXCEEDED and counted dropped, B succeeds."""
    app = make_app("tail", [{"name": "m", "model": "m"}], slo_ms=400.0)
    fake = FakeWorkers(latency={"w1": 0.35})

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "w1", batch=2, wait_ms=NO_TIMER)}),
                                  frame_shape=FRAME, client=fake)
        first = asyncio.ensure_future(plane.infer("tail", frame()))
        await asyncio.sleep(0.1)
        second = asyncio.ensure_future(plane.infer("tail", frame()))
        return plane, await asyncio.gather(first, second, return_exceptions=True)

    plane, (ra, rb) = run(scenario(), limit_s=5.0)
    assert isinstance(ra, DeadlineExceeded) and "answered past its 400 ms deadline" in str(ra)
    assert isinstance(rb, dict)
    c = plane.counters["tail"]
    assert (c.frames, c.dropped, c.success, c.failed) == (2, 1, 1, 0)


# --- readiness ------------------------------------------------------------------------------------


def test_readiness_before_and_after_the_first_routes():
    a = make_app("a", [{"name": "m", "model": "m"}])
    b = make_app("b", [{"name": "m", "model": "m"}])

    async def scenario():
        plane = FrontendDataPlane(frame_shape=FRAME, client=FakeWorkers(), configured={"a": a, "b": b})
        assert not plane.ready
        with pytest.raises(Unavailable, match="not routed yet"):
            plane.check("a")
        with pytest.raises(NotFound):
            plane.check("zzz")
        with pytest.raises(Unavailable):  # a frame for a configured app waits for its routes: retry
            await plane.infer("a", frame())
        await plane.update(table(a, {"m": route("m", "w1")}), refused={"b": "hardware counts run out"})
        assert plane.ready
        assert plane.check("a") == a
        with pytest.raises(Unavailable, match="cannot be served: hardware counts run out"):
            plane.check("b")
        with pytest.raises(NotFound):
            plane.check("zzz")
        reply = await plane.infer("a", f := frame())
        assert float(reply["m"][0][0][0]) == pytest.approx(want(f), rel=1e-5)

    run(scenario())


def test_a_plane_without_configuration_is_unavailable_for_everything_until_its_first_table():
    a = make_app("a", [{"name": "m", "model": "m"}])

    async def scenario():
        plane = FrontendDataPlane(frame_shape=FRAME, client=FakeWorkers())
        assert not plane.ready
        for name in ("a", "zzz"):
            with pytest.raises(Unavailable, match="no routes from the controller yet"):
                plane.check(name)
            with pytest.raises(Unavailable):
                await plane.infer(name, frame())
        await plane.update(table(a, {"m": route("m", "w1")}), refused={"gone": "why"})
        assert plane.ready  # it learns the configuration from its first table
        with pytest.raises(NotFound):
            plane.check("zzz")
        with pytest.raises(Unavailable, match="why"):
            plane.check("gone")

    run(scenario())


# --- re-plans ---------------------------------------------------------------------------------


def test_stats_grow_across_replans_and_the_old_tables_open_batch_still_ships():
    app = make_app("r", [{"name": "m", "model": "m"}])
    fake = FakeWorkers(latency={"old": 0.02})
    early = [frame(), frame()]
    later = [frame() for _ in range(3)]

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "old", batch=4, wait_ms=NO_TIMER)}, 1),
                                  frame_shape=FRAME, client=fake)
        pending = [asyncio.ensure_future(plane.infer("r", f)) for f in early]
        await asyncio.sleep(0.05)
        assert not any(p.done() for p in pending) and fake.calls == []  # a half-full batch, open
        s = plane.stats()[("r", "m")]
        assert (s.requests, s.batches) == (2, 0)
        await plane.update(table(app, {"m": route("m", "new", batch=1)}, 2))
        early_out = await asyncio.gather(*pending)
        later_out = [await plane.infer("r", f) for f in later]
        return plane, early_out, later_out

    plane, early_out, later_out = run(scenario())
    (drained,) = fake.calls_to(address="old")  # the old table's batch shipped on update, not at its timer
    assert drained.size == 2 and drained.module == "m@b4"
    assert [c.size for c in fake.calls_to(address="new")] == [1, 1, 1]
    for f, reply in zip(early + later, early_out + later_out, strict=True):
        assert float(reply["m"][0][0][0]) == pytest.approx(want(f), rel=1e-5)
    s = plane.stats()[("r", "m")]
    assert (s.requests, s.batches, s.dummies) == (5, 4, 2)
    assert plane.counters["r"].success == 5 and plane.table.version == 2


# --- hop overheads -----------------------------------------------------------------------------


def test_take_hops_returns_each_batchs_overhead_once():
    """The fake answers after 40 ms and reports 5 ms queued + 10 ms executing: the hop overhead
    (the RPC less what the worker reported) is at least 25 ms per batch."""
    app = make_app("h", [{"name": "m", "model": "m"}])
    fake = FakeWorkers(latency={"w1": 0.04}, reported_queue_ms={"w1": 5.0}, reported_exec_ms={"w1": 10.0})

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "w1")}), frame_shape=FRAME, client=fake)
        assert plane.take_hops() == []
        for _ in range(3):
            await plane.infer("h", frame())
        first = plane.take_hops()
        second = plane.take_hops()
        await plane.infer("h", frame())
        third = plane.take_hops()
        return plane, first, second, third

    plane, first, second, third = run(scenario())
    assert len(first) == 3 and second == [] and len(third) == 1
    assert all(24.0 <= h < 1000.0 for h in first + third), first + third
    s = plane.stats()[("h", "m")]
    assert list(s.exec_ms) == [10.0] * 4 and list(s.worker_queue_ms) == [5.0] * 4


# --- retries on another worker, suspect workers ----------------------------------------------------


def route_n(module: str, addresses: tuple[str, ...], batch: int = 1, wait_ms: float | None = 0.0,
            latency_ms: float = 0.0) -> ModuleRoute:
    """One tuple of several workers, of planned latency `latency_ms` (0: unknown)."""
    return ModuleRoute(module, SHAPE, (TupleSpec(batch, len(addresses), 50.0, 0.0, wait_ms),), (addresses,),
                       (f"{module}@b{batch}",), (latency_ms,))


def run_clean(coro, limit_s: float = 10.0):
    """`run`, failing the test if anything reached the loop's exception handler (a future answered
    twice raises InvalidStateError in its batch's task; a task's error nobody retrieved)."""
    problems: list[dict] = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: problems.append(ctx))
        return await asyncio.wait_for(coro, limit_s)

    out = run_virtual(main())
    assert not problems, problems
    return out


def assert_each_frame_answered_once(plane: FrontendDataPlane, app: str, frames: int) -> None:
    c = plane.counters[app]
    assert c.frames == frames and c.success + c.failed + c.dropped == frames, c
    assert plane.in_flight[app] == 0


def test_stall_limit_follows_the_planned_latency():
    assert stall_limit_s(0.0) is None and stall_limit_s(math.inf) is None
    assert stall_limit_s(20.0) == pytest.approx(0.12)  # ℓ + 100 ms for short tuples
    assert stall_limit_s(200.0) == pytest.approx(0.6)  # 3 ℓ for long ones
    r = route_n("m", ("w1", "w2"), latency_ms=20.0)
    assert r.latency_ms == (20.0,) and route("m", "w1").latency_ms == (0.0,)  # default: unknown


def test_a_batch_whose_worker_fails_is_answered_by_the_tuples_other_worker_which_then_takes_its_turns():
    app = make_app("r", [{"name": "m", "model": "m"}])
    fake = FakeWorkers(failing={"w1": Unavailable("connection refused")})
    metrics = FrontendMetrics()
    frames = [frame() for _ in range(4)]

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route_n("m", ("w1", "w2"))}), frame_shape=FRAME, client=fake,
                                  metrics=metrics)
        return plane, [await plane.infer("r", f) for f in frames]

    plane, out = run_clean(scenario())
    for f, reply in zip(frames, out, strict=True):
        assert float(reply["m"][0][0][0]) == pytest.approx(want(f), rel=1e-5)
    # the dispatcher alternates w1, w2, w1, w2: w1 failed the first batch (retried on w2), then was
    # skipped while suspect
    assert len(fake.calls_to(address="w1")) == 1 and len(fake.calls_to(address="w2")) == 4
    assert fake.calls_to(address="w2")[0].items == fake.calls_to(address="w1")[0].items
    s = plane.stats()[("r", "m")]
    assert (s.retries, s.suspect_skips, s.failed, s.batches) == (1, 1, 0, 4)
    assert metrics.registry.get_sample_value("harpagon_frontend_retries_total", {"app": "r", "module": "m"}) == 1
    assert metrics.registry.get_sample_value("harpagon_frontend_suspect_skips_total",
                                             {"app": "r", "module": "m"}) == 1
    assert_each_frame_answered_once(plane, "r", 4)


def test_a_stalled_worker_is_given_up_at_its_stall_limit_and_skipped_while_suspect():
    """ℓ = 20 ms: the stall limit is 120 ms. w1 never answers within it; the batch goes to w2 and is
    answered long before the frame's 1 s deadline; later batches for w1 go to w2."""
    app = make_app("st", [{"name": "m", "model": "m"}], slo_ms=1000.0)
    fake = FakeWorkers(latency={"w1": 30.0})  # SIGSTOPped

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route_n("m", ("w1", "w2"), latency_ms=20.0)}),
                                  frame_shape=FRAME, client=fake)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        first = await plane.infer("st", f := frame())
        took = loop.time() - t0
        later = [await plane.infer("st", frame()) for _ in range(4)]
        return plane, f, first, took, later

    plane, f, first, took, _later = run_clean(scenario())
    assert float(first["m"][0][0][0]) == pytest.approx(want(f), rel=1e-5)
    assert 0.115 <= took < 0.6  # the stall limit, then w2: not the frame's 1 s deadline
    (stalled,) = fake.calls_to(address="w1")  # skipped while suspect
    assert stalled.timeout_s == pytest.approx(0.12)
    assert fake.reply_to(stalled).error == "DeadlineExceeded"
    assert len(fake.calls_to(address="w2")) == 5
    s = plane.stats()[("st", "m")]
    assert (s.retries, s.suspect_skips, s.failed) == (1, 2, 0)
    assert_each_frame_answered_once(plane, "st", 5)
    assert plane.counters["st"].success == 5


def test_a_suspect_worker_is_used_again_after_its_hold_and_a_good_answer_clears_it():
    app = make_app("h", [{"name": "m", "model": "m"}])
    fake = FakeWorkers(failing={"w1": Unavailable("restarting")})

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route_n("m", ("w1", "w2"))}), frame_shape=FRAME, client=fake,
                                  suspect_s=0.1)
        await plane.infer("h", frame())  # w1 fails, w2 answers; w1 suspect
        await plane.infer("h", frame())  # w2's turn
        assert "w1" in plane.suspects
        await asyncio.sleep(0.12)
        del fake.failing["w1"]
        await plane.infer("h", frame())  # w1's turn again: past its hold, tried, and answers
        assert "w1" not in plane.suspects
        return plane

    plane = run_clean(scenario())
    assert [c.address for c in fake.calls] == ["w1", "w2", "w2", "w1"]
    assert plane.stats()[("h", "m")].retries == 1 and plane.counters["h"].success == 3


def test_a_suspects_hold_doubles_while_it_keeps_failing_and_starts_afresh_after_a_good_answer():
    """A hiccup costs its tuple a worker for half a second; a dead worker is tried ever more rarely."""
    s = Suspects()
    assert (s.first_s, s.hold_s) == (SUSPECT_FIRST_S, SUSPECT_S) == (0.5, 3.0)
    t, holds = 0.0, []
    for _ in range(5):  # fails each time its hold is over
        holds.append(s.mark("w1", t))
        assert s.suspect("w1", t + holds[-1] - 1e-6) and not s.suspect("w1", t + holds[-1])
        t += holds[-1]
    assert holds == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert s.mark("w1", t) == 3.0 and s.mark("w1", t + 1.0) is None  # already suspect: not a fresh hold
    assert s.suspect("w1", t + 3.9) and not s.suspect("w2", t)  # ...but the hold runs from the latest failure
    s.clear("w1")  # it answered
    assert "w1" not in s and s.mark("w1", t + 10.0) == 0.5


def test_frames_past_their_deadline_are_not_retried_and_get_deadline_exceeded():
    """A (t=0, deadline 0.3 s) and B (t=0.2 s, deadline 0.5 s) share a batch shipped at 0.2 s to w1,
    which stalls; at its 150 ms stall limit (0.35 s) A is late: DEADLINE_EXCEEDED; B goes to w2."""
    app = make_app("dl", [{"name": "m", "model": "m"}], slo_ms=300.0)
    fake = FakeWorkers(latency={"w1": 30.0})

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route_n("m", ("w1", "w2"), batch=2, wait_ms=NO_TIMER,
                                                           latency_ms=50.0)}), frame_shape=FRAME, client=fake)
        a = asyncio.ensure_future(plane.infer("dl", frame()))
        await asyncio.sleep(0.2)
        b = asyncio.ensure_future(plane.infer("dl", fb := frame()))
        return plane, fb, await asyncio.gather(a, b, return_exceptions=True)

    plane, fb, (ra, rb) = run_clean(scenario())
    assert isinstance(ra, DeadlineExceeded) and "past its deadline" in str(ra) and "stalled" in str(ra)
    assert isinstance(rb, dict) and float(rb["m"][0][0][0]) == pytest.approx(want(fb), rel=1e-5)
    (retried,) = fake.calls_to(address="w2")
    assert retried.size == 1 and retried.items == pytest.approx((want(fb),), rel=1e-9)
    c = plane.counters["dl"]
    assert (c.success, c.dropped, c.failed) == (1, 1, 0)
    assert_each_frame_answered_once(plane, "dl", 2)


@pytest.mark.parametrize("fault", [InvalidArgument, NotFound, FailedPrecondition])
def test_faults_that_are_the_requests_are_not_retried(fault):
    app = make_app("nr", [{"name": "m", "model": "m"}])
    fake = FakeWorkers(failing={"w1": fault("bad batch")})

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route_n("m", ("w1", "w2"), latency_ms=10.0)}),
                                  frame_shape=FRAME, client=fake)
        return plane, await asyncio.gather(plane.infer("nr", frame()), return_exceptions=True)

    plane, (result,) = run_clean(scenario())
    assert isinstance(result, fault) and "module 'm'" in str(result)
    assert [c.address for c in fake.calls] == ["w1"]
    assert "w1" not in plane.suspects and plane.stats()[("nr", "m")].retries == 0
    assert_each_frame_answered_once(plane, "nr", 1)


def test_a_worker_that_always_answers_internal_is_retried_elsewhere_then_made_suspect_and_cleared_by_a_good_answer():
    """A broken device answers INTERNAL to everything: each of its batches is answered by the tuple's
    other worker, and after INTERNAL_STRIKES of them it gets no batches while suspect."""
    app = make_app("bg", [{"name": "m", "model": "m"}])
    fake = FakeWorkers(failing={"w1": Internal("CUDA error: an illegal memory access was encountered")})
    metrics = FrontendMetrics()
    frames = [frame() for _ in range(12)]

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route_n("m", ("w1", "w2"))}), frame_shape=FRAME, client=fake,
                                  metrics=metrics)
        out = [await plane.infer("bg", f) for f in frames]  # at once: well within w1's first hold
        assert "w1" in plane.suspects
        await asyncio.sleep(SUSPECT_FIRST_S + 0.05)
        del fake.failing["w1"]  # repaired
        while not fake.calls_to(address="w1")[3:]:  # w1's turn comes again past its hold: it answers
            out.append(await plane.infer("bg", frame()))
        assert "w1" not in plane.suspects
        return plane, out

    plane, out = run_clean(scenario())
    for f, reply in zip(frames, out, strict=False):
        assert float(reply["m"][0][0][0]) == pytest.approx(want(f), rel=1e-5)
    # the dispatcher alternates w1, w2: w1's first INTERNAL_STRIKES turns failed (each batch retried on
    # w2, the same items), then w1 was skipped until its hold ran out; its next turn answered
    w1 = fake.calls_to(address="w1")
    assert len(w1) == INTERNAL_STRIKES + 1 == 4
    assert [fake.reply_to(c).error for c in w1] == ["Internal"] * 3 + [None]
    w2_items = [c.items for c in fake.calls_to(address="w2")]
    assert all(c.items in w2_items for c in w1[:3])
    s = plane.stats()[("bg", "m")]
    assert (s.internal_errors, s.internal_suspects, s.retries, s.failed) == (3, 1, 3, 0)
    assert s.suspect_skips == 3  # w1's other 3 turns among the 12 frames
    assert metrics.registry.get_sample_value("harpagon_frontend_worker_internal_errors_total", {"worker": "w1"}) == 3
    assert metrics.registry.get_sample_value("harpagon_frontend_worker_internal_suspects_total",
                                             {"worker": "w1"}) == 1
    assert plane.counters["bg"].success == len(out) and plane.counters["bg"].failed == 0
    assert_each_frame_answered_once(plane, "bg", len(out))


def test_a_model_that_answers_internal_everywhere_fails_its_frames_after_one_retry_and_blames_no_worker():
    """A second INTERNAL is the model's: the frames get it (not lost, not tried on every worker), and
    no worker is made suspect for it."""
    app = make_app("bm", [{"name": "m", "model": "m"}])
    fake = FakeWorkers(failing={w: Internal("the model raised") for w in ("w1", "w2", "w3")})
    metrics = FrontendMetrics()
    n = 2 * INTERNAL_STRIKES

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route_n("m", ("w1", "w2", "w3"))}), frame_shape=FRAME,
                                  client=fake, metrics=metrics)
        return plane, [await asyncio.gather(plane.infer("bm", frame()), return_exceptions=True) for _ in range(n)]

    plane, out = run_clean(scenario())
    assert all(isinstance(r, Internal) and "module 'm'" in str(r) and "tried 2 workers" in str(r)
               for (r,) in out), out
    assert len(fake.calls) == 2 * n  # each batch: its worker, then one other
    assert not any(w in plane.suspects for w in ("w1", "w2", "w3"))
    s = plane.stats()[("bm", "m")]
    assert (s.internal_errors, s.internal_suspects, s.retries, s.failed) == (2 * n, 0, n, n)
    assert metrics.registry.get_sample_value("harpagon_frontend_worker_internal_suspects_total",
                                             {"worker": "w1"}) is None
    assert_each_frame_answered_once(plane, "bm", n)


def test_a_single_worker_tuple_answers_internal_without_a_retry():
    app = make_app("b1", [{"name": "m", "model": "m"}])
    fake = FakeWorkers(failing={"w1": Internal("the model raised")})

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "w1")}), frame_shape=FRAME, client=fake)
        return plane, await asyncio.gather(plane.infer("b1", frame()), return_exceptions=True)

    plane, (result,) = run_clean(scenario())
    assert isinstance(result, Internal) and "module 'm'" in str(result)
    assert [c.address for c in fake.calls] == ["w1"] and plane.stats()[("b1", "m")].retries == 0
    assert_each_frame_answered_once(plane, "b1", 1)


def test_internal_strikes_make_a_worker_suspect_only_in_a_row_and_a_good_answer_starts_them_afresh():
    s = Suspects()
    assert s.blame("w1", 0.0) == (1, None) and s.blame("w1", 0.0) == (2, None) and "w1" not in s
    s.clear("w1")  # it answered a batch well
    assert s.blame("w1", 0.0) == (1, None) and s.blame("w1", 0.0) == (2, None)
    assert s.blame("w1", 0.0) == (3, SUSPECT_FIRST_S) and s.suspect("w1", 0.1)
    assert s.blame("w1", 0.1) == (4, None)  # already suspect: no fresh hold, the hold runs from now
    assert s.blame("w1", 2.0) == (5, 2 * 2 * SUSPECT_FIRST_S)  # back-off as for any failure
    s.clear("w1")
    assert "w1" not in s and s.blame("w1", 3.0) == (1, None)


def test_a_batch_is_tried_once_per_worker_then_fails_with_unavailable():
    app = make_app("all", [{"name": "m", "model": "m"}])
    fake = FakeWorkers(failing={"w1": Unavailable("down"), "w2": Unavailable("down"), "w3": Unavailable("down")})

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route_n("m", ("w1", "w2", "w3"), batch=2, wait_ms=NO_TIMER)}),
                                  frame_shape=FRAME, client=fake)
        out = await asyncio.gather(*(plane.infer("all", frame()) for _ in range(2)), return_exceptions=True)
        # every worker is suspect now: the next batch goes to the dispatcher's choice (w2), then the others
        out += await asyncio.gather(*(plane.infer("all", frame()) for _ in range(2)), return_exceptions=True)
        return plane, out

    plane, out = run_clean(scenario())
    assert all(isinstance(r, Unavailable) and "tried 3 workers" in str(r) for r in out), out
    assert [c.address for c in fake.calls] == ["w1", "w2", "w3", "w2", "w3", "w1"]
    s = plane.stats()[("all", "m")]
    assert (s.retries, s.suspect_skips, s.failed) == (4, 0, 4)
    assert_each_frame_answered_once(plane, "all", 4)


def test_a_frame_cancelled_during_a_retry_is_not_sent_again():
    app = make_app("cx", [{"name": "m", "model": "m"}])
    fake = FakeWorkers(latency={"w1": 0.05}, failing={"w1": Unavailable("down")})

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route_n("m", ("w1", "w2"), batch=2, wait_ms=NO_TIMER)}),
                                  frame_shape=FRAME, client=fake)
        gone = asyncio.ensure_future(plane.infer("cx", frame()))
        kept = asyncio.ensure_future(plane.infer("cx", fk := frame()))
        await asyncio.sleep(0.01)
        gone.cancel()
        return plane, fk, await kept

    plane, fk, reply = run_clean(scenario())
    assert float(reply["m"][0][0][0]) == pytest.approx(want(fk), rel=1e-5)
    assert [c.size for c in fake.calls_to(address="w2")] == [1]
    assert plane.in_flight["cx"] == 0


# --- admission control ---------------------------------------------------------------------------


def test_frames_beyond_the_apps_bound_in_flight_are_refused_at_once_and_the_admitted_ones_complete():
    """1 frame/s at 1 s: at most max(8, ceil(4 x 1 x 1)) = 8 frames in flight."""
    app = make_app("ov", [{"name": "m", "model": "m"}], slo_ms=1000.0, rate=1.0)
    fake = FakeWorkers(latency={"w1": 0.1})
    metrics = FrontendMetrics()

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "w1")}), frame_shape=FRAME, client=fake,
                                  metrics=metrics)
        assert admission_limit(app) == 8 and plane.limit(app) == 8
        loop = asyncio.get_running_loop()
        refused_at: list[float] = []
        answered_at: list[float] = []  # every frame, refused or not
        t0 = loop.time()

        async def one():
            try:
                return await plane.infer("ov", frame())
            except ResourceExhausted:
                refused_at.append(loop.time() - t0)
                raise
            finally:
                answered_at.append(loop.time() - t0)

        tasks = [asyncio.ensure_future(one()) for _ in range(30)]
        out = await asyncio.gather(*tasks, return_exceptions=True)
        after = await plane.infer("ov", frame())  # room again once they are answered
        return plane, out, (refused_at, answered_at), after

    plane, out, (refused_at, answered_at), after = run_clean(scenario())
    ok = [r for r in out if isinstance(r, dict)]
    refused = [r for r in out if isinstance(r, ResourceExhausted)]
    assert len(ok) == 8 and len(refused) == 22 and isinstance(after, dict)
    assert "overloaded" in str(refused[0]) and "8 frames in flight" in str(refused[0])
    # the refusals came back at once, long before the worker answered the admitted frames
    assert max(refused_at) < 0.05 and sorted(answered_at)[22] >= 0.09
    assert sum(c.size for c in fake.calls) == 9  # refused frames never reached a worker
    c = plane.counters["ov"]
    assert (c.frames, c.success, c.refused) == (9, 9, 22)
    assert metrics.registry.get_sample_value("harpagon_frames_refused_total", {"app": "ov"}) == 22
    assert plane.in_flight["ov"] == 0


def test_frames_that_fail_or_are_cancelled_leave_the_bound():
    app = make_app("lv", [{"name": "m", "model": "m"}], slo_ms=100.0, rate=10.0)
    fake = FakeWorkers(latency={"w1": 0.02}, failing={"w1": Unavailable("down")})

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "w1")}), frame_shape=FRAME, client=fake)
        out = await asyncio.gather(*(plane.infer("lv", frame()) for _ in range(8)), return_exceptions=True)
        assert all(isinstance(r, Unavailable) for r in out) and plane.in_flight["lv"] == 0
        pending = [asyncio.ensure_future(plane.infer("lv", frame())) for _ in range(8)]
        await asyncio.sleep(0)
        assert plane.in_flight["lv"] == 8
        for p in pending:
            p.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        assert plane.in_flight["lv"] == 0
        with pytest.raises(Unavailable):  # admitted again (and failed by the worker), not refused
            await plane.infer("lv", frame())
        return plane

    plane = run(scenario())
    assert plane.counters["lv"].refused == 0


def test_a_suspects_hold_never_overflows_however_often_it_fails():
    """1,025 failures without a good answer once raised OverflowError (2.0 ** 1024) inside the send."""
    s = Suspects()
    for i in range(5000):
        s.mark("w1", float(i))
    assert s.mark("w1", 5000.0) is None and s.suspect("w1", 5002.9) and not s.suspect("w1", 5003.0)


def test_a_bug_while_sending_a_batch_still_answers_every_frame(monkeypatch):
    """Whatever raises in the send (here the circuit breaker itself), the frames get INTERNAL, nothing
    stays in flight, and the next frame is served."""
    app = make_app("bug", [{"name": "m", "model": "m"}])
    fake = FakeWorkers(failing={"w1": Unavailable("down")})

    def broken(self, address, now):
        raise OverflowError("(34, 'Numerical result out of range')")

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route_n("m", ("w1",))}), frame_shape=FRAME, client=fake)
        with monkeypatch.context() as m:
            m.setattr(Suspects, "mark", broken)
            with pytest.raises(Internal, match="its batch was lost .OverflowError"):
                await asyncio.wait_for(plane.infer("bug", frame()), 5.0)
        del fake.failing["w1"]
        await plane.infer("bug", frame())
        return plane

    plane = run_clean(scenario())
    assert_each_frame_answered_once(plane, "bug", 2)
    assert (plane.counters["bug"].failed, plane.counters["bug"].success) == (1, 1)


def test_every_frame_a_client_offers_a_configured_app_counts_toward_its_rate_admitted_or_not():
    """The rate beacon reports offered frames: counting only the admitted ones, a plan shrunk in a lull
    (or an app refused after a burst) measured no more than it let in and never grew back."""
    a = make_app("a", [{"name": "m", "model": "m"}], rate=1.0)
    b = make_app("b", [{"name": "m", "model": "m"}])

    async def scenario():
        plane = FrontendDataPlane(frame_shape=FRAME, client=FakeWorkers(latency={"w1": 0.05}),
                                  configured={"a": a, "b": b})
        with pytest.raises(Unavailable):  # not routed yet
            await plane.infer("a", frame())
        await plane.update(table(a, {"m": route("m", "w1")}), refused={"b": "hardware counts run out"})
        for _ in range(3):
            with pytest.raises(Unavailable):  # refused by the controller
                await plane.infer("b", frame())
        out = await asyncio.gather(*(plane.infer("a", frame()) for _ in range(plane.limit(a) + 4)),
                                   return_exceptions=True)
        for name in ("zzz", "a", "b"):  # metadata asks and unknown names are not frames offered
            with contextlib.suppress(NotFound, Unavailable):
                plane.check(name)
        with pytest.raises(NotFound):
            await plane.infer("zzz", frame())
        return plane, out

    plane, out = run(scenario())
    assert sum(isinstance(r, ResourceExhausted) for r in out) == 4
    a_, b_ = plane.counters["a"], plane.counters["b"]
    assert (a_.frames, a_.refused, a_.unserved, a_.offered) == (8, 4, 1, 13)
    assert (b_.frames, b_.unserved, b_.offered) == (0, 3, 3)
    assert "zzz" not in plane.counters


def test_each_event_is_one_record_that_the_counters_and_prometheus_both_count():
    """Answered, dropped (a silent worker) and refused frames, and a retried batch: the plane's own
    counters and the Prometheus recorder see the same records and agree."""
    app = make_app("mix", [{"name": "m", "model": "m"}], slo_ms=200.0)
    fake = FakeWorkers(failing={"w1": Unavailable("down")}, silent={"w3"})
    metrics = FrontendMetrics()

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route_n("m", ("w1", "w2"))}), frame_shape=FRAME, client=fake,
                                  metrics=metrics, admit_floor=1, admit_factor=0.0)
        for _ in range(3):
            await plane.infer("mix", frame())
        plane.in_flight["mix"] += 1  # its one slot taken: the next frame is refused at once
        with pytest.raises(ResourceExhausted):
            await plane.infer("mix", frame())
        plane.in_flight["mix"] -= 1
        await plane.update(table(app, {"m": route_n("m", ("w3",))}, version=2))
        with pytest.raises(DeadlineExceeded):
            await plane.infer("mix", frame())
        return plane

    plane = run_clean(scenario())
    c, s = plane.counters["mix"], plane.stats()[("mix", "m")]
    assert (c.frames, c.success, c.dropped, c.refused, s.retries, s.batches, s.failed) == (4, 3, 1, 1, 1, 4, 1)
    value = metrics.registry.get_sample_value
    assert value("nv_inference_request_success_total", {"model": "mix"}) == c.success
    assert value("harpagon_frames_dropped_total", {"app": "mix"}) == c.dropped
    assert value("harpagon_frames_refused_total", {"app": "mix"}) == c.refused
    assert value("nv_inference_request_failure_total", {"model": "mix", "reason": "deadline"}) == c.dropped
    assert value("harpagon_frontend_retries_total", {"app": "mix", "module": "m"}) == s.retries
    assert value("harpagon_module_batches_total", {"app": "mix", "module": "m"}) == s.batches
    assert value("harpagon_module_requests_total", {"app": "mix", "module": "m"}) == s.requests == 4
    assert value("harpagon_module_latency_seconds_count", {"app": "mix", "module": "m"}) == len(s.latency_ms) == 3
    # the tally keeps whole nanoseconds per frame
    assert value("nv_inference_request_duration_us_total", {"model": "mix"}) == pytest.approx(c.success_ns / 1e3,
                                                                                             abs=0.01)


# --- encoded frames ------------------------------------------------------------------------------


def encoded(seed: int) -> EncodedFrame:
    """A JPEG as a client sends it (the fake workers never decode it)."""
    from PIL import Image as PilImage

    out = io.BytesIO()
    PilImage.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 20, 3), dtype=np.uint8)).save(out, "JPEG")
    return EncodedFrame(out.getvalue(), "jpeg")


def test_encoded_frames_ship_as_the_clients_bytes_and_a_frame_a_worker_cannot_read_fails_alone():
    app = make_app("e", [{"name": "m", "model": "m"}])
    frames = [encoded(i) for i in range(3)]
    fake = FakeWorkers(frame_errors={frames[1].data: "JPEG frame: truncated"})

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "w1", batch=3, wait_ms=NO_TIMER)}), frame_shape=FRAME,
                                  client=fake)
        return plane, await asyncio.gather(*(plane.infer("e", f) for f in frames), return_exceptions=True)

    plane, out = run(scenario())
    (c,) = fake.calls
    assert isinstance(c.batch, list) and all(sent is f for sent, f in zip(c.batch, frames, strict=True))
    assert isinstance(out[1], InvalidArgument) and "could not be read" in str(out[1]) and "truncated" in str(out[1])
    assert [float(o["m"][0][0][0]) for o in (out[0], out[2])] == [0.0, 0.0]  # the others answered
    counters = plane.counters["e"]
    assert (counters.success, counters.failed) == (2, 1)


def test_a_batch_mixing_raw_and_encoded_frames_ships_every_item_as_the_client_sent_it():
    app = make_app("mix", [{"name": "m", "model": "m"}])
    raw, jpeg = frame(), encoded(7)
    fake = FakeWorkers()

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "w1", batch=2, wait_ms=NO_TIMER)}), frame_shape=FRAME,
                                  client=fake)
        return await asyncio.gather(plane.infer("mix", raw), plane.infer("mix", jpeg))

    out = run(scenario())
    (c,) = fake.calls
    first, second = c.batch
    assert (first.encoding, first.height, first.width) == ("raw", FRAME[0], FRAME[1])  # full size: not resized
    assert first.data == raw.tobytes()  # [H, W, 3], as a raw frame is read
    assert second is jpeg and len(out) == 2
    assert float(out[0]["m"][0][0][0]) == pytest.approx(want(raw), rel=1e-5)


def test_raw_frames_ship_as_raw_frames_of_their_full_size_for_the_worker_to_resize():
    app = make_app("raw", [{"name": "m", "model": "m"}])
    frames = [frame(), RNG.integers(0, 255, (6, 10, 3), dtype=np.uint8)]  # any size: the worker resizes
    fake = FakeWorkers()

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "w1", batch=2, wait_ms=NO_TIMER)}), frame_shape=FRAME,
                                  client=fake)
        return await asyncio.gather(*(plane.infer("raw", f) for f in frames))

    out = run(scenario())
    (c,) = fake.calls
    assert isinstance(c.batch, list) and all(isinstance(x, EncodedFrame) for x in c.batch)
    assert [(x.encoding, x.height, x.width) for x in c.batch] == [("raw", 8, 8), ("raw", 6, 10)]
    assert [x.data for x in c.batch] == [f.tobytes() for f in frames]
    assert [float(o["m"][0][0][0]) for o in out] == pytest.approx([want(f) for f in frames], rel=1e-5)


def test_a_raw_frame_is_made_once_and_every_frame_module_gets_it_once_per_request():
    #   src -> a (scale 2), src -> b: all three take the frame
    app = make_app("once", [{"name": "src", "model": "m"}, {"name": "a", "model": "m", "after": ["src"], "scale": 2.0},
                            {"name": "b", "model": "m", "after": ["src"]}])
    f = frame()
    fake = FakeWorkers()

    async def scenario():
        plane = FrontendDataPlane(table(app, {"src": route("src", "ws"), "a": route("a", "wa", batch=2, wait_ms=NO_TIMER),
                                              "b": route("b", "wb")}),
                                  frame_shape=FRAME, client=fake)
        return await plane.infer("once", f)

    out = run(scenario())
    (src,) = fake.calls_to(module="src@b1")
    (a,) = fake.calls_to(module="a@b2")
    (b,) = fake.calls_to(module="b@b1")
    sent = [*src.batch, *a.batch, *b.batch]
    assert len(sent) == 4 and all(x is sent[0] for x in sent)  # one raw frame, not one per module or request
    assert (sent[0].encoding, sent[0].height, sent[0].width, sent[0].data) == ("raw", 8, 8, f.tobytes())
    assert [float(r[0][0]) for r in out["a"].requests] == pytest.approx([want(f)] * 2, rel=1e-5)


def test_an_in_process_frame_that_is_not_uint8_pixels_is_refused():
    app = make_app("bad", [{"name": "m", "model": "m"}])
    fake = FakeWorkers()

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "w1")}), frame_shape=FRAME, client=fake)
        for bad in (np.zeros(FRAME, np.float32), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8), np.uint8)):
            with pytest.raises(InvalidArgument, match="UINT8 pixels"):
                await plane.infer("bad", bad)
        return plane

    plane = run(scenario())
    assert fake.calls == [] and plane.in_flight["bad"] == 0


def test_a_reply_with_errors_for_items_outside_its_batch_is_the_workers_fault():
    app = make_app("odd", [{"name": "m", "model": "m"}])

    class Odd(FakeWorkers):
        async def infer(self, address, module, batch, timeout_s=None):
            got = await super().infer(address, module, batch, timeout_s)
            return WorkerReply(got.outputs, errors={5: "no such item"})

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "w1")}), frame_shape=FRAME, client=Odd())
        with pytest.raises(Unavailable, match="errors for items"):
            await plane.infer("odd", encoded(1))

    run(scenario())


def test_every_routed_module_has_figures_before_its_first_request():
    """Reports and the bench list every served module, traffic or not (zeros), after a reset too."""
    app = make_app("idle", [{"name": "m", "model": "m"}])

    async def scenario():
        plane = FrontendDataPlane(table(app, {"m": route("m", "w1")}), frame_shape=FRAME, client=FakeWorkers())
        before = plane.stats()
        plane.reset_stats()
        return before, plane.stats()

    before, after = run_clean(scenario())
    for stats in (before, after):
        assert list(stats) == [("idle", "m")] and stats[("idle", "m")].requests == 0
