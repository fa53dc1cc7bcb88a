"""The whole system in one command's worth of parts: controller, frontend and real (emulated) worker
processes on 127.0.0.1; a worker is killed and the controller re-plans."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import InferInput
from tritonclient.utils import InferenceServerException

from harpagon.config.schema import WorkerGroup
from harpagon.runtime.serve import LocalCluster, StartError
from tests.conftest import cam_workload

pytestmark = pytest.mark.integration

WORKLOAD = cam_workload(3)
#: GPUs unshared: one T4 per module, so that losing workers leaves the app short (with sharing, one
#: worker serves both modules: tests/integration/test_shared_gpu.py).
UNSHARED = WORKLOAD.model_copy(update={"serve": WORKLOAD.serve.model_copy(update={"sharing": False})})
#: For tests that do not look at the promise: planned by the fluid model, without the replay.
FLUID = WORKLOAD.model_copy(update={"serve": WORKLOAD.serve.model_copy(update={"arrivals": "fluid"})})
#: scripts/get_promtool.sh puts it here.
PROMTOOL = Path(__file__).resolve().parents[2] / ".tools" / "promtool"
#: The only names `promtool check metrics` may object to: Triton's counters, named as Triton names them
#: (no `_total`), so that Triton's dashboards and autoscaling rules find them.
TRITON_COUNTERS = {"nv_inference_request_success", "nv_inference_request_failure",
                   "nv_inference_request_duration_us", "nv_inference_count", "nv_inference_exec_count",
                   "nv_inference_compute_infer_duration_us", "nv_inference_queue_duration_us"}


def promtool_objections(text: str) -> list[str]:
    """What `promtool check metrics` says of an exposition, a line per problem (the metric's name first)."""
    if not PROMTOOL.exists():
        pytest.skip("promtool not found (scripts/get_promtool.sh)")
    out = subprocess.run([str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True,
                         timeout=60, check=False)
    return [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]


async def frame(client) -> np.ndarray:
    x = InferInput("FRAME", [24, 32, 3], "UINT8")
    x.set_data_from_numpy(np.zeros((24, 32, 3), np.uint8))
    return (await client.infer("cam", [x])).as_numpy("classify_0")


async def settle(cluster: LocalCluster, workers: int) -> None:
    for _ in range(200):
        if cluster.controller.planned_workers == workers and not cluster.controller.dirty:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"no plan for {workers} workers")


def kill_a_busy_worker(cluster: LocalCluster) -> None:
    busy = [wid for wid, names in cluster.controller.running.items() if names]
    pid = int(busy[0].split("-")[1])
    os.kill(pid, signal.SIGKILL)


def test_serve_replans_when_workers_die_and_refuses_what_no_longer_fits(caplog):
    caplog.set_level(logging.INFO, "harpagon.controller")

    async def scenario() -> None:
        async with LocalCluster(UNSHARED, grpc_port=0, metrics_port=0).running(timeout_s=60) as cluster:
            plan = cluster.controller.plan
            assert plan is not None and [a.name for a in plan.apps] == ["cam"]
            assert sum(plan.workers_by_hardware().values()) == 2  # one T4 per module
            client = triton_aio.InferenceServerClient(f"127.0.0.1:{cluster.port}")
            assert (await frame(client)).shape == (1, 1000)
            text = urllib.request.urlopen(f"http://127.0.0.1:{cluster.metrics_at}/metrics", timeout=10).read().decode()
            assert 'nv_inference_request_success{model="cam"} 1.0' in text
            assert "# TYPE nv_inference_request_success counter" in text  # as Triton writes it: no _total
            # its workers' metrics, each series labelled with its worker, and the standard process metrics
            assert re.search(r'nv_inference_exec_count\{model="[^"]+",worker="worker-\d+"\} 1.0', text), text
            assert re.search(r'process_cpu_seconds_total\{worker="worker-\d+"\}', text)
            assert "\nprocess_cpu_seconds_total " in text
            assert "_created" not in text
            objections = promtool_objections(text)
            assert objections and all(ln.split()[0] in TRITON_COUNTERS for ln in objections), objections
            assert 'harpagon_module_batches_total{app="cam",module="classify"} 1.0' in text
            assert "harpagon_plan_cost_per_hour 1.052" in text
            # the plan's promise, and what the planner's replay measured before the plan was pushed
            promise = plan.promise
            assert promise is not None and promise.arrivals == "poisson" and promise.kept is True
            assert promise.replayed is not None and promise.replayed.frames == 10_000
            assert 'harpagon_plan_promise_target{arrivals="poisson"} 0.99' in text
            assert 'harpagon_plan_promise_kept{arrivals="poisson"} 1.0' in text
            assert f'harpagon_plan_promise_attainment{{app="cam"}} {dict(promise.replayed.apps)["cam"]}' in text
            in_force = [r.getMessage() for r in caplog.records if " in force: " in r.getMessage()]
            assert ", promise poisson ≥99%: replayed 10000 frames or 60 s of each app (seed 0), min attainment " \
                in in_force[-1]
            assert re.search(r"constant all within; planned in \d+\.\d s$", in_force[-1]), in_force[-1]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{cluster.port}") as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

            kill_a_busy_worker(cluster)  # 2 left: still enough
            await settle(cluster, 2)
            assert [a.name for a in cluster.controller.plan.apps] == ["cam"]
            assert (await frame(client)).shape == (1, 1000)

            kill_a_busy_worker(cluster)  # 1 left: the app no longer fits and is refused, by name
            await settle(cluster, 1)
            assert [r.app for r in cluster.controller.plan.refused] == ["cam"]
            with pytest.raises(InferenceServerException) as info:
                await frame(client)
            assert "UNAVAILABLE" in str(info.value.status()) and "cannot be served" in info.value.message()
            await client.close()

    asyncio.run(scenario())


def test_controller_frontend_and_workers_as_separate_processes(tmp_path, start_service, start_worker):
    import tritonclient.grpc as triton

    config = tmp_path / "cam.yaml"
    config.write_text(yaml.safe_dump(FLUID.model_dump(exclude_none=True)))
    controller = start_service(["controller", "--config", str(config), "--port", "0"], "controller listening on ")
    for _ in range(2):
        start_worker("--device", "emulated:t4", "--controller", controller.address)
    frontend = start_service(["frontend", "--controller", controller.address, "--port", "0", "--metrics-port", "0",
                              "--frame-shape", "24,32,3"], "frontend listening on ")
    client = triton.InferenceServerClient(frontend.address)
    for _ in range(100):  # the first plan, then the routes, reach the frontend
        if client.is_model_ready("cam"):
            break
        time.sleep(0.1)
    x = triton.InferInput("FRAME", [24, 32, 3], "UINT8")
    x.set_data_from_numpy(np.zeros((24, 32, 3), np.uint8))
    result = client.infer("cam", [x], request_id="over-the-wire")
    assert result.get_response().id == "over-the-wire" and result.as_numpy("classify_0").shape == (1, 1000)
    in_force = controller.wait_for_line("apps ['cam'], promise ")  # the controller logs each plan's promise
    assert "apps ['cam'], promise fluid (the version-1 model; not replayed); planned in " in in_force


PERF_ANALYZER = Path(__file__).resolve().parents[2] / ".tools" / "perf_analyzer"


@pytest.mark.skipif(not PERF_ANALYZER.exists(), reason="perf_analyzer not fetched (scripts/get_perf_analyzer.sh)")
@pytest.mark.parametrize("mode", [[], ["--streaming", "--async"]], ids=["sync", "streaming"])
def test_perf_analyzer_measures_an_app(mode):
    async def scenario() -> str:
        async with LocalCluster(FLUID, grpc_port=0, metrics_port=0).running(timeout_s=60) as cluster:
            proc = await asyncio.create_subprocess_exec(
                str(PERF_ANALYZER), "-m", "cam", "-u", f"127.0.0.1:{cluster.port}", "-i", "grpc", "-p", "1000",
                "-r", "10", "-s", "100", "--request-rate-range", "20", *mode,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, out.decode()[-2000:]
            return out.decode()

    out = asyncio.run(scenario())
    assert "Request Rate: 20 inference requests per seconds" in out and "Successful request count" in out


def test_a_client_started_at_server_ready_finds_every_app(tmp_path, start_service):
    """Strict readiness: until every configured app is routed, ServerReady is false and a configured
    app answers UNAVAILABLE (retry); right after it turns true, tritonclient and perf_analyzer succeed,
    and the start made one plan (serve waited for its workers)."""
    import tritonclient.grpc as triton

    config = tmp_path / "cam.yaml"
    config.write_text(yaml.safe_dump(WORKLOAD.model_dump(exclude_none=True)))  # Poisson: seconds of planning
    serve = start_service(["serve", str(config), "--port", "0", "--metrics-port", "0"], "serving on ")
    client = triton.InferenceServerClient(serve.address)
    x = triton.InferInput("FRAME", [24, 32, 3], "UINT8")
    x.set_data_from_numpy(np.zeros((24, 32, 3), np.uint8))
    health_stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(serve.address))

    def health_status() -> int:
        return health_stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status

    early: set[str] = set()
    deadline = time.monotonic() + 120
    while not client.is_server_ready():
        assert time.monotonic() < deadline, "".join(serve.lines[-20:])
        # readiness only grows during start-up: a model seen ready means the server is ready from then on
        assert not client.is_model_ready("cam") or client.is_server_ready()
        status = health_status()  # the standard health service follows readiness
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING or client.is_server_ready()
        try:
            client.infer("cam", [x])
        except InferenceServerException as exc:
            early.add(str(exc.status()))
            assert "StatusCode.UNAVAILABLE" == str(exc.status()) and "not routed yet" in exc.message()
        time.sleep(0.05)
    assert early == {"StatusCode.UNAVAILABLE"}  # the test saw the start-up, not only its end
    assert health_status() == health_pb2.HealthCheckResponse.SERVING
    assert client.is_model_ready("cam") and client.get_model_metadata("cam").name == "cam"
    assert client.infer("cam", [x]).as_numpy("classify_0").shape == (1, 1000)
    with pytest.raises(InferenceServerException) as info:
        client.infer("nope", [x])
    assert str(info.value.status()) == "StatusCode.NOT_FOUND" and "configured: ['cam']" in info.value.message()
    if PERF_ANALYZER.exists():
        import subprocess

        out = subprocess.run([str(PERF_ANALYZER), "-m", "cam", "-u", serve.address, "-i", "grpc", "-p", "1000",
                              "-r", "5", "-s", "100", "--request-rate-range", "20"],
                             capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    plans = [line for line in serve.lines if " in force: $" in line]
    assert len(plans) == 1, "".join(plans)


def test_a_start_that_fails_midway_leaves_nothing_running():
    """The frontend's port is taken: `start` fails after it made certificates and the metrics server,
    and stops what it started (no thread of its own, no worker, no secret left on disk)."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    before = set(threading.enumerate())
    cluster = LocalCluster(FLUID, grpc_port=taken.getsockname()[1], metrics_port=0)
    try:
        with pytest.raises(Exception, match="127.0.0.1"):
            asyncio.run(cluster.start())
    finally:
        taken.close()
    assert cluster.processes == [] and cluster.control is None
    assert cluster._certs is not None and not Path(cluster._certs.name).exists()
    left = {t.name for t in set(threading.enumerate()) - before}
    assert {name for name in left if "_poll_wrapper" not in name} == set()  # gRPC's poller lives on


def test_a_worker_that_cannot_start_says_why_on_serves_stderr(capfd):
    """A worker asking for a device this machine lacks exits at once; its reason reaches `serve`'s
    stderr (it went to /dev/null once, and the failure showed 60 s later as hardware run out)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: the worker would start")
    w = FLUID.model_copy(update={"serve": FLUID.serve.model_copy(
        update={"workers": (WorkerGroup(device="cuda:0"),)})})

    async def scenario():
        async with LocalCluster(w, grpc_port=0, metrics_port=0).running(timeout_s=60):
            pass

    with pytest.raises(StartError, match=r"worker worker-0 exited at start: exit code 2: .*no CUDA device"):
        asyncio.run(scenario())
    assert "device 'cuda:0' asked for, but this machine has no CUDA device" in capfd.readouterr().err
