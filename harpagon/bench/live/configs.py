"""The configs the live bench serves: a config as written with emulated workers (the demo's serve
settings where it has none), and the one-module app the capacity search plans for each rate."""

from __future__ import annotations

from harpagon.bench.report import ROOT
from harpagon.runtime.controller.controller import settings_of

DEFAULT_CONFIGS = ("configs/demo.yaml", "configs/multi.yaml")

#: The capacity app: ResNet-50 on emulated V100s, a generous SLO, tiny frames (the dispatch cost per
#: frame is what is measured, not the bytes; and perf_analyzer's per-request export stays small).
CAPACITY_SLO_MS = 200.0
CAPACITY_FRAME = (8, 8, 3)
CAPACITY_INPUT = (3, 8, 8)


def capacity_workload(rate: float):
    """A one-module app at `rate` on as many emulated V100s as the planner wants for it."""
    import yaml

    from harpagon.config.schema import ServeConfig, WorkerGroup, Workload
    from harpagon.planner.harpagon import plan as harpagon_plan

    raw = {k: (yaml.safe_load((ROOT / "models" / "profiles" / f"{k}.yaml").read_text()) or {})
           for k in ("hardware", "catalog")}
    w = Workload.model_validate({
        "hardware": [h for h in raw["hardware"]["hardware"] if h["name"] == "v100"],
        "profiles": [p for p in raw["catalog"]["profiles"] if p["hardware"] == "v100" and p["model"] == "resnet50"],
        "apps": [{"name": "one", "rate": rate, "slo_ms": CAPACITY_SLO_MS,
                  "modules": [{"name": "classify", "model": "resnet50"}]}],
    })
    serve = ServeConfig(input_shape=CAPACITY_INPUT, frame_shape=CAPACITY_FRAME, overhead_ms=5, max_utilization=0.8)
    n = harpagon_plan(w, settings_of(serve)).workers_by_hardware().get("v100", 1)
    return w.model_copy(update={"serve": serve.model_copy(update={"workers": (WorkerGroup(device="emulated:v100",
                                                                                          count=max(1, n)),)})})


def with_emulated_serve(workload, dispatch: str | None = None):
    """The workload with a `serve` section of emulated workers: its own if it has one (dispatch
    overridden), else the demo's serve settings with one emulated worker per declared GPU of each
    hardware kind (kinds without a count: as many as the plan uses)."""
    from harpagon.config import load_workload
    from harpagon.config.schema import ServeConfig, WorkerGroup

    serve = workload.serve
    if serve is None:
        demo = load_workload([ROOT / "configs" / "demo.yaml"]).serve
        counts = {h.name: h.count for h in workload.hardware}
        if any(c is None for c in counts.values()):
            from harpagon.planner.harpagon import plan as harpagon_plan
            used = harpagon_plan(workload, settings_of(demo)).workers_by_hardware()
            counts = {h: c if c is not None else used.get(h, 0) for h, c in counts.items()}
        serve = demo.model_copy(update={"workers": tuple(WorkerGroup(device=f"emulated:{h}", count=c)
                                                         for h, c in counts.items() if c),
                                        "frame_shape": CAPACITY_FRAME})
    else:
        groups = tuple(g for g in serve.workers)
        if not groups or any(not g.device.startswith("emulated:") for g in groups):
            raise ValueError("the live bench runs emulated workers only: list emulated:HARDWARE workers")
        serve = ServeConfig.model_validate(serve.model_dump())
    if dispatch:
        serve = serve.model_copy(update={"dispatch": dispatch})
    return workload.model_copy(update={"serve": serve})
