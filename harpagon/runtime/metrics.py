"""Prometheus metrics of every component. Names follow Triton's `nv_inference_*` where the meaning
matches (per app on the frontend, per module on workers), exactly as Triton writes them: its counters
carry no `_total` (:func:`exposition` writes them so; prometheus_client alone would add it). The rest
are `harpagon_*` in base units (seconds, bytes), counters ending `_total`, as `promtool check metrics`
wants. Latencies are histograms, not summaries, so they aggregate across processes. Series of modules,
apps and workers that a re-plan removes are removed with them.

The metrics port is served by :class:`MetricsServer`: a fixed few threads whatever the number of
connections (prometheus_client's own server starts a thread per connection, so a flood of idle
connections would start thousands).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from harpagon.runtime.records import (
    BatchExpired,
    BatchRetried,
    BatchRun,
    BatchShipped,
    FrameAnswered,
    FrameDropped,
    FrameFailed,
    FrameForwarded,
    FrameRefused,
    RequestDone,
    SuspectSkipped,
    WorkerInternal,
)

#: Triton's counters, which Triton's dashboards and autoscaling rules find by these exact names.
TRITON_COUNTERS = frozenset({
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_request_duration_us",
    "nv_inference_count", "nv_inference_exec_count", "nv_inference_compute_infer_duration_us",
    "nv_inference_queue_duration_us"})

# `x_created` series double every counter's series and are read by nothing here (nor by Triton's tools).
disable_created_metrics()

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
        self.forwarded = Counter("harpagon_frames_forwarded",
                                 "Frames sent on to the frontend owning their app's stream (result=forwarded), or "
                                 "served here because it could not be reached (result=served_here)",
                                 ["app", "result"], registry=registry)
        self.retries = Counter("harpagon_frontend_retries",
                               "Batches sent again to another worker of their tuple after a worker failed, "
                               "stalled or answered INTERNAL", ["app", "module"], registry=registry)
        self.suspect_skips = Counter("harpagon_frontend_suspect_skips",
                                     "Batches sent to another worker of their tuple because the dispatcher's choice "
                                     "was suspect (it failed or stalled in the last seconds)", ["app", "module"],
                                     registry=registry)
        self.worker_internal_errors = Counter(
            "harpagon_frontend_worker_internal_errors",
            "Batches a worker answered INTERNAL (a model that raised, or a broken device), per worker address",
            ["worker"], registry=registry)
        self.worker_internal_suspects = Counter(
            "harpagon_frontend_worker_internal_suspects",
            "Times a worker was made suspect for answering INTERNAL to batches its tuple's other workers answered "
            "well, several in a row (a broken device), per worker address", ["worker"], registry=registry)
        self._on: dict[type, Callable] = {
            RequestDone: self._request_done, BatchShipped: self._shipped, BatchRetried: self._retried,
            SuspectSkipped: self._skipped, WorkerInternal: self._internal, FrameRefused: self._refused,
            FrameAnswered: self._answered, FrameDropped: self._dropped, FrameFailed: self._failed,
            FrameForwarded: self._forwarded,
        }

    def record(self, r: object) -> None:
        on = self._on.get(type(r))
        if on is not None:
            on(r)

    def _request_done(self, r: RequestDone) -> None:
        self.module_latency.labels(r.app, r.module).observe(r.latency_ms / 1000.0)

    def _shipped(self, r: BatchShipped) -> None:
        self.module_batches.labels(r.app, r.module).inc()
        self.module_requests.labels(r.app, r.module).inc(r.items)
        self.module_dummies.labels(r.app, r.module).inc(r.dummies)

    def _retried(self, r: BatchRetried) -> None:
        self.retries.labels(r.app, r.module).inc()

    def _skipped(self, r: SuspectSkipped) -> None:
        self.suspect_skips.labels(r.app, r.module).inc()

    def _internal(self, r: WorkerInternal) -> None:
        (self.worker_internal_suspects if r.suspect else self.worker_internal_errors).labels(r.worker).inc()

    def _refused(self, r: FrameRefused) -> None:
        if r.overloaded:  # an app not routed yet is UNAVAILABLE: counted by the client, not here
            self.refused.labels(r.app).inc()
            self.failure.labels(r.app, "overloaded").inc()

    def _forwarded(self, r: FrameForwarded) -> None:
        self.forwarded.labels(r.app, "served_here" if r.served_here else "forwarded").inc()

    def _answered(self, r: FrameAnswered) -> None:
        self.success.labels(r.app).inc()
        self.duration_us.labels(r.app).inc(r.seconds * 1e6)
        self.latency.labels(r.app).observe(r.seconds)

    def _dropped(self, r: FrameDropped) -> None:
        self.dropped.labels(r.app).inc()
        self.failure.labels(r.app, "deadline").inc()

    def _failed(self, r: FrameFailed) -> None:
        self.failure.labels(r.app, r.reason).inc()


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
                                     ["gpu_uuid"], registry=registry)
        self.gpu_memory_used = Gauge("nv_gpu_memory_used_bytes", "GPU memory used; absent without a GPU",
                                     ["gpu_uuid"], registry=registry)
        self._per_module = (self.count, self.exec_count, self.compute_us, self.queue_us, self.dummies, self.expired)

    def serving(self, modules: Iterable[str]) -> None:
        """The modules in force: the series of those a new configuration unloaded go (a re-plan names
        each tuple anew, `app/module@bN`, so they would stay at their last value forever)."""
        keep = set(modules)
        for metric in self._per_module:
            for (module,) in _children(metric, ("model",)):
                if module not in keep:
                    metric.remove(module)

    def record(self, r: object) -> None:
        match r:
            case BatchRun(module, items, dummies, queue_ms, exec_ms):
                self.count.labels(module).inc(items)
                self.exec_count.labels(module).inc()
                self.dummies.labels(module).inc(dummies)
                self.compute_us.labels(module).inc(exec_ms * 1000)
                self.queue_us.labels(module).inc(queue_ms * 1000)
            case BatchExpired(module):
                self.expired.labels(module).inc()


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry = registry or CollectorRegistry()
        self.cost = Gauge("harpagon_plan_cost_per_hour", "Cost of the plan in force, dollars per hour",
                          registry=registry)
        self.workers = Gauge("harpagon_workers", "Registered workers, per hardware kind", ["hardware"],
                             registry=registry)
        self.frontends = Gauge("harpagon_frontends", "Frontends reporting rates, as of the latest report (a "
                               "frontend quiet for the watches' report_expiry_s is no longer counted)",
                               registry=registry)
        self.frontend_rate = Gauge(
            "harpagon_frontend_offered_rate",
            "Frames per second each app was offered at each frontend, in its latest rate report",
            ["frontend", "app"], registry=registry)
        self.replans = Counter("harpagon_replans", "Plans made", registry=registry)
        # The fleet (serve.fleet): what the plan asks for, what is there, and what each costs.
        self.fleet_desired = Gauge(
            "harpagon_fleet_desired_workers",
            "Workers the plan needs plus spares, per hardware kind, within [minimum, the kind's count]; it falls "
            "only after the scale-down delay (what a scaler such as KEDA scales each kind's workers to)",
            ["hardware"], registry=registry)
        self.fleet_workers = Gauge("harpagon_fleet_workers", "Workers registered and not leaving, per hardware kind",
                                   ["hardware"], registry=registry)
        self.fleet_cost = Gauge(
            "harpagon_fleet_cost_per_hour",
            "Dollars per hour: `planned` is the plan in force's cost, `allocated` that of the registered workers",
            ["kind"], registry=registry)
        self.refused = Gauge("harpagon_apps_refused", "Apps the live inventory cannot serve", registry=registry)
        # The promise of the plan in force (docs/model.md v2) and what the planner's replay measured.
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
        self.decode_factor = Gauge(
            "harpagon_decode_factor",
            "Frame decode time per megapixel as a multiple of the hardware's decode_ms_per_mpixel, per hardware "
            "and encoding: `planned` is what the plan in force assumes, `measured` what workers reported",
            ["hardware", "encoding", "source"], registry=registry)
        self.hop_overhead = Gauge(
            "harpagon_hop_overhead_seconds",
            "Per-hop overhead, seconds: `planned` is the plan's overhead_ms, `measured` the quantile of what "
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
        self.evicted = Counter("harpagon_workers_evicted",
                               "Workers removed because they missed heartbeats or did not answer a push",
                               registry=registry)
        self.left = Counter("harpagon_workers_left", "Workers let go after they said they were leaving (SIGTERM)",
                            registry=registry)
        self.fleet_short = Gauge(
            "harpagon_fleet_short",
            "1 while the registered workers cannot hold the plan the quota allows (serve.fleet): the plan in "
            "force is made with the workers there are, until the scaler brings more", registry=registry)

    def keep_modules(self, modules: set[tuple[str, str]]) -> None:
        """The (app, module) pairs of the plan in force: the others' series go."""
        for app, module, kind in _children(self.module_scale, ("app", "module", "kind")):
            if (app, module) not in modules:
                self.module_scale.remove(app, module, kind)


def _children(metric, labels: tuple[str, ...]) -> set[tuple[str, ...]]:
    """The label values of a labelled metric's series, from its samples (called per re-plan, not per
    scrape)."""
    return {tuple(sample.labels[name] for name in labels) for family in metric.collect() for sample in family.samples}


log = logging.getLogger("harpagon.metrics")

#: Threads that answer scrapes. A scrape takes milliseconds; a few threads serve many scrapers.
METRICS_THREADS = 4
#: Connections whose request has arrived and wait for a thread; one more is closed at once (its scraper
#: retries at its next interval) rather than queued without bound.
METRICS_QUEUE = 64
#: Connections held open with no request yet; the oldest is closed to take a new one, so a flood of idle
#: connections can neither exhaust file descriptors nor lock a scraper out.
METRICS_IDLE_MAX = 128
#: Seconds a connection may stay idle before its request, and the socket timeout while a thread reads the
#: request and writes the answer: a slow or silent client holds a thread at most this long per read.
METRICS_IDLE_S = 10.0


class _Handler(WSGIRequestHandler):
    """One request per connection (wsgiref's handler answers HTTP/1.0), no access log."""

    def log_message(self, format: str, *args: object) -> None:
        pass


class MetricsServer(WSGIServer):
    """A WSGI server on a bounded number of threads: one thread (`serve_forever`) accepts connections and
    waits, with a selector, for each one's request; only a connection whose request has arrived goes to one
    of `threads` worker threads, through a queue of at most `backlog`. So idle connections hold no thread
    (they are closed after `idle_s`, or when `idle_max` others are newer), and a scrape is answered while
    any number of them are open. `shutdown()` then `server_close()` stop it, as for socketserver's."""

    request_queue_size = 128  # the listen backlog: connections the kernel holds until the loop accepts them

    def __init__(self, address: tuple[str, int], threads: int = METRICS_THREADS, backlog: int = METRICS_QUEUE,
                 idle_max: int = METRICS_IDLE_MAX, idle_s: float = METRICS_IDLE_S):
        infos = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        self.address_family = infos[0][0]  # an IPv6 host works too
        self.idle_max = idle_max
        self.idle_s = idle_s
        self._ready: queue.Queue[tuple[socket.socket, object] | None] = queue.Queue(backlog)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()  # until serve_forever runs
        self._workers = [threading.Thread(target=self._work, name=f"metrics-{i}", daemon=True)
                         for i in range(threads)]
        super().__init__(address, _Handler)  # a port in use raises here (after server_close, which needs the above)
        for t in self._workers:
            t.start()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        idle: dict[socket.socket, tuple[float, object]] = {}  # connection -> (deadline, client address), oldest first
        sel = selectors.DefaultSelector()
        self.socket.setblocking(False)
        sel.register(self.socket, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                oldest = next(iter(idle.values()), None)
                wait = poll_interval if oldest is None else min(poll_interval, max(0.0, oldest[0] - time.monotonic()))
                for key, _ in sel.select(wait):
                    conn = key.fileobj
                    if conn is self.socket:
                        self._accept(sel, idle)
                    elif conn in idle:  # its request is here (or it closed): a worker thread takes it
                        sel.unregister(conn)
                        _, client = idle.pop(conn)
                        try:
                            self._ready.put_nowait((conn, client))
                        except queue.Full:
                            self.shutdown_request(conn)
                now = time.monotonic()
                while idle and next(iter(idle.values()))[0] <= now:  # idle too long
                    self._drop(sel, idle, next(iter(idle)))
        finally:
            for conn in list(idle):
                self._drop(sel, idle, conn)
            sel.close()
            self._stopped.set()

    def _accept(self, sel: selectors.BaseSelector, idle: dict) -> None:
        try:
            conn, client = self.socket.accept()
        except (BlockingIOError, InterruptedError):  # another accept took it, or none after all
            return
        except OSError as exc:  # out of file descriptors, say: the next loop tries again
            log.warning("metrics: accept failed: %s", exc)
            return
        if len(idle) >= self.idle_max:  # make room: the oldest idle connection goes
            self._drop(sel, idle, next(iter(idle)))
        conn.setblocking(False)
        sel.register(conn, selectors.EVENT_READ)
        idle[conn] = (time.monotonic() + self.idle_s, client)

    def _drop(self, sel: selectors.BaseSelector, idle: dict, conn: socket.socket) -> None:
        sel.unregister(conn)
        del idle[conn]
        self.shutdown_request(conn)

    def _work(self) -> None:
        while (item := self._ready.get()) is not None:
            conn, client = item
            try:
                conn.settimeout(self.idle_s)
                self.finish_request(conn, client)
            except Exception as exc:  # noqa: BLE001 - a client that went away or timed out: its connection only
                log.debug("metrics: a request from %s failed: %s", client, exc)
            finally:
                self.shutdown_request(conn)

    def shutdown(self) -> None:
        """Stop `serve_forever` (from another thread) and wait until it has."""
        self._stop.set()
        self._stopped.wait()

    def server_close(self) -> None:
        """Close the port, the connections still waiting for a thread, and end the worker threads."""
        super().server_close()
        while True:
            try:
                item = self._ready.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.shutdown_request(item[0])
        for _ in self._workers:  # each ends at its None (room now: nothing else puts once serving stopped)
            with contextlib.suppress(queue.Full):
                self._ready.put_nowait(None)


class _Families:
    """Metric families already collected, as a collector (what generate_latest reads)."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _escape(value: str, quotes: bool = True) -> str:
    value = value.replace("\\", r"\\").replace("\n", r"\n")
    return value.replace('"', r'\"') if quotes else value


def _triton(metric: Metric) -> str:
    """A Triton counter in the text format, named as Triton names it (no `_total`)."""
    lines = [f"# HELP {metric.name} {_escape(metric.documentation, quotes=False)}", f"# TYPE {metric.name} counter"]
    for sample in metric.samples:
        if sample.name.endswith("_created"):
            continue
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
        lines.append(f"{metric.name}{{{labels}}} {floatToGoString(sample.value)}" if labels
                     else f"{metric.name} {floatToGoString(sample.value)}")
    return "\n".join(lines) + "\n"


def merge(families: Iterable[Metric]) -> list[Metric]:
    """Families of one name from several sources (this process and its workers) as one: a family's help
    and type once, then every source's samples."""
    out: dict[str, Metric] = {}
    for f in families:
        have = out.get(f.name)
        if have is None:
            out[f.name] = have = Metric(f.name, f.documentation, f.type, f.unit)
        have.samples.extend(f.samples)
    return list(out.values())


def exposition(families: Iterable[Metric]) -> bytes:
    """The Prometheus text format (0.0.4) of `families`, Triton's counters under Triton's names."""
    families = merge(families)
    triton = [f for f in families if f.type == "counter" and f.name in TRITON_COUNTERS]
    rest = [f for f in families if not (f.type == "counter" and f.name in TRITON_COUNTERS)]
    return "".join(map(_triton, triton)).encode() + generate_latest(_Families(rest))


#: Opens a child's metrics URL directly: a loopback scrape must not go to the environment's http_proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def scrape(url: str, labels: dict[str, str], timeout_s: float = 1.0) -> list[Metric]:
    """Another process's metrics (a worker of this serve), each series with `labels` added; none if it
    does not answer in time or answers something else (a worker starting or stopping is not an error of
    this scrape)."""
    try:
        with _DIRECT.open(url, timeout=timeout_s) as reply:
            families = list(text_string_to_metric_families(reply.read().decode()))
    except (OSError, ValueError) as exc:
        log.debug("metrics of %s not read: %s", url, exc)
        return []
    for f in families:
        f.samples = [s._replace(labels={**s.labels, **labels}) for s in f.samples]
    return families


def standard_collectors(registry: CollectorRegistry) -> None:
    """The process, platform and garbage-collector metrics every Prometheus client exports, once per registry."""
    if getattr(registry, "_harpagon_standard", False):
        return
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    registry._harpagon_standard = True  # type: ignore[attr-defined]


def metrics_app(registry: CollectorRegistry, more: Callable[[], Iterable[Metric]] | None = None):
    """The WSGI app of a metrics port: the registry's families and `more`'s (a serve's workers', read at
    each scrape), in the text format whatever the scraper accepts (OpenMetrics would force `_total` on
    Triton's counters)."""

    def app(environ, start_response):
        if environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics\n"]
        body = exposition([*registry.collect(), *(more() if more is not None else ())])
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4), ("Content-Length", str(len(body)))])
        return [body]

    return app


def serve_metrics(registry: CollectorRegistry, port: int, host: str = "127.0.0.1", *,
                  threads: int = METRICS_THREADS, backlog: int = METRICS_QUEUE, idle_max: int = METRICS_IDLE_MAX,
                  idle_s: float = METRICS_IDLE_S, more: Callable[[], Iterable[Metric]] | None = None) -> MetricsServer:
    """Expose a registry at http://host:port/metrics (port 0 picks a free one: `server_port` says which)
    from daemon threads, as many whatever the connections (:class:`MetricsServer`);
    `shutdown()` then `server_close()` stop it."""
    try:
        server = MetricsServer((host, port), threads, backlog, idle_max, idle_s)
    except OSError as exc:  # name the port: the bare error does not
        raise OSError(f"cannot listen on {host}:{port} (metrics): {exc.strerror or exc}") from None
    standard_collectors(registry)
    server.set_app(metrics_app(registry, more))
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
