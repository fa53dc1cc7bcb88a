"""The wire layer: the contracts the controller, the frontend and the workers share.

Routing tables and their codec, module specs and their codec, tensors, status errors, gRPC server
and channel helpers, and the worker-client interface the controller and the frontend are given (a
gRPC one in production, fakes in unit tests). Nothing here imports the three components above it.

This package's own module imports no gRPC, so that :func:`quiet_grpc_core` can run before gRPC loads.
"""

from __future__ import annotations

import os


def quiet_grpc_core() -> None:
    """Keep gRPC core's own log lines off stderr, unless the operator sets GRPC_VERBOSITY.

    gRPC core logs each failed TLS handshake at INFO, one stderr line per connection attempt, so a
    peer without a certificate that retries in a loop wrote ~0.9 MB/s of them; and it prints its own
    copy of errors Harpagon reports in one line of its own (a port in use: `harpagon worker: cannot
    listen on 127.0.0.1:8001: ...`, after a multi-line core error). Core reads GRPC_VERBOSITY once,
    when `grpc` is imported, and has no other switch. Hidden by this default (`NONE`): core's
    per-connection notices, warnings and errors. Still shown: every line of Harpagon's own loggers
    (calls refused, workers lost, ports in use...). `GRPC_VERBOSITY=ERROR` (or `INFO`, `DEBUG`, and
    `GRPC_TRACE`) shows them again; so does `--log-level debug`."""
    global QUIETED
    if "GRPC_VERBOSITY" not in os.environ:
        os.environ["GRPC_VERBOSITY"] = "NONE"
        QUIETED = True


#: Whether :func:`quiet_grpc_core` set GRPC_VERBOSITY (the operator did not): `--log-level debug` may then
#: show core's errors again, if it runs before gRPC is imported.
QUIETED = False
