"""The metrics as a scraper reads them: Triton's counters under Triton's names, the rest promtool-style,
series that a re-plan removes gone with it, GPU series absent without a GPU, and children's metrics
merged under their own labels."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from harpagon.runtime.metrics import (
    TRITON_COUNTERS,
    ControllerMetrics,
    FrontendMetrics,
    WorkerMetrics,
    exposition,
    metrics_app,
    standard_collectors,
)
from harpagon.runtime.records import BatchRun, FrameAnswered


def text(registry: CollectorRegistry, more=()) -> str:
    return exposition([*registry.collect(), *more]).decode()


def types(exposed: str) -> dict[str, str]:
    return {ln.split()[2]: ln.split()[3] for ln in exposed.splitlines() if ln.startswith("# TYPE ")}


def test_triton_counters_keep_triton_names_and_the_rest_end_in_total():
    registry = CollectorRegistry()
    FrontendMetrics(registry).record(FrameAnswered("cam", 0.25))
    WorkerMetrics(registry).record(BatchRun("cam/classify@b4", 3, 1, 2.0, 10.0))
    exposed = text(registry)
    kinds = types(exposed)
    assert kinds["nv_inference_request_success"] == kinds["nv_inference_count"] == "counter"
    assert 'nv_inference_request_success{model="cam"} 1.0' in exposed
    assert 'nv_inference_request_duration_us{model="cam"} 250000.0' in exposed
    assert 'nv_inference_compute_infer_duration_us{model="cam/classify@b4"} 10000.0' in exposed
    assert "nv_inference_request_success_total" not in exposed and "_created" not in exposed
    assert kinds["harpagon_worker_dummies_total"] == "counter"
    assert 'harpagon_worker_dummies_total{model="cam/classify@b4"} 1.0' in exposed
    # every counter is Triton's or ends in _total; no unit but seconds and bytes
    for name, kind in kinds.items():
        if kind == "counter":
            assert name in TRITON_COUNTERS or name.endswith("_total"), name
        assert not name.endswith(("_ms", "_us")) or name in TRITON_COUNTERS, name
    # and a Prometheus parser reads it back whole
    families = {f.name: f for f in text_string_to_metric_families(exposed)}
    assert families["nv_inference_count"].samples[0].value == 3


def test_controller_metrics_are_in_base_units():
    registry = CollectorRegistry()
    m = ControllerMetrics(registry)
    m.hop_overhead.labels("planned").set(0.002)
    m.evicted.inc()
    m.fleet_short.set(1)
    kinds = types(text(registry))
    assert kinds["harpagon_hop_overhead_seconds"] == "gauge"
    assert kinds["harpagon_workers_evicted_total"] == kinds["harpagon_workers_left_total"] == "counter"
    assert not [n for n in kinds if n.endswith("_ms")]


def test_a_new_configuration_removes_the_series_of_the_modules_it_unloaded():
    registry = CollectorRegistry()
    m = WorkerMetrics(registry)
    m.record(BatchRun("cam/classify@b4", 4, 0, 1.0, 5.0))
    m.record(BatchRun("cam/detect@b2", 2, 0, 1.0, 5.0))
    m.serving(["cam/detect@b2", "cam/classify@b8"])
    exposed = text(registry)
    assert "cam/classify@b4" not in exposed
    assert 'nv_inference_count{model="cam/detect@b2"} 2.0' in exposed


def test_a_replan_removes_the_module_series_of_apps_it_no_longer_plans():
    registry = CollectorRegistry()
    m = ControllerMetrics(registry)
    for app in ("a", "b"):
        m.module_scale.labels(app, "m", "planned").set(1.0)
        m.module_scale.labels(app, "m", "measured").set(1.1)
    m.keep_modules({("a", "m")})
    exposed = text(registry)
    assert 'app="b"' not in exposed and exposed.count('app="a"') == 2


def test_gpu_series_are_absent_without_a_gpu_and_labelled_by_uuid_with_one():
    registry = CollectorRegistry()
    m = WorkerMetrics(registry)
    assert "nv_gpu_utilization{" not in text(registry)
    m.gpu_utilization.labels("GPU-1234").set(0.5)
    assert 'nv_gpu_utilization{gpu_uuid="GPU-1234"} 0.5' in text(registry)


def test_children_families_merge_with_ours_under_their_labels():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    Counter("harpagon_thing", "a thing", registry=ours).inc()
    WorkerMetrics(theirs).record(BatchRun("cam/m@b1", 1, 0, 1.0, 1.0))
    Counter("harpagon_thing", "a thing", registry=theirs).inc(2)
    scraped = []
    for f in text_string_to_metric_families(text(theirs)):
        f.samples = [s._replace(labels={**s.labels, "worker": "w0"}) for s in f.samples]
        scraped.append(f)
    exposed = text(ours, scraped)
    assert exposed.count("# TYPE harpagon_thing_total counter") == 1
    assert "harpagon_thing_total 1.0" in exposed and 'harpagon_thing_total{worker="w0"} 2.0' in exposed
    assert 'nv_inference_count{model="cam/m@b1",worker="w0"} 1.0' in exposed


def test_the_metrics_app_answers_the_text_format_with_process_metrics():
    registry = CollectorRegistry()
    standard_collectors(registry)
    standard_collectors(registry)  # once per registry, however often asked
    FrontendMetrics(registry)
    got = {}
    body = b"".join(metrics_app(registry)({"PATH_INFO": "/metrics"}, lambda status, headers: got.update(
        status=status, headers=dict(headers))))
    assert got["status"] == "200 OK" and got["headers"]["Content-Type"].startswith("text/plain; version=0.0.4")
    assert int(got["headers"]["Content-Length"]) == len(body)
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert "process_cpu_seconds" in families and "python_info" in families  # Linux: the process collector
    assert not math.isnan(families["python_info"].samples[0].value)
    list(metrics_app(registry)({"PATH_INFO": "/nope"}, lambda status, headers: got.update(status=status)))
    assert got["status"] == "404 Not Found"


def test_a_cuda_devices_gpu_is_found_by_its_uuid_and_by_index_only_when_torch_cannot_say(monkeypatch):
    """CUDA_VISIBLE_DEVICES=2,3 makes NVML's GPU 2 CUDA's 0: the index alone would report another GPU."""
    import types

    torch = pytest.importorskip("torch")
    from harpagon.runtime.worker import server

    calls: list[tuple[str, object]] = []
    nvml = types.SimpleNamespace(
        nvmlDeviceGetHandleByUUID=lambda u: calls.append(("uuid", u)) or "by-uuid",
        nvmlDeviceGetHandleByIndex=lambda i: calls.append(("index", i)) or "by-index")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid=f"5f3c-{i}"))
    assert server._nvml_handle(nvml, 0) == "by-uuid" and calls == [("uuid", "GPU-5f3c-0")]

    def no_device(i):
        raise RuntimeError("no CUDA device")

    monkeypatch.setattr(torch.cuda, "get_device_properties", no_device)
    calls.clear()
    assert server._nvml_handle(nvml, 1) == "by-index" and calls == [("index", 1)]
