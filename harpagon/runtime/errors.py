"""Errors of the data planes, each mapped to one gRPC status code by the servicers."""

from __future__ import annotations


class RuntimeFault(Exception):
    """Base class; `code` names the grpc.StatusCode the servicer answers with."""

    code = "INTERNAL"


class NotFound(RuntimeFault):
    code = "NOT_FOUND"


class InvalidArgument(RuntimeFault):
    code = "INVALID_ARGUMENT"


class FailedPrecondition(RuntimeFault):
    code = "FAILED_PRECONDITION"
