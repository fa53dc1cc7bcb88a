"""The failover policy alone: plain data in and out, times passed in (no event loop, no workers)."""

from __future__ import annotations

import pytest

from harpagon.runtime.frontend.failover import SUSPECT_FIRST_S, Failover, Outstanding, Suspects
from harpagon.runtime.wire.errors import DeadlineExceeded, Internal, InvalidArgument, Unavailable


def test_the_dispatchers_choice_first_unless_suspect_and_each_worker_once():
    suspects = Suspects()
    suspects.mark("a", 0.0)
    f = Failover(["a", "b", "c"], suspects, stall_s=0.3)
    assert f.pick(0.1) == "b"  # a is suspect
    f.timeout("b", 1.0, 0.1)
    assert f.pick(0.1) == "c"
    f.timeout("c", 1.0, 0.1)
    assert f.pick(0.1) == "a"  # suspect, but the last one left
    f.timeout("a", 1.0, 0.1)
    assert f.pick(0.1) is None


def test_a_call_is_cut_at_the_stall_limit_only_where_a_healthy_worker_could_take_over():
    f = Failover(["a", "b"], Suspects(), stall_s=0.3)
    assert f.timeout("a", 2.0, 0.0) == 0.3  # b is there
    failure = f.failed("a", TimeoutError(), 0.0, 0.3)
    assert isinstance(failure.error, Unavailable) and "stalled" in str(failure.error)
    assert failure.retry and failure.hold == SUSPECT_FIRST_S
    assert f.timeout("b", 1.7, 0.3) == 1.7  # the last worker runs to the frames' deadline
    last = f.failed("b", TimeoutError(), 0.3, 2.0)
    assert isinstance(last.error, DeadlineExceeded) and last.retry  # stalled past its limit: suspect too
    assert f.pick(2.0) is None


def test_internal_is_tried_once_elsewhere_and_blamed_only_when_another_worker_answers():
    suspects = Suspects()
    f = Failover(["a", "b", "c"], suspects, stall_s=None)
    f.timeout("a", 1.0, 0.0)
    first = f.failed("a", Internal("boom"), 0.0, 0.01)
    assert first.retry and first.hold is None and "a" not in suspects
    f.timeout("b", 1.0, 0.01)
    second = f.failed("b", Internal("boom"), 0.01, 0.02)
    assert not second.retry  # the model's: every frame gets INTERNAL
    g = Failover(["a", "b"], suspects, stall_s=None)
    g.timeout("a", 1.0, 0.0)
    g.failed("a", Internal("boom"), 0.0, 0.01)
    g.timeout("b", 1.0, 0.01)
    assert g.answered("b") == "a"  # b answered what a failed: a strike against a


def test_the_requests_own_faults_are_not_tried_again():
    f = Failover(["a", "b"], Suspects(), stall_s=0.3)
    f.timeout("a", 1.0, 0.0)
    failure = f.failed("a", InvalidArgument("bad"), 0.0, 0.01)
    assert not failure.retry and failure.hold is None


def test_a_call_behind_others_at_its_worker_gets_their_time_too():
    """A worker answers first in, first out: busy is not stuck."""
    out = Outstanding()
    assert [out.start("w1"), out.start("w1"), out.start("w2")] == [0, 1, 0]
    f = Failover(["w1", "w2"], Suspects(), stall_s=0.2)
    assert f.timeout("w1", remaining_s=5.0, now=0.0, ahead=2) == pytest.approx(0.6)  # two batches ahead
    stuck = f.failed("w1", TimeoutError(), sent=0.0, now=0.6)
    assert isinstance(stuck.error, Unavailable) and "600 ms" in str(stuck.error) and stuck.retry
    assert f.timeout("w2", remaining_s=4.4, now=0.6) == 4.4  # the last worker: the frames' deadline
    out.done("w1")
    assert out.calls == {"w1": 1, "w2": 1}
    out.done("w1")
    out.done("w2")
    assert out.calls == {} and out.start("w2") == 0
