"""Errors of the data and control planes, each mapped to one gRPC status code at the servicers."""

from __future__ import annotations


class RuntimeFault(Exception):
    """Base class; `code` names the grpc.StatusCode a servicer answers with."""

    code = "INTERNAL"


class NotFound(RuntimeFault):
    code = "NOT_FOUND"


class InvalidArgument(RuntimeFault):
    code = "INVALID_ARGUMENT"


class FailedPrecondition(RuntimeFault):
    code = "FAILED_PRECONDITION"


class Unavailable(RuntimeFault):
    """Worth a retry: an app configured but not routed yet, a worker that failed."""

    code = "UNAVAILABLE"


class DeadlineExceeded(RuntimeFault):
    code = "DEADLINE_EXCEEDED"


class ResourceExhausted(RuntimeFault):
    """Refused at once because the server is overloaded (an app's frames in flight are at their
    bound): worth a retry later, with backoff."""

    code = "RESOURCE_EXHAUSTED"


class Internal(RuntimeFault):
    """A peer failed on the request (UNKNOWN or INTERNAL from it): a model that raised, or a device that
    fails everything. The frontend tries the batch once on another worker of its tuple; a worker whose
    INTERNALs another worker keeps answering well is made suspect (frontend/data_plane.py)."""

    code = "INTERNAL"


#: The fault raised for each gRPC status a peer answers with (anything else is Unavailable).
BY_CODE: dict[str, type[RuntimeFault]] = {c.code: c for c in (NotFound, InvalidArgument, FailedPrecondition,
                                                               Unavailable, DeadlineExceeded,
                                                               ResourceExhausted, Internal)}
BY_CODE["UNKNOWN"] = Internal  # a peer's unexpected exception
