"""Typed inputs of the planner: hardware, profiles and applications (docs/model.md, "Inputs").

Field-level rules live here (pydantic, strict: a quoted number or a boolean is an error, not a
coercion). Rules that span several items (references, duplicates, graph shape) live in
:mod:`harpagon.config.loader`, which knows the file and line of every item.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]

# Upper bounds far above any deployment, so that a typo or a hostile file (`count: 1000000000`) is
# refused at load rather than sizing the planner's or the runtime's work.
MAX_WORKERS = 10_000
"""The most workers of one hardware kind."""
MAX_LOCAL_WORKERS = 1024
"""The most worker processes one `serve.workers` entry starts on this host."""
MAX_BATCH = 1024
"""The largest batch size, the most a worker runs (harpagon/runtime/worker/data_plane.py)."""
MAX_RATE = 1_000_000.0
"""The highest source frame rate, frames per second."""
#: Default least rate per frontend (frames/s) at which an app is split into per-frontend streams.
SPLIT_RATE = 500.0
MAX_SCALE = 1000.0
"""The most requests a module receives per source frame."""
MAX_MS = 3_600_000.0
"""The longest latency (objective, profiled batch or overhead): one hour, in milliseconds."""
MAX_SIDE = 8192
"""The largest dimension of a frame or a module input (the worker's limit: 3 x 8192 x 8192 per item)."""

Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]
Encoding = Literal["jpeg", "png", "raw"]
"""How clients send frames: JPEG or PNG bytes, or raw RGB pixels (harpagon/runtime/wire/frames.py)."""
MAX_DECODE_MS_PER_MPIXEL = 1000.0
"""The slowest decode accepted, ms per megapixel (a slow CPU decodes a JPEG megapixel in about 10)."""


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy without the cached derived values (`profile_rows`, `children`...): pydantic copies
        the instance dict, so a copy with other fields would otherwise answer with the old ones."""
        copy = super().model_copy(update=update, deep=deep)
        for name in [k for k in copy.__dict__ if isinstance(getattr(type(copy), k, None), cached_property)]:
            del copy.__dict__[name]
        return copy


class Hardware(_Strict):
    """A kind of worker: one GPU (or one CPU worker process)."""

    name: str = Field(min_length=1, description="Unique hardware name, referenced by profiles.")
    price_per_hour: PositiveFloat = Field(description="Dollars per hour for one worker of this kind.")
    count: int | None = Field(
        default=None, ge=0, le=MAX_WORKERS,
        description=f"How many workers of this kind exist (at most {MAX_WORKERS}); no limit when absent."
    )
    memory_gb: PositiveFloat | None = Field(
        default=None, description=(
            "Device memory of one worker, GiB, as the spec sheet states it (a T4's 16); absent: unknown, and "
            "no plan is checked for fitting in it (harpagon/model/memory.py keeps a reserve below this).")
    )
    decode_ms_per_mpixel: dict[Encoding, Annotated[float, Field(ge=0, le=MAX_DECODE_MS_PER_MPIXEL,
                                                                allow_inf_nan=False)]] = Field(
        default_factory=dict, strict=False, description=(
            "Per encoding, the time (ms) one worker of this kind adds to a batch for each megapixel of a frame "
            "it decodes and resizes (`harpagon profile --decode`); needed for each encoding an app's `frame` "
            "declares (docs/model.md, \"Inputs: frame decode\")."))


class ProfileRow(_Strict):
    """One measured batch size: `d(b) = (mean_ms + std_ms) * safety`, and what the model holds in memory."""

    batch: int = Field(gt=0, le=MAX_BATCH, description=f"Batch size b (a positive integer, at most {MAX_BATCH}).")
    mean_ms: PositiveFloat = Field(le=MAX_MS, description="Mean latency of one batch, milliseconds (at most an hour).")
    std_ms: float = Field(default=0.0, ge=0, le=MAX_MS, allow_inf_nan=False,
                          description="Standard deviation, ms (at most an hour).")
    memory_mb: PositiveFloat | None = Field(default=None, description=(
        "Device memory the model holds at this batch size, MiB: its weights, activations and workspace, as "
        "the peak of the process while the model runs batches of b (`harpagon profile`: on a GPU the allocator's "
        "peak, torch.cuda.max_memory_allocated; on a CPU the growth of the process's peak resident set). "
        "Excludes the CUDA context, which harpagon/model/memory.py reserves once per GPU. Absent: unknown."))


_ROW_FIELDS = ("batch", "mean_ms", "std_ms", "memory_mb")


class Profile(_Strict):
    """Latency of one model on one hardware kind, for the batch sizes that were measured."""

    model: str = Field(min_length=1, description="Model name, referenced by application modules.")
    hardware: str = Field(min_length=1, description="Hardware name; must be declared under `hardware`.")
    batches: tuple[ProfileRow, ...] = Field(
        strict=False, description="Rows `[b, mean_ms(, std_ms(, memory_mb))]`, or mappings of those fields.")

    @field_validator("batches", mode="before")
    @classmethod
    def _rows_from_lists(cls, rows: object) -> object:
        """Accept the compact list rows of the interchange format (`[b, mean_ms]` up to
        `[b, mean_ms, std_ms, memory_mb]`): profiles are tables, and a table row is shortest as a list."""
        if not isinstance(rows, list):
            return rows
        if not rows:
            raise ValueError("needs at least one row")
        out: list[object] = []
        for row in rows:
            if isinstance(row, list):
                if not 2 <= len(row) <= 4:
                    raise ValueError("a row is [batch, mean_ms], [batch, mean_ms, std_ms] or "
                                     f"[batch, mean_ms, std_ms, memory_mb], got {row!r}")
                out.append(dict(zip(_ROW_FIELDS, row, strict=False)))
            else:
                out.append(row)
        return out


class CropFilter(_Strict):
    """Which of a detector's detections become requests of a `crops` child, per frame."""

    labels: tuple[int | str, ...] = Field(default=(), strict=False, description=(
        "Labels kept, as ids or names of the detector's label set (models/registry.yaml); empty: every label."))
    min_score: float = Field(default=0.5, ge=0.0, le=1.0, description="Least detection score kept.")
    max: int | None = Field(default=None, ge=1, le=100, description=(
        "At most this many crops per frame, the highest scores first; default: every kept detection (up to 100)."))


class Module(_Strict):
    """One DNN stage of an application."""

    name: str = Field(min_length=1, description="Unique within the application.")
    model: str = Field(min_length=1, description="Model this module runs; must have a profile.")
    after: tuple[str, ...] = Field(default=(), strict=False, description="Parent modules; the source has none.")
    scale: PositiveFloat = Field(default=1.0, le=MAX_SCALE,
                                 description=f"Requests reaching this module per source frame (at most {MAX_SCALE:g}).")
    input: Literal["frame", "crops", "features"] = Field(default="frame", description=(
        "What each request carries: `frame`, the frame resized to the module's input (`scale` copies per frame); "
        "`crops`, one crop per kept detection of its one parent, a detector (see `crops`); `features`, its "
        "parents' outputs, joined per object (one request per parent request, or per detection below a "
        "`crops` edge)."))
    crops: CropFilter | None = Field(default=None, description="`input: crops` only: which detections are kept.")
    task: Literal["classify", "detect"] | None = Field(default=None, description=(
        "What the module outputs; default: its model's task in models/registry.yaml. Needed on profile-only "
        "models (emulated workers) that detect."))
    weights: str | None = Field(default=None, description="Optional weights file (a torch state dict) for the "
                                "runtime, relative to the workers' weights folder (`serve.weights_dir`, or a "
                                "worker's --weights-dir); default: random initialisation.")


class FrameFormat(_Strict):
    """The frames an app's clients send: what a worker decodes for each request of a module that takes
    the frame, and so part of that module's `d(b)` (docs/model.md, "Inputs: frame decode")."""

    height: Side = Field(description=f"Frame height, pixels (1 to {MAX_SIDE}).")
    width: Side = Field(description=f"Frame width, pixels (1 to {MAX_SIDE}).")
    encoding: Encoding = Field(default="jpeg", description="jpeg, png or raw (UINT8 [H, W, 3] pixels).")

    @property
    def megapixels(self) -> float:
        return self.height * self.width / 1e6


class App(_Strict):
    """A DAG of modules with one source, a frame rate and an end-to-end latency objective."""

    name: str = Field(min_length=1, pattern=r"^[^#]+$",
                      description="Unique application name (no '#': it names the streams of a split app).")
    rate: PositiveFloat = Field(le=MAX_RATE, description=f"Source frame rate, frames per second (at most {MAX_RATE:g}).")
    slo_ms: PositiveFloat = Field(le=MAX_MS, description="End-to-end latency objective, milliseconds (at most an hour).")
    modules: tuple[Module, ...] = Field(strict=False, description="The modules; edges via `after`.")
    frame: FrameFormat | None = Field(default=None, description=(
        "The frames clients send (size and encoding): each request of a module that takes the frame adds its "
        "decode and resize to the module's `d(b)`, at its hardware's `decode_ms_per_mpixel`. Absent: decode is "
        "not planned (frames assumed small)."))

    @field_validator("modules", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        # Checked before the items, so a bad module is not also reported as an empty list.
        if isinstance(value, list) and not value:
            raise ValueError("needs at least one module")
        return value

    def module(self, name: str) -> Module:
        return next(m for m in self.modules if m.name == name)

    def module_rate(self, module: Module) -> float:
        return self.rate * module.scale

    @cached_property
    def children(self) -> dict[str, tuple[str, ...]]:
        kids: dict[str, list[str]] = {m.name: [] for m in self.modules}
        for m in self.modules:
            for parent in m.after:
                kids[parent].append(m.name)
        return {k: tuple(v) for k, v in kids.items()}

    @cached_property
    def topological(self) -> tuple[str, ...]:
        """Module names, every parent before its children (the order a frame's work can run in)."""
        order: list[str] = []

        def visit(name: str) -> None:
            if name in order:
                return
            for p in self.module(name).after:
                visit(p)
            order.append(name)

        for m in self.modules:
            visit(m.name)
        return tuple(order)

    @cached_property
    def source(self) -> str:
        return next(m.name for m in self.modules if not m.after)

    @cached_property
    def paths(self) -> tuple[tuple[str, ...], ...]:
        """Every source-to-sink path (module names), the constraints of latency splitting."""
        out: list[tuple[str, ...]] = []
        stack: list[tuple[str, ...]] = [(self.source,)]
        while stack:
            path = stack.pop()
            kids = self.children[path[-1]]
            if not kids:
                out.append(path)
            stack.extend(path + (k,) for k in reversed(kids))
        return tuple(out)

    @cached_property
    def objects(self) -> dict[str, str | None]:
        """Per module, the detector whose objects its requests follow (None: frame-level requests):
        a `crops` module's parent, and a `features` module's parents' (config/pipeline.py)."""
        out: dict[str, str | None] = {}

        def visit(name: str) -> str | None:
            if name not in out:
                m = self.module(name)
                if m.input == "crops":
                    out[name] = m.after[0]
                elif m.input == "features":
                    grains = {visit(p) for p in m.after} - {None}
                    out[name] = min(grains) if grains else None  # the loader refuses more than one
                else:
                    out[name] = None
            return out[name]

        for m in self.modules:
            visit(m.name)
        return out

    @cached_property
    def is_tree(self) -> bool:
        return all(len(m.after) <= 1 for m in self.modules)


class WorkerGroup(_Strict):
    """Local workers `harpagon serve` starts."""

    device: str = Field(pattern=r"^(cpu|cuda(:\d+)?|emulated:.+)$",
                        description="cpu, cuda:N, or emulated:HARDWARE (batches sleep their profiled latency).")
    count: int = Field(default=1, ge=1, le=MAX_LOCAL_WORKERS,
                       description=f"How many workers of this device to start (at most {MAX_LOCAL_WORKERS}).")
    hardware: str | None = Field(default=None, description="Hardware name to plan them as (default: the device's).")
    threads: int | None = Field(default=None, ge=1, le=1024, description="Torch threads per CPU worker (at most 1024).")
    slowdown: float = Field(default=1.0, gt=0, le=1000, allow_inf_nan=False,
                            description="Emulated devices only: batches run this many times slower than profiled "
                                        "(a slow GPU or noisy neighbour, to exercise self-calibration); at most 1000.")

    @field_validator("slowdown")
    @classmethod
    def _slowdown_is_emulated(cls, value: float, info: Any) -> float:
        device = info.data.get("device", "")
        if value != 1.0 and not str(device).startswith("emulated:"):
            raise ValueError(f"slowdown is for emulated devices only, got {value:g} on {device!r}")
        return value


PerKind = int | dict[str, int]
"""A count for every hardware kind, or per kind by name (kinds not named: 0)."""


class FleetConfig(_Strict):
    """How many workers the live system asks for (docs/model.md, "The fleet"): the plan's own, plus
    spares, within [minimum, the kind's `count`]. The hardware counts are then a quota the planner
    plans within, not the fleet: `harpagon serve` starts and stops its workers to match, and a
    cluster scales on `harpagon_fleet_desired_workers`."""

    spare: PerKind = Field(default=0, description=(
        "Workers kept beyond the plan's, per hardware kind (an integer for every kind, or {kind: n}): rising "
        "rates are served at once while new workers start."))
    minimum: PerKind = Field(default=0, description=(
        "The fewest workers of a kind, whatever the plan needs (an integer for every kind, or {kind: n})."))
    scale_down_delay_s: float = Field(default=60.0, ge=0.0, le=86_400.0, allow_inf_nan=False, description=(
        "A kind's desired count falls only once it has stayed lower this long (seconds, at most a day): a "
        "lull between two peaks does not stop workers that the next peak needs again."))

    @field_validator("spare", "minimum")
    @classmethod
    def _counts(cls, value: PerKind, info: Any) -> PerKind:
        counts = value.values() if isinstance(value, dict) else (value,)
        for n in counts:
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_WORKERS:
                raise ValueError(f"{info.field_name}: {n!r} is not a worker count in [0, {MAX_WORKERS}]")
        return value

    def of(self, field: Literal["spare", "minimum"], kind: str) -> int:
        """`spare` or `minimum` for one hardware kind."""
        value = getattr(self, field)
        return value.get(kind, 0) if isinstance(value, dict) else value


class ServeConfig(_Strict):
    """How `harpagon serve` and `harpagon demo` run a config (ignored by `harpagon plan`)."""

    workers: tuple[WorkerGroup, ...] = Field(default=(), strict=False,
                                             description="Local workers to start; default one per visible GPU.")
    input_shape: tuple[Side, Side, Side] | None = Field(default=None, strict=False, description=(
        f"[C, H, W] every frame and crop module's input is resized to (each from 1 to {MAX_SIDE}), whatever its "
        "model; absent: each model's own input from models/registry.yaml (3x224x224 for a model it does not "
        "list), so that a 320x320 detector feeds 224x224 classifiers."))
    frame_shape: tuple[Side, Side, Side] = Field(default=(480, 640, 3), strict=False, description=(
        f"[H, W, 3] frames clients send (and the demo makes); each from 1 to {MAX_SIDE}."))
    grpc_port: int = Field(default=8001, ge=0, le=65535, description="Triton-protocol gRPC port.")
    metrics_port: int = Field(default=8002, ge=0, le=65535, description="Prometheus metrics port.")
    safety: float = Field(default=1.0, ge=1.0, le=100.0, allow_inf_nan=False,
                          description="Planner setting: multiplier on mean + std (at most 100).")
    overhead_ms: float = Field(default=0.0, ge=0.0, le=MAX_MS, allow_inf_nan=False,
                               description="Planner setting: overhead per module hop, ms (at most an hour).")
    max_utilization: float = Field(default=1.0, gt=0.0, le=1.0, description="Planner setting: worker load cap.")
    arrivals: Literal["fluid", "constant", "poisson"] = Field(
        default="poisson", description="Planner setting: the promise plans are made for (docs/model.md).")
    attainment: float = Field(default=0.99, gt=0.0, lt=1.0,
                              description="Planner setting: under poisson, the least share of frames within the SLO.")
    fanout: Literal["deterministic", "poisson"] = Field(
        default="deterministic", description="Planner setting: requests per frame of the modules below the source "
        "in the replay (the planned counts, or Poisson(scale) draws); emulated detectors draw their objects per "
        "frame the same way.")
    weights_dir: str | None = Field(default=None, description="Folder local workers read modules' `weights` "
                                    "from (relative to the file holding this section; default: that file's "
                                    "folder); nothing outside it is read.")
    sharing: bool = Field(default=True, description="Planner setting: light tuples of any modules and apps may "
                          "share a GPU (one worker hosting their modules); off: every tuple has workers of its own.")
    dispatch: Literal["batch-aware", "request-level"] = Field(
        default="batch-aware", description="batch-aware (Harpagon), or request-level round-robin for comparison "
                                           "(planned with the request-level latency formula).")
    frontends: int = Field(default=1, ge=1, le=64, description=(
        "Frontend processes `harpagon serve` starts, on consecutive ports from grpc_port; the plan shares the "
        "apps among the frontends that watch the controller (docs/model.md, \"Several frontends\")."))
    split_rate: float = Field(default=SPLIT_RATE, gt=0.0, le=MAX_RATE, allow_inf_nan=False, description=(
        "Planner setting, with several frontends: an app of at least this many frames/s per frontend is split "
        "into one stream per frontend; the others are each owned by one frontend, which the others forward to."))
    fleet: FleetConfig | None = Field(default=None, description=(
        "Size the workers to the plan (spares, minimum, scale-down delay); absent: every configured worker runs "
        "all the time."))


class Workload(_Strict):
    """Everything the planner reads: the merged `hardware`, `profiles` and `apps` sections (and the
    optional `serve` section of the live system)."""

    hardware: tuple[Hardware, ...] = Field(default=(), strict=False)
    profiles: tuple[Profile, ...] = Field(default=(), strict=False)
    apps: tuple[App, ...] = Field(default=(), strict=False)
    serve: ServeConfig | None = None

    @cached_property
    def hardware_by_name(self) -> dict[str, Hardware]:
        return {h.name: h for h in self.hardware}

    @cached_property
    def profile_rows(self) -> dict[tuple[str, str], dict[int, ProfileRow]]:
        """`(model, hardware) -> {batch: row}`."""
        return {(p.model, p.hardware): {r.batch: r for r in p.batches} for p in self.profiles}

    def decode_ms(self, app: App, module: Module, hardware: str) -> float:
        """What one request of `module` adds to its batch on `hardware` to decode and resize its app's frame
        (ms): 0 unless the module takes the frame and the app declares `frame` (docs/model.md, "Inputs: frame decode")."""
        if app.frame is None or module.input != "frame":
            return 0.0
        per_mp = self.hardware_by_name[hardware].decode_ms_per_mpixel.get(app.frame.encoding)
        if per_mp is None:  # the loader refuses such a workload; a hand-built one fails here, by name
            raise KeyError(f"hardware {hardware!r} has no decode_ms_per_mpixel for {app.frame.encoding!r}, which "
                           f"app {app.name!r} frames need")
        return per_mp * app.frame.megapixels

    def hardware_for(self, model: str) -> list[str]:
        """Hardware kinds with a profile of `model`, in declaration order."""
        return [h.name for h in self.hardware if (model, h.name) in self.profile_rows]
