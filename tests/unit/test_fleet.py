"""The fleet (runtime/controller/fleet.py, docs/model.md "The fleet"): targets and the scale-down delay as pure
functions, and the controller's part on fake workers: plans within the quota set the desired fleet, a
short fleet is planned with the workers it has, and a worker that leaves is re-planned around before it
is pushed an empty configuration."""

from __future__ import annotations

import asyncio
import functools

import pytest
from pydantic import ValidationError

from harpagon.config.schema import FleetConfig, Workload
from harpagon.runtime.controller.fleet import FleetPolicy, fits, targets
from tests.conftest import BASE
from tests.fakes import run_virtual
from tests.unit.test_controller_replan import FLUID, Harness, t4

QUOTA = {"t4": 8, "v100": None}


def test_targets_add_the_spare_and_keep_within_minimum_and_quota():
    cfg = FleetConfig(spare=1, minimum={"v100": 2})
    assert targets({"t4": 3}, QUOTA, cfg) == {"t4": 4, "v100": 2}  # v100: unused, but its minimum
    assert targets({"t4": 8}, QUOTA, cfg) == {"t4": 8, "v100": 2}  # never past the quota
    assert targets({"t4": 0, "v100": 5}, QUOTA, FleetConfig(spare={"v100": 2})) == {"t4": 0, "v100": 7}


def test_fits_compares_per_kind():
    assert fits({"t4": 2}, {"t4": 2, "v100": 1})
    assert not fits({"t4": 2, "v100": 1}, {"t4": 5})


@pytest.mark.parametrize("field, value", [("spare", -1), ("minimum", {"t4": True}), ("spare", 2.5),
                                          ("scale_down_delay_s", -1.0)])
def test_bad_fleet_settings_name_the_field_and_the_value(field, value):
    with pytest.raises(ValidationError) as err:
        FleetConfig(**{field: value})
    assert field in str(err.value)


def test_desired_rises_at_once_and_falls_only_after_the_delay():
    policy = FleetPolicy(FleetConfig(scale_down_delay_s=30.0), {"t4": 10})
    assert policy.desired(0.0) == {"t4": 0}  # before any plan: the minimum
    policy.observe(0.0, {"t4": 5})
    assert policy.desired(0.0) == {"t4": 5}
    policy.observe(10.0, {"t4": 2})  # the load fell
    assert policy.desired(10.0) == {"t4": 5}
    assert policy.shrinking(10.0) == {"t4": 30.0}
    assert policy.desired(39.9) == {"t4": 5}
    assert policy.desired(40.0) == {"t4": 2}  # 30 s after the target fell
    assert policy.shrinking(40.0) == {}
    policy.observe(41.0, {"t4": 7})  # a rise counts at once, even within the delay of a fall
    assert policy.desired(41.0) == {"t4": 7}


def test_a_dip_shorter_than_the_delay_stops_no_worker():
    policy = FleetPolicy(FleetConfig(scale_down_delay_s=30.0), {"t4": 10})
    policy.observe(0.0, {"t4": 6})
    policy.observe(5.0, {"t4": 3})
    policy.observe(20.0, {"t4": 6})
    assert all(policy.desired(t) == {"t4": 6} for t in (5.0, 20.0, 49.0, 100.0))


# --- the controller -----------------------------------------------------------------------------

# Quota of 6 t4s, one spare; at 100 frames/s the plan needs two (d@b1 and c@b1, unshared).
FLEET = Workload.model_validate({**BASE, "hardware": [{"name": "t4", "price_per_hour": 0.526, "count": 6}],
                                 "apps": [{"name": "cam", "rate": 100, "slo_ms": 200, "modules": [
                                     {"name": "d", "model": "resnet50"},
                                     {"name": "c", "model": "resnet50", "after": ["d"], "scale": 2}]}],
                                 "serve": {"sharing": False, "fleet": {"spare": 1, "scale_down_delay_s": 10}}})


class RecordingScaler:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, int], dict[str, list[str]]]] = []

    def scale(self, desired, idle) -> None:
        self.calls.append((dict(desired), {k: list(v) for k, v in idle.items()}))


def virtual(test):
    """Run an async test on the virtual clock's loop (plans inline, timers take no real time)."""

    @functools.wraps(test)
    def run() -> None:
        run_virtual(asyncio.wait_for(test(), 20))

    return run


def fleet_harness() -> tuple[Harness, RecordingScaler]:
    h = Harness(FLEET, FLUID)
    h.c.scaler = scaler = RecordingScaler()
    return h, scaler


@virtual
async def test_the_desired_fleet_is_the_quota_plans_workers_plus_the_spare():
    h, scaler = fleet_harness()
    await h.planned(4)
    assert h.c.plan.workers_by_hardware() == {"t4": 2}
    desired, idle = scaler.calls[-1]
    assert desired == {"t4": 3}
    assert sorted(idle["t4"]) == sorted(set(h.c.running) - {w for w, mods in h.c.running.items() if mods})
    assert len(idle["t4"]) == 2


@virtual
async def test_a_short_fleet_is_planned_with_the_workers_it_has_and_asks_for_more():
    h, scaler = fleet_harness()
    h.c.register(t4(1)[0])
    await h.c.replan()
    # one t4 cannot hold d and c apart: refused for now, while the fleet asks for three
    assert [r.app for r in h.c.plan.refused] == ["cam"]
    assert scaler.calls[-1][0] == {"t4": 3}
    for w in t4(3)[1:]:
        h.c.register(w)
    await h.c.replan()
    assert not h.c.plan.refused and h.c.plan.workers_by_hardware() == {"t4": 2}


@virtual
async def test_a_short_fleet_keeps_serving_an_app_at_the_rate_the_plan_in_force_served():
    h, _ = fleet_harness()
    await h.planned(2)  # exactly the plan's two workers, no spare registered
    served = h.c.plan.app("cam").rate
    h.c.rates.planned["cam"] = 300.0  # measured: it would need a third t4
    await h.c.replan()
    assert not h.c.plan.refused, "refused while the fleet grows"
    assert h.c.plan.app("cam").rate == pytest.approx(served)


@virtual
async def test_a_busy_worker_that_leaves_is_planned_around_before_it_is_emptied():
    h, _ = fleet_harness()
    await h.planned(3)
    busy = next(w for w, mods in h.c.running.items() if mods)
    address = next(w.address for w in t4(3) if w.id == busy)
    routed = h.tables[-1][0].routes.values()
    assert address in {a for r in routed for addrs in r.workers for a in addrs}
    assert h.c.leave(busy) is False  # it runs modules: a re-plan first
    assert busy not in {w.id for w in h.c.workers}
    await h.c.replan()
    table = h.tables[-1][0]
    assert address not in {a for r in table.routes.values() for addrs in r.workers for a in addrs}
    last_routes = h.routes_marks()[-1].seq
    empties = [a for a in h.fake.applies if a.address == address and not a.modules]
    assert empties and empties[0].seq > last_routes  # emptied only once nothing routes to it
    assert busy not in h.c.running and h.c.left == 1 and h.c.evicted == 0
    assert not h.c.plan.refused


@virtual
async def test_an_idle_or_unknown_worker_may_leave_at_once():
    h, _ = fleet_harness()
    await h.planned(3)
    idle = next(w for w, mods in h.c.running.items() if not mods)
    assert h.c.leave(idle) is True and idle not in h.c.running
    assert h.c.leave("nobody") is True
    assert not h.c.dirty  # nothing routed to it: no re-plan


@virtual
async def test_a_stopped_controller_lets_leaving_workers_go_at_once():
    """One SIGTERM to a local cluster's process group reaches its workers and serve together: the
    workers' Leave must not wait out their drain timeout for a plan the stopping controller never makes."""
    h, _ = fleet_harness()
    await h.planned(3)
    busy = [w for w, mods in h.c.running.items() if mods]
    assert len(busy) == 2
    assert h.c.leave(busy[0]) is False  # before the stop: planned around first
    await h.c.stop()
    assert busy[0] not in h.c.running, "a worker leaving when the controller stopped is let go"
    assert h.c.leave(busy[1]) is True and busy[1] not in h.c.running  # and one leaving after it at once
    assert h.c.left == 2 and h.c.evicted == 0
