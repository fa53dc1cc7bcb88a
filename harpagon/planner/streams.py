"""Streams: which frontend collects the batches of which app, when several frontends serve (pure).

Batch-aware dispatch needs one place that fills each tuple's batches (docs/model.md, "Several
frontends"). With N frontends each app is served as one or more *streams*, each a batch collection
of its own that one frontend owns, and the plan is made for the streams, not the apps:

- an app whose rate per frontend is at least `split_rate` is split into N streams, ``app#0`` ..
  ``app#N-1``, one per frontend at rate/N: clients are spread over the frontends, and each keeps the
  frames it gets. At such rates batches fill fast anyway, so splitting them costs little;
- any other app is one stream, under its own name, owned by one frontend (the least loaded, largest
  apps first); a frontend that gets a frame of it forwards the frame once to the owner, so the
  app's batches still fill at its full rate. The forward is one more hop, so the stream is planned
  with its SLO less `forward_ms`.

One frontend (or none known yet) owns everything and the workload is planned as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harpagon.config.schema import SPLIT_RATE, Workload

__all__ = ["SPLIT_RATE", "STREAM_MARK", "Stream", "Streams", "app_of", "frontend_ids", "split_streams"]

#: The SLO of an owned app that the forward alone uses up (ms): too small to plan, so it is refused.
MIN_SLO_MS = 1e-3

#: Joins a split app's name and its stream's index (``traffic#1``); app names may not hold it.
STREAM_MARK = "#"


def frontend_ids(n: int) -> list[str]:
    """The ids `harpagon serve --frontends n` gives its frontends (and plans made for n frontends use)."""
    return [f"frontend-{i}" for i in range(n)]


def app_of(stream: str) -> str:
    """The app a stream's name belongs to."""
    return stream.split(STREAM_MARK, 1)[0]


@dataclass(frozen=True, slots=True)
class Stream:
    """One batch collection of an app: its name in the plan and the frontend that owns it."""

    name: str  # the app's name in the plan: the app's own, or `app#i` for a split one
    app: str  # the app clients name
    frontend: str  # the owner's id
    rate: float  # frames per second planned for it


@dataclass(frozen=True)
class Streams:
    """The apps as streams, the workload to plan them with, and each frontend's share."""

    source: Workload
    """The apps as configured (or measured): what clients send."""
    workload: Workload
    """The streams as apps: what the planner plans."""
    streams: tuple[Stream, ...]
    frontends: tuple[str, ...]

    def of(self, app: str) -> tuple[Stream, ...]:
        return tuple(s for s in self.streams if s.app == app)

    def load(self, frontend: str) -> float:
        """Frames per second the frontend collects batches for."""
        return sum(s.rate for s in self.streams if s.frontend == frontend)

    @property
    def split(self) -> bool:
        """Several frontends share the apps (otherwise the workload is the configured one)."""
        return len(self.frontends) > 1


def split_streams(workload: Workload, frontends: Sequence[str], split_rate: float = SPLIT_RATE,
                  forward_ms: float = 0.0) -> Streams:
    """The streams of `workload`'s apps over `frontends` (ids; their order does not matter)."""
    if not split_rate > 0:
        raise ValueError(f"split_rate must be > 0, got {split_rate!r}")
    if not forward_ms >= 0:
        raise ValueError(f"forward_ms must be >= 0, got {forward_ms!r}")
    ids = tuple(sorted(set(frontends)))
    if len(ids) != len(frontends):
        raise ValueError(f"frontend ids repeat: {list(frontends)}")
    if any(STREAM_MARK in a.name for a in workload.apps):
        raise ValueError(f"app names may not hold {STREAM_MARK!r}: "
                         f"{[a.name for a in workload.apps if STREAM_MARK in a.name]}")
    if len(ids) <= 1:
        owner = ids[0] if ids else ""
        return Streams(workload, workload, tuple(Stream(a.name, a.name, owner, a.rate) for a in workload.apps), ids)
    n = len(ids)
    load = dict.fromkeys(ids, 0.0)
    streams: list[Stream] = []
    apps = []
    for a in workload.apps:
        if a.rate / n >= split_rate:
            for i, f in enumerate(ids):
                streams.append(Stream(f"{a.name}{STREAM_MARK}{i}", a.name, f, a.rate / n))
                load[f] += a.rate / n
                apps.append(a.model_copy(update={"name": streams[-1].name, "rate": a.rate / n}))
    # owned apps, largest first, each to the least loaded frontend (ties: the first id)
    for a in sorted((a for a in workload.apps if a.rate / n < split_rate), key=lambda a: (-a.rate, a.name)):
        owner = min(ids, key=lambda f: (load[f], f))
        load[owner] += a.rate
        streams.append(Stream(a.name, a.name, owner, a.rate))
        # an SLO the forward alone uses up: the planner refuses the app, with its reason
        slo = max(a.slo_ms - forward_ms, MIN_SLO_MS)
        apps.append(a.model_copy(update={"slo_ms": slo}) if forward_ms else a)
    order = {a.name: i for i, a in enumerate(workload.apps)}  # the configured order, as one frontend plans it
    apps.sort(key=lambda a: (order[app_of(a.name)], a.name))
    streams.sort(key=lambda s: (order[s.app], s.name))
    return Streams(workload, workload.model_copy(update={"apps": tuple(apps)}), tuple(streams), ids)
