"""gRPC servers and channels with one set of options (and, given a TLS directory, mutual TLS with
each call authorised by the caller's role, :mod:`harpagon.runtime.wire.tls`), and the mapping
between status codes and :mod:`harpagon.runtime.wire.errors` both ways."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc

from harpagon.runtime.wire.errors import BY_CODE, DeadlineExceeded, RuntimeFault, Unavailable
from harpagon.runtime.wire.tls import AsyncAuthorizer, Role, SyncAuthorizer, TlsFiles, channel_options

log = logging.getLogger("harpagon.rpc")

#: Frames and batches are large messages: 256 MiB each way.
MESSAGE_OPTIONS: list[tuple[str, int]] = [("grpc.max_receive_message_length", 256 << 20),
                                          ("grpc.max_send_message_length", 256 << 20)]
#: Control-plane peers reconnect quickly after a restart (gRPC's default backoff grows to 2 minutes,
#: which kept a worker from a restarted controller for seconds).
#: They also ping an idle connection, so that a peer lost without a reset (a node gone, a partition)
#: is noticed in seconds: a frontend's routes stream is otherwise idle for as long as the plan holds.
CHANNEL_OPTIONS: list[tuple[str, int]] = [*MESSAGE_OPTIONS, ("grpc.initial_reconnect_backoff_ms", 100),
                                          ("grpc.min_reconnect_backoff_ms", 100),
                                          ("grpc.max_reconnect_backoff_ms", 500),
                                          ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
                                          ("grpc.keepalive_permit_without_calls", 1),
                                          ("grpc.http2.max_pings_without_data", 0)]
#: Servers also refuse a port another process holds: with gRPC's default SO_REUSEPORT a second
#: frontend on the same port would silently take half of the first one's connections.
SERVER_OPTIONS: list[tuple[str, int]] = [*MESSAGE_OPTIONS, ("grpc.so_reuseport", 0),
                                         # peers' keepalive pings (every 10 s, idle or not) are welcome
                                         ("grpc.keepalive_permit_without_calls", 1),
                                         ("grpc.http2.min_ping_interval_without_data_ms", 5_000)]
#: The plaintext health port answers anyone: small messages only, and few calls at a time.
HEALTH_OPTIONS: list[tuple[str, int]] = [("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 4096),
                                         ("grpc.max_send_message_length", 4096)]


def _bind(server: grpc.Server | grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    try:
        bound = (server.add_secure_port(address, credentials) if credentials is not None
                 else server.add_insecure_port(address))
    except RuntimeError as exc:  # grpc raises RuntimeError when the port is taken, without saying why
        raise OSError(f"cannot listen on {address}: the address is in use or cannot be bound here "
                      f"(gRPC: {str(exc).split(';')[0]})") from None
    if not bound:
        raise OSError(f"cannot listen on {address} (in use?)")
    return bound


def aio_server(host: str, port: int, tls: TlsFiles | None = None, client_auth: bool = True,
               options: list[tuple[str, int]] | None = None) -> tuple[grpc.aio.Server, int]:
    """An asyncio server bound to host:port (0 picks a free port); add servicers, then start it.
    With `tls`, callers need a certificate of the CA and each call is authorised by their role;
    `client_auth=False` is plain server TLS (the client-facing Triton port)."""
    extra = dict(options or [])
    opts = [(k, v) for k, v in SERVER_OPTIONS if k not in extra] + list(extra.items())  # `options` win
    if tls is not None and client_auth:
        server = grpc.aio.server(options=opts, interceptors=[AsyncAuthorizer()])
    else:
        server = grpc.aio.server(options=opts)
    creds = tls.server_credentials(client_auth) if tls is not None else None
    return server, _bind(server, f"{host}:{port}", creds)


def thread_server(host: str, port: int, threads: int, unix_socket: str | None = None,
                  tls: TlsFiles | None = None) -> tuple[grpc.Server, str]:
    """A thread-pool server (the worker's: its device calls block), on host:port (0 picks a free port)
    or on a Unix socket; returns it and the address peers dial."""
    pool = futures.ThreadPoolExecutor(threads, thread_name_prefix="grpc")
    interceptors = [SyncAuthorizer()] if tls is not None else []
    server = grpc.server(pool, options=SERVER_OPTIONS, interceptors=interceptors)
    creds = tls.server_credentials() if tls is not None else None
    if unix_socket is not None:
        address = f"unix:{unix_socket}"
        _bind(server, address, creds)
        return server, address
    return server, f"{host}:{_bind(server, f'{host}:{port}', creds)}"


def health_server(host: str, port: int, servicer, asynchronous: bool = True) -> tuple[grpc.Server | grpc.aio.Server, int]:
    """A plaintext server holding only the standard health service's `Check` (Kubernetes' gRPC probes
    do not speak TLS, and use nothing else); it changes nothing, so it needs no credentials. `Watch`
    is not served (UNIMPLEMENTED): its streams stay open, and 16 idle ones took every slot of the
    port, so that every probe failed. Start it after adding nothing."""
    from grpc_health.v1 import health_pb2

    server: grpc.Server | grpc.aio.Server = (
        grpc.aio.server(options=HEALTH_OPTIONS, maximum_concurrent_rpcs=16) if asynchronous
        else grpc.server(futures.ThreadPoolExecutor(2, thread_name_prefix="health"), options=HEALTH_OPTIONS,
                         maximum_concurrent_rpcs=16))
    check = grpc.unary_unary_rpc_method_handler(servicer.Check,
                                                request_deserializer=health_pb2.HealthCheckRequest.FromString,
                                                response_serializer=health_pb2.HealthCheckResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("grpc.health.v1.Health",
                                                                          {"Check": check}),))
    return server, _bind(server, f"{host}:{port}", None)


def aio_channel(address: str, tls: TlsFiles | None = None, peer: Role | None = None) -> grpc.aio.Channel:
    """A channel to `address`; with `tls`, the server must prove it is `peer`."""
    if tls is not None and peer is None:
        raise ValueError("a TLS channel needs the role its server must prove")
    if tls is None:
        return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    return grpc.aio.secure_channel(address, tls.channel_credentials(),
                                   options=[*CHANNEL_OPTIONS, *channel_options(peer)])


def sync_channel(address: str, tls: TlsFiles | None = None, peer: Role | None = None) -> grpc.Channel:
    if tls is not None and peer is None:
        raise ValueError("a TLS channel needs the role its server must prove")
    if tls is None:
        return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    return grpc.secure_channel(address, tls.channel_credentials(),
                               options=[*CHANNEL_OPTIONS, *channel_options(peer)])


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
    """In a synchronous servicer: answer a fault with its status code and message, and anything else
    (a model that raised) with INTERNAL, logged (the server goes on)."""
    try:
        yield
    except RuntimeFault as exc:
        context.abort(status_code(exc), str(exc))
    except Exception as exc:
        if context.code() is not None:  # an abort already made (grpc raises to unwind it)
            raise
        log.exception("call failed")
        context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
