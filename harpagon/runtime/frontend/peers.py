"""Frames forwarded to the frontend that owns their app's stream (docs/model.md, "Several frontends").

A frontend that gets a frame of an app another frontend owns sends the client's request on to the
owner once, marked forwarded, and relays the owner's answer, so that the app's batches fill at one
place. The owner never forwards a marked frame again. If the owner cannot be reached (it left, and
the re-plan without it is not in force yet), the frame is served here, in the owner's stream: its
tuples take requests from any frontend, only their batches then fill at two places for a while.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc
from tritonclient.grpc import service_pb2 as pb

from harpagon.dispatch.wrr import SmoothWRR
from harpagon.runtime.wire.routes import AppRoute, StreamRoute
from harpagon.runtime.wire.rpc import CHANNEL_OPTIONS, fault_of
from harpagon.runtime.wire.tls import TlsFiles

log = logging.getLogger("harpagon.frontend")

#: The request parameter that marks a frame another frontend forwarded.
FORWARDED = "harpagon_forwarded"
_INFER = "/inference.GRPCInferenceService/ModelInfer"


class _Pick:
    """Streams taken in turn, in proportion to their planned rates (smooth weighted round-robin)."""

    def __init__(self, streams: list[StreamRoute]):
        self.streams = streams
        self.wrr = SmoothWRR([st.rate for st in streams]) if streams else None

    def next(self) -> StreamRoute | None:
        return self.streams[self.wrr.next()] if self.wrr is not None else None


class Owners:
    """At one frontend (`me`), which stream of its app a frame joins, and whether it is forwarded to
    the stream's owner (policy only: routes and an id in, names and addresses out).

    A frame of an app this frontend owns a stream of is served here, in its own streams. A frame of an
    app owned elsewhere is forwarded, the owners taken in proportion to their streams' rates. A frame
    served here without a stream of its own (forwarded to it, or its owner unreachable) joins one of
    the app's streams in proportion to their rates. An app without streams is served here under its
    own name."""

    def __init__(self, apps: Mapping[str, AppRoute], me: str):
        self._own: dict[str, _Pick] = {}
        self._remote: dict[str, _Pick] = {}
        self._any: dict[str, _Pick] = {}
        for name, app in apps.items():
            if not app.streams:
                continue
            own = [st for st in app.streams if st.frontend == me]
            self._own[name] = _Pick(own)
            self._remote[name] = _Pick([] if own else [st for st in app.streams if st.address])
            self._any[name] = _Pick(list(app.streams))

    def owner(self, app: str) -> StreamRoute | None:
        """The stream (and owner) to forward a frame of `app` to; None: serve it here."""
        pick = self._remote.get(app)
        return pick.next() if pick is not None else None

    def stream(self, app: str) -> str:
        """The stream a frame of `app` served here joins (its module routes' name)."""
        pick = self._own.get(app)
        if pick is None:
            return app
        st = pick.next() or self._any[app].next()
        assert st is not None  # an app route's streams are never empty here
        return st.name


def was_forwarded(request: pb.ModelInferRequest) -> bool:
    return FORWARDED in request.parameters and request.parameters[FORWARDED].bool_param


#: The mark, serialised: appended to a request's bytes, it adds the parameter to it (protobuf merges them).
_MARK = pb.ModelInferRequest(parameters={FORWARDED: pb.InferParameter(bool_param=True)}).SerializeToString()


def forward_request(call) -> bytes:
    """The client's request (a servicer's `InferCall`) as it came, marked forwarded: its bytes with the
    mark appended, never parsed again (one copy of the frame). Only a request built in process comes
    without its bytes, and its tensors are in it: it is serialised."""
    return (call.data if call.data is not None else call.request.SerializeToString()) + _MARK


class Unreachable(Exception):
    """The owner could not be reached: serve the frame here."""


class Peers:
    """Channels to the other frontends' Triton ports (as their clients reach them: plaintext, or
    server TLS checked against `tls`'s CA)."""

    def __init__(self, tls: TlsFiles | None = None):
        self.tls = tls
        self._calls: dict[str, tuple[grpc.aio.Channel, grpc.aio.UnaryUnaryMultiCallable]] = {}

    def _call(self, address: str) -> grpc.aio.UnaryUnaryMultiCallable:
        held = self._calls.get(address)
        if held is None:
            channel = (grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(self.tls.ca or None),
                                               options=CHANNEL_OPTIONS) if self.tls is not None
                       else grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS))
            call = channel.unary_unary(_INFER, request_serializer=None, response_deserializer=None)
            held = self._calls[address] = (channel, call)
        return held[1]

    async def infer(self, address: str, data: bytes, timeout_s: float) -> bytes:
        """The owner's answer, serialised (relayed as it is); raises Unreachable when the owner is not
        there (to serve the frame here), else the owner's status as a fault (the client's answer)."""
        try:
            return await self._call(address)(data, timeout=timeout_s, wait_for_ready=False)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise Unreachable(f"frontend {address}: {exc.details()}") from exc
            raise fault_of(exc, f"frontend {address}") from exc

    async def close(self) -> None:
        for channel, _ in self._calls.values():
            await channel.close()
        self._calls.clear()
