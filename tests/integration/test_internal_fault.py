"""A worker whose device is broken (test-only fault injection on an emulated device,
HARPAGON_EMULATED_FAULT=internal): it answers every batch INTERNAL, and a frontend data plane routes
around it to the tuple's healthy worker, then stops sending it batches while it is suspect."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import grpc
import numpy as np
import pytest

from harpagon.config.schema import App
from harpagon.dispatch.module import TupleSpec
from harpagon.runtime.controller.assignment import app_route
from harpagon.runtime.frontend.data_plane import FrontendDataPlane
from harpagon.runtime.frontend.failover import INTERNAL_STRIKES
from harpagon.runtime.metrics import FrontendMetrics
from harpagon.runtime.wire.clients import GrpcWorkerClient
from harpagon.runtime.wire.routes import ModuleRoute, RoutingTable
from harpagon.runtime.wire.tensors import from_numpy
from harpagon.runtime.worker.executor import FAULT_ENV
from harpagon.v1 import worker_pb2 as pb
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration
SMALL = (3, 32, 32)
MODULE = "m@b1"


def apply(worker) -> None:
    worker.stub.ApplyConfig(pb.ApplyConfigRequest(config=pb.WorkerConfig(version=1, modules=[
        pb.ModuleConfig(name=MODULE, model="resnet50", batch=1, input_shape=SMALL)])), timeout=30)


def test_an_emulated_worker_with_the_internal_fault_answers_every_batch_internal(start_worker, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "internal")
    w = start_worker("--device", "emulated:v100")
    w.wait_for_line("fault injection")
    apply(w)
    batch = pb.InferRequest(module=MODULE, input=from_numpy(np.zeros((1, *SMALL), np.uint8)))
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as info:
            w.stub.Infer(batch, timeout=30)
        assert info.value.code() == grpc.StatusCode.INTERNAL, info.value
        assert "emulated device fault" in info.value.details()
    assert w.stub.Health(pb.HealthRequest(), timeout=30).emulated  # it keeps serving, failing every batch
    (stats,) = w.stub.Stats(pb.StatsRequest(), timeout=30).modules
    assert (stats.errors, stats.batches) == (2, 0)


def test_a_misspelt_fault_is_refused_at_startup():
    env = {**os.environ, FAULT_ENV: "internl"}
    done = subprocess.run([sys.executable, "-m", "harpagon.cli", "worker", "--port", "0", "--device", "emulated:v100"],
                          check=False, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert done.returncode == 2 and FAULT_ENV in done.stderr and "'internl'" in done.stderr, done


def test_a_frontend_routes_around_a_worker_that_answers_internal(start_worker, monkeypatch):
    good = start_worker("--device", "emulated:v100")
    monkeypatch.setenv(FAULT_ENV, "internal")
    bad = start_worker("--device", "emulated:v100")
    for w in (good, bad):
        apply(w)
    app = app_route(App.model_validate({"name": "a", "rate": 50, "slo_ms": 2000,
                                        "modules": [{"name": "m", "model": "resnet50"}]}))
    route = ModuleRoute("m", SMALL, (TupleSpec(1, 2, 50.0, 0.0, 0.0),), ((bad.address, good.address),), (MODULE,))
    metrics = FrontendMetrics()
    frames = 4 * INTERNAL_STRIKES

    async def scenario():
        client = GrpcWorkerClient()
        plane = FrontendDataPlane(RoutingTable(1, "batch-aware", {"a": app}, {("a", "m"): route}),
                                  frame_shape=(32, 32, 3), metrics=metrics, client=client)
        try:
            for i in range(frames):  # one at a time: the dispatcher alternates bad, good, bad...
                await plane.infer("a", np.full((32, 32, 3), i, np.uint8))
            return plane
        finally:
            await client.close()

    plane = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert plane.counters["a"].success == frames and plane.counters["a"].failed == 0
    s = plane.stats()[("a", "m")]
    # the bad worker's first INTERNAL_STRIKES turns were retried on the good one, then it was made suspect
    # and skipped (all its later turns while its first 0.5 s hold lasts; a slow host may see it tried
    # again after that, and fail, retried, again)
    assert s.internal_suspects >= 1 and s.suspect_skips >= 1
    assert INTERNAL_STRIKES <= s.internal_errors == s.retries < frames // 2
    assert metrics.registry.get_sample_value("harpagon_frontend_worker_internal_errors_total",
                                             {"worker": bad.address}) == s.internal_errors
    (stats,) = bad.stub.Stats(pb.StatsRequest(), timeout=30).modules
    assert stats.errors == s.internal_errors and stats.batches == 0
