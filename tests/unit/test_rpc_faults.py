"""A peer's gRPC status as the fault the frontend and controller act on."""

from __future__ import annotations

import grpc
import pytest

from harpagon.runtime.wire.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from harpagon.runtime.wire.rpc import fault_of


@pytest.mark.parametrize(("code", "fault"), [
    (grpc.StatusCode.UNAVAILABLE, Unavailable),
    (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceeded),
    (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgument),
    (grpc.StatusCode.NOT_FOUND, NotFound),
    (grpc.StatusCode.FAILED_PRECONDITION, FailedPrecondition),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhausted),
    (grpc.StatusCode.INTERNAL, Internal),  # a model that raised or a broken device: tried once elsewhere
    (grpc.StatusCode.UNKNOWN, Internal),
    (grpc.StatusCode.PERMISSION_DENIED, Unavailable),  # this peer will not take it: another may
    (grpc.StatusCode.CANCELLED, Unavailable),
])
def test_a_peers_status_becomes_the_fault_acted_on(code, fault):
    exc = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="why")
    got = fault_of(exc, "worker w1")
    assert type(got) is fault and "worker w1" in str(got)
