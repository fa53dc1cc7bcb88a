"""gRPC servers and channels with one set of options, and the mapping between status codes and
:mod:`harpagon.runtime.wire.errors` both ways."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc

from harpagon.runtime.wire.errors import BY_CODE, DeadlineExceeded, RuntimeFault, Unavailable

#: Frames and batches are large messages: 256 MiB each way.
MESSAGE_OPTIONS: list[tuple[str, int]] = [("grpc.max_receive_message_length", 256 << 20),
                                          ("grpc.max_send_message_length", 256 << 20)]
#: Servers also refuse a port another process holds: with gRPC's default SO_REUSEPORT a second
#: frontend on the same port would silently take half of the first one's connections.
SERVER_OPTIONS: list[tuple[str, int]] = [*MESSAGE_OPTIONS, ("grpc.so_reuseport", 0)]


def _bind(server: grpc.Server | grpc.aio.Server, host: str, port: int) -> int:
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:  # grpc raises RuntimeError when the port is taken
        raise OSError(f"cannot listen on {host}:{port}: {exc}") from None
    if not bound:
        raise OSError(f"cannot listen on {host}:{port} (in use?)")
    return bound


def aio_server(host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """An asyncio server bound to host:port (0 picks a free port); add servicers, then start it."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    return server, _bind(server, host, port)


def thread_server(host: str, port: int, threads: int, unix_socket: str | None = None) -> tuple[grpc.Server, str]:
    """A thread-pool server (the worker's: its device calls block), on host:port (0 picks a free port)
    or on a Unix socket; returns it and the address peers dial."""
    server = grpc.server(futures.ThreadPoolExecutor(threads, thread_name_prefix="grpc"), options=SERVER_OPTIONS)
    if unix_socket is not None:
        address = f"unix:{unix_socket}"
        if not server.add_insecure_port(address):
            raise OSError(f"cannot listen on {address}")
        return server, address
    return server, f"{host}:{_bind(server, host, port)}"


def aio_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=MESSAGE_OPTIONS)


def sync_channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=MESSAGE_OPTIONS)


def status_code(fault: RuntimeFault) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, fault.code)


def fault_of(exc: grpc.aio.AioRpcError, where: str) -> RuntimeFault:
    """A peer's status as a fault: its own code when a client may see it, else Unavailable."""
    code = exc.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"{where}: no answer before the deadline")
    return BY_CODE.get(code.name, Unavailable)(f"{where}: {code.name}: {exc.details()}")


@contextmanager
def abort_on_fault(context: grpc.ServicerContext) -> Iterator[None]:
    """In a synchronous servicer: answer a fault with its status code and message (the server goes on)."""
    try:
        yield
    except RuntimeFault as exc:
        context.abort(status_code(exc), str(exc))
