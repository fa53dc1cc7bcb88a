"""The configs the live bench serves: a config as written with emulated workers (the demo's serve
settings where it has none), and the one-module app the capacity search plans for each rate (of tiny
frames, or of one of the frame kinds the bench compares)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harpagon.data import configs_dir, models_dir
from harpagon.runtime.controller.controller import settings_of

DEFAULT_CONFIGS = (str(configs_dir() / "demo.yaml"), str(configs_dir() / "multi.yaml"))

#: The capacity app: ResNet-50 on emulated V100s, a generous SLO, tiny frames (the dispatch cost per
#: frame is what is measured, not the bytes; and perf_analyzer's per-request export stays small).
CAPACITY_SLO_MS = 200.0
CAPACITY_FRAME = (8, 8, 3)
CAPACITY_INPUT = (3, 8, 8)

FRAME_ENCODINGS = ("raw", "jpeg")


@dataclass(frozen=True)
class FrameKind:
    """Frames of one size and encoding as clients send them: raw UINT8 [H, W, 3] pixels, or a JPEG."""

    height: int
    width: int
    encoding: str = "raw"

    def __post_init__(self) -> None:
        from harpagon.config.schema import MAX_SIDE

        if not (1 <= self.height <= MAX_SIDE and 1 <= self.width <= MAX_SIDE):
            raise ValueError(f"frame sides must be 1 to {MAX_SIDE}, got {self.width}x{self.height}")
        if self.encoding not in FRAME_ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(FRAME_ENCODINGS)}, got {self.encoding!r}")

    @property
    def name(self) -> str:
        """As people say it, width first: "1280x720 JPEG", "8x8 raw"."""
        return f"{self.width}x{self.height} {'JPEG' if self.encoding == 'jpeg' else self.encoding}"

    @property
    def spec(self) -> str:
        """As `parse_frame_kinds` reads it: "1280x720:jpeg", "8x8" (raw)."""
        return f"{self.width}x{self.height}" + (":jpeg" if self.encoding == "jpeg" else "")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)


#: The baseline the other frame kinds are compared with (the capacity search's own frames).
BASE_FRAME_KIND = FrameKind(CAPACITY_FRAME[0], CAPACITY_FRAME[1], "raw")

_KIND = re.compile(r"(\d+)x(\d+)(?::(\w+))?")


def parse_frame_kinds(text: str) -> tuple[FrameKind, ...]:
    """`WxH[:jpeg|:raw]`, comma-separated (raw where no encoding is named), e.g.
    `8x8,640x480:jpeg,1280x720:jpeg`; `none` (or nothing): no kinds. Repeats are kept once. A bad item
    raises ValueError naming it."""
    text = text.strip()
    if text.lower() in ("", "none"):
        return ()
    kinds: list[FrameKind] = []
    for item in text.split(","):
        m = _KIND.fullmatch(item.strip().lower())
        if not m:
            raise ValueError(f"frame kind {item.strip()!r}: expected WIDTHxHEIGHT with an optional :jpeg or :raw "
                             "(e.g. 1280x720:jpeg)")
        try:
            kind = FrameKind(int(m[2]), int(m[1]), m[3] or "raw")
        except ValueError as exc:
            raise ValueError(f"frame kind {item.strip()!r}: {exc}") from None
        if kind not in kinds:
            kinds.append(kind)
    return tuple(kinds)


#: The frame kinds of a full run: the tiny baseline, VGA and 720p, raw and JPEG.
DEFAULT_FRAME_KINDS = parse_frame_kinds("8x8,640x480,640x480:jpeg,1280x720,1280x720:jpeg")


def capacity_workload(rate: float, kind: FrameKind | None = None, frontends: int = 1):
    """A one-module app at `rate` on as many emulated V100s as the planner wants for it; with `kind`,
    clients send that kind's frames and the app declares them (`frame`), so that the plan and the
    emulated workers charge each request its frame's decode (the workers sleep it, never decode). With
    `frontends` > 1, as many as the plan of its streams over that many frontends wants
    (planner/streams.py)."""
    import yaml

    from harpagon.config.schema import ServeConfig, WorkerGroup, Workload
    from harpagon.planner.harpagon import plan as harpagon_plan

    raw = {k: (yaml.safe_load((models_dir() / "profiles" / f"{k}.yaml").read_text()) or {})
           for k in ("hardware", "catalog")}
    app = {"name": "one", "rate": rate, "slo_ms": CAPACITY_SLO_MS, "modules": [{"name": "classify", "model": "resnet50"}]}
    if kind is not None:
        app["frame"] = {"height": kind.height, "width": kind.width, "encoding": kind.encoding}
    w = Workload.model_validate({
        "hardware": [h for h in raw["hardware"]["hardware"] if h["name"] == "v100"],
        "profiles": [p for p in raw["catalog"]["profiles"] if p["hardware"] == "v100" and p["model"] == "resnet50"],
        "apps": [app],
    })
    serve = ServeConfig(input_shape=CAPACITY_INPUT, frame_shape=CAPACITY_FRAME if kind is None else kind.shape,
                        overhead_ms=5, max_utilization=0.8)
    n = harpagon_plan(planned_for(w, serve, frontends), settings_of(serve)).workers_by_hardware().get("v100", 1)
    return w.model_copy(update={"serve": serve.model_copy(update={"workers": (WorkerGroup(device="emulated:v100",
                                                                                          count=max(1, n)),)})})


def planned_for(workload, serve, frontends: int):
    """What the controller plans `workload` as with `frontends` frontends (their ids as `serve` names them)."""
    from harpagon.planner.streams import frontend_ids, split_streams

    return split_streams(workload, frontend_ids(frontends), serve.split_rate, serve.overhead_ms).workload


def with_emulated_serve(workload, dispatch: str | None = None):
    """The workload with a `serve` section of emulated workers: its own if it has one (dispatch
    overridden), else the demo's serve settings with one emulated worker per declared GPU of each
    hardware kind (kinds without a count: as many as the plan uses)."""
    from harpagon.config import load_workload
    from harpagon.config.schema import ServeConfig, WorkerGroup

    serve = workload.serve
    if serve is None:
        demo = load_workload([configs_dir() / "demo.yaml"]).serve
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
