"""The plaintext health port answers `Check` only: idle `Watch` streams cannot starve the probes."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from harpagon.runtime.wire.rpc import health_server


@pytest.mark.parametrize("asynchronous", [True, False])
def test_watch_is_refused_and_checks_answer_while_watches_pile_up(asynchronous):
    """Before, 16 idle Watch calls held every slot of the port and every Check failed."""

    async def scenario():
        servicer = health.aio.HealthServicer() if asynchronous else health.HealthServicer()
        server, port = health_server("127.0.0.1", 0, servicer, asynchronous=asynchronous)
        if asynchronous:
            await server.start()
        else:
            server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                watches = [stub.Watch(health_pb2.HealthCheckRequest(), timeout=5) for _ in range(32)]
                codes = []
                for w in watches:
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await w.read()
                    codes.append(err.value.code())
                assert set(codes) == {grpc.StatusCode.UNIMPLEMENTED}
                for _ in range(20):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            if asynchronous:
                await server.stop(None)
            else:
                server.stop(None)

    asyncio.run(asyncio.wait_for(scenario(), 30))
