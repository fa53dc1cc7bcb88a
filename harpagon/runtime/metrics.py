"""Prometheus metrics of every component. Names follow Triton's `nv_inference_*` where the meaning
matches (per app on the frontend, per module on workers); the rest are `harpagon_*`. Latencies are
histograms, not summaries, so they aggregate across processes.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)


class FrontendMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry = registry or CollectorRegistry()
        self.success = Counter("nv_inference_request_success", "Frames answered, per app", ["model"],
                               registry=registry)
        self.failure = Counter("nv_inference_request_failure", "Frames failed, per app and reason",
                               ["model", "reason"], registry=registry)
        self.duration_us = Counter("nv_inference_request_duration_us", "Cumulative frame latency, microseconds",
                                   ["model"], registry=registry)
        self.latency = Histogram("harpagon_frame_latency_seconds", "End-to-end frame latency", ["app"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.dropped = Counter("harpagon_frames_dropped", "Frames dropped early past their deadline", ["app"],
                               registry=registry)
        self.module_requests = Counter("harpagon_module_requests", "Requests dispatched, per module",
                                       ["app", "module"], registry=registry)
        self.module_batches = Counter("harpagon_module_batches", "Batches shipped, per module", ["app", "module"],
                                      registry=registry)
        self.module_dummies = Counter("harpagon_module_dummies", "Dummy slots the workers pad batches with",
                                      ["app", "module"], registry=registry)
        self.module_latency = Histogram("harpagon_module_latency_seconds",
                                        "Per request: dispatch to result, per module", ["app", "module"],
                                        buckets=LATENCY_BUCKETS, registry=registry)
        self.refused = Counter("harpagon_frames_refused",
                               "Frames refused at once (RESOURCE_EXHAUSTED): the app's frames in flight were at "
                               "their bound", ["app"], registry=registry)
        self.retries = Counter("harpagon_frontend_retries",
                               "Batches sent again to another worker of their tuple after a worker failed or "
                               "stalled", ["app", "module"], registry=registry)
        self.suspect_skips = Counter("harpagon_frontend_suspect_skips",
                                     "Batches sent to another worker of their tuple because the dispatcher's choice "
                                     "was suspect (it failed or stalled in the last seconds)", ["app", "module"],
                                     registry=registry)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry = registry or CollectorRegistry()
        self.count = Counter("nv_inference_count", "Real items run, per module", ["model"], registry=registry)
        self.exec_count = Counter("nv_inference_exec_count", "Batches run, per module", ["model"],
                                  registry=registry)
        self.compute_us = Counter("nv_inference_compute_infer_duration_us", "Cumulative batch execution, us",
                                  ["model"], registry=registry)
        self.queue_us = Counter("nv_inference_queue_duration_us", "Cumulative wait for the device, us", ["model"],
                                registry=registry)
        self.dummies = Counter("harpagon_worker_dummies", "Dummy items run as padding, per module", ["model"],
                               registry=registry)
        self.expired = Counter("harpagon_worker_expired", "Batches not run: they reached the device past their "
                               "deadline", ["model"], registry=registry)
        self.emulated = Gauge("harpagon_worker_emulated", "1 on an emulated device (batches sleep their profile)",
                              registry=registry)
        self.gpu_utilization = Gauge("nv_gpu_utilization", "GPU utilisation (0-1); absent without a GPU",
                                     registry=registry)
        self.gpu_memory_used = Gauge("nv_gpu_memory_used_bytes", "GPU memory used; absent without a GPU",
                                     registry=registry)


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry = registry or CollectorRegistry()
        self.cost = Gauge("harpagon_plan_cost_per_hour", "Cost of the plan in force, dollars per hour",
                          registry=registry)
        self.workers = Gauge("harpagon_workers", "Registered workers, per hardware kind", ["hardware"],
                             registry=registry)
        self.replans = Counter("harpagon_replans", "Plans made", registry=registry)
        self.refused = Gauge("harpagon_apps_refused", "Apps the live inventory cannot serve", registry=registry)
        # The promise of the plan in force (MODEL.md v2) and what the planner's replay measured.
        self.promise_target = Gauge(
            "harpagon_plan_promise_target",
            "Attainment the plan in force promises (fraction of each app's frames within its SLO) under the "
            "labelled arrivals: the setting under poisson, 1.0 under constant; absent for the fluid model",
            ["arrivals"], registry=registry)
        self.promise_attainment = Gauge(
            "harpagon_plan_promise_attainment",
            "Per app: fraction of frames within the SLO in the planner's replay of the plan in force "
            "(under the promised arrivals)", ["app"], registry=registry)
        self.promise_kept = Gauge(
            "harpagon_plan_promise_kept",
            "1 if the planner's replay of the plan in force keeps its promise, 0 if not", ["arrivals"],
            registry=registry)
        # Self-calibration: the figures plans are made with against what the live system measures.
        self.exec_factor = Gauge(
            "harpagon_exec_factor",
            "Batch latency d(b) as a multiple of the profile's, per model and hardware: `planned` is what the "
            "plan in force assumes, `measured` what workers reported over the calibration window",
            ["model", "hardware", "source"], registry=registry)
        self.hop_overhead = Gauge(
            "harpagon_hop_overhead_ms",
            "Per-hop overhead, ms: `planned` is the plan's overhead_ms, `measured` the quantile of what "
            "frontends measured (round trip less worker queue and execution, plus late flush timers)",
            ["source"], registry=registry)
        self.module_scale = Gauge(
            "harpagon_controller_module_scale",
            "Requests per source frame of a module: `planned` is the scale the plan in force was made for "
            "(the configured one, or the last measured one, at least 0.01), `measured` the frontends' count "
            "since that plan", ["app", "module", "kind"], registry=registry)
        self.recalibrations = Counter("harpagon_recalibrations",
                                      "Re-plans because measured figures drifted from the planned ones",
                                      registry=registry)


def serve_metrics(registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> WSGIServer:
    """Expose a registry at http://host:port/metrics (port 0 picks a free one: `server_port` says which)
    from a daemon thread; `shutdown()` then `server_close()` stop it."""
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server
