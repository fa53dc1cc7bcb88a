"""The wire layer: the contracts the controller, the frontend and the workers share.

Routing tables and their codec, module specs and their codec, tensors, status errors, gRPC server
and channel helpers, and the worker-client interface the controller and the frontend are given (a
gRPC one in production, fakes in unit tests). Nothing here imports the three components above it.

This package's own module imports no gRPC, so that :func:`quiet_grpc_core` can run before gRPC loads.
"""

from __future__ import annotations

import os


def quiet_grpc_core() -> None:
    """Keep gRPC core's INFO and WARNING lines off stderr, unless the operator sets GRPC_VERBOSITY.

    gRPC core logs each failed TLS handshake at INFO, one stderr line per connection attempt, so a
    peer without a certificate that retries in a loop wrote ~0.9 MB/s of them; core reads
    GRPC_VERBOSITY once, when `grpc` is imported, and has no other switch. Hidden by this default
    (`ERROR`): core's per-connection notices (failed handshakes, HTTP/2 and connectivity events)
    and its warnings. Still shown: core's errors, and every line of Harpagon's own loggers (calls
    refused, workers lost...). `GRPC_VERBOSITY=INFO` (or `DEBUG`, and `GRPC_TRACE`) shows them again."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
