"""The worker-client interface the controller and the frontend are given, and its gRPC
implementation. Components talk to workers only through it, so their logic (the controller's
three-phase re-plan, the frontend's DAG, scaling and deadline drops) runs in unit tests with fakes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import numpy as np

from harpagon.runtime.wire.errors import NotFound, RuntimeFault, Unavailable
from harpagon.runtime.wire.frames import EncodedFrame, frames_request
from harpagon.runtime.wire.modules import ModuleSpec, config_to_proto
from harpagon.runtime.wire.rpc import aio_channel, fault_of
from harpagon.runtime.wire.tensors import Crops, from_numpy, to_numpy
from harpagon.runtime.wire.tls import TlsFiles
from harpagon.v1 import worker_pb2 as pb
from harpagon.v1 import worker_pb2_grpc as rpc

#: The worker's Infer method, for requests serialised by hand (`frames_request`).
INFER_METHOD = f"/{pb.DESCRIPTOR.services_by_name['Worker'].full_name}/Infer"


@dataclass(frozen=True, slots=True)
class WorkerReply:
    """One batch's outputs (each [n, ...], real items only), a detector's crops per child module, the
    worker's own timings, and the items whose frame could not be read (a batch of frames only: their
    outputs are meaningless, and each of those frames is answered INVALID_ARGUMENT alone)."""

    outputs: list[np.ndarray]
    queue_ms: float = 0.0
    exec_ms: float = 0.0
    crops: dict[str, Crops] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


class WorkerClient(Protocol):
    async def infer(self, address: str, module: str, batch: np.ndarray | Sequence[EncodedFrame],
                    timeout_s: float | None = None) -> WorkerReply:
        """Run one batch, a tensor [n, *input_shape] or n encoded frames; raises a RuntimeFault
        (Unavailable, DeadlineExceeded, ...) on failure."""
        ...

    async def apply(self, address: str, version: int, specs: Sequence[ModuleSpec], timeout_s: float) -> int:
        """Put a configuration in force on a worker; returns the version in force; raises a RuntimeFault."""
        ...

    def forget(self, address: str) -> None:
        """Drop what is held for a worker that left."""
        ...

    async def close(self) -> None: ...


class GrpcWorkerClient:
    """One channel per worker address, opened on first use and shared by everything that calls it;
    with `tls`, mutual TLS under the caller's certificate, and the worker must prove it is one."""

    def __init__(self, tls: TlsFiles | None = None) -> None:
        self.tls = tls
        self._stubs: dict[str, tuple[grpc.aio.Channel, rpc.WorkerStub, Any]] = {}

    def _held(self, address: str) -> tuple[grpc.aio.Channel, rpc.WorkerStub, Any]:
        held = self._stubs.get(address)
        if held is None:
            channel = aio_channel(address, self.tls, "worker")
            # Infer with a request already serialised (frames_request: frames copied once, not three times)
            infer_bytes = channel.unary_unary(INFER_METHOD, request_serializer=None,
                                              response_deserializer=pb.InferResponse.FromString)
            held = self._stubs[address] = (channel, rpc.WorkerStub(channel), infer_bytes)
        return held

    def _stub(self, address: str) -> rpc.WorkerStub:
        return self._held(address)[1]

    async def infer(self, address: str, module: str, batch: np.ndarray | Sequence[EncodedFrame],
                    timeout_s: float | None = None) -> WorkerReply:
        try:
            if isinstance(batch, np.ndarray):
                reply = await self._stub(address).Infer(pb.InferRequest(module=module, input=from_numpy(batch)),
                                                         timeout=timeout_s)
            else:
                reply = await self._held(address)[2](frames_request(module, batch), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            fault = fault_of(exc, f"worker {address}")
            if isinstance(fault, NotFound):  # the module is not (or no longer) there: a routing race, not the app
                raise Unavailable(str(fault)) from None
            raise fault from None
        try:
            crops = {c.child: Crops.from_proto(c) for c in reply.crops}
            errors = {int(e.item): e.message for e in reply.errors}
            if any(i >= len(batch) for i in errors):
                raise Unavailable(f"errors for items {sorted(errors)} of a batch of {len(batch)}")
            return WorkerReply([to_numpy(t) for t in reply.outputs], reply.queue_ms, reply.exec_ms, crops, errors)
        except RuntimeFault as exc:  # a reply that does not decode is the worker's failure, not the client's
            raise Unavailable(f"worker {address} sent a malformed reply: {exc}") from None

    async def apply(self, address: str, version: int, specs: Sequence[ModuleSpec], timeout_s: float) -> int:
        try:
            reply = await self._stub(address).ApplyConfig(
                pb.ApplyConfigRequest(config=config_to_proto(version, list(specs))), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise fault_of(exc, f"worker {address}") from None
        return int(reply.version)

    def forget(self, address: str) -> None:
        held = self._stubs.pop(address, None)
        if held is not None:
            asyncio.ensure_future(held[0].close())

    async def close(self) -> None:
        held, self._stubs = self._stubs, {}
        await asyncio.gather(*(channel.close() for channel, _, _ in held.values()), return_exceptions=True)
