"""What the frames of the fault suite got: the load client's per-frame records, read as they come,
and the counts and disruption of a scenario's window."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harpagon.bench.faults.processes import log

#: An OK answer later than the SLO plus this (ms) is a late success: the client -> frontend -> client
#: hop, which the frontend cannot see (it answers with 5 ms to spare, ANSWER_MARGIN_S, plus its loop's
#: lag), on a machine whose 2 cores every process of the cluster shares. At 5 ms, about one run in
#: eight saw one answer 1-7 ms over under the 10x flood; at 10 ms, one run in about five saw one 2 ms
#: over, from the flooding client, whose own loop ran up to 14 ms late: how late the client's loop ran
#: while a frame was out is now taken out of its latency (Frame.on_time).
CLIENT_HOP_MS = 10.0
#: The client's timeout is the SLO plus this (s): a frame with no answer by then vanished.
VANISH_AFTER_S = 10.0
#: Status of a frame with no answer within the client's timeout, and of an OK answer.
VANISHED, OK = "VANISHED", "OK"


@dataclass(frozen=True, slots=True)
class Frame:
    app: str
    t: float  # when it was sent (wall clock, s)
    code: str  # OK, a status code name, or VANISHED
    ms: float  # client-measured latency (ms)
    client_lag_ms: float = 0.0  # how late the client's own loop ran while the frame was out (ms)

    def on_time(self, slo_ms: float) -> bool:
        """Answered within the SLO + CLIENT_HOP_MS, once the client's own delay is taken out: a frame
        whose client read its answer late (its loop busy, as a flooding client's is) was not late by
        the server."""
        return self.ms - self.client_lag_ms <= slo_ms + CLIENT_HOP_MS


@dataclass
class Outcome:
    """What the frames of one scenario got."""

    sent: int = 0
    ok: int = 0  # OK within the SLO (+ CLIENT_HOP_MS)
    late: int = 0  # OK, but later
    vanished: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # status code -> frames
    disruption_s: float | None = None  # None: no fault; 0: no frame after the fault went wrong
    offered_per_s: float = math.nan  # frames sent per second over the window

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())


def summarize(frames: Iterable[Frame], slo_ms: dict[str, float], start: float, end: float,
              fault_at: float | None) -> Outcome:
    """The frames sent in [start, end): counts per outcome, and the disruption: the send time of the
    last frame not answered OK within its SLO (+ CLIENT_HOP_MS), minus `fault_at` (0 when every frame sent
    after the fault was)."""
    out = Outcome()
    last_bad: float | None = None
    for f in frames:
        if not start <= f.t < end:
            continue
        out.sent += 1
        bad = True
        if f.code == OK:
            if f.on_time(slo_ms.get(f.app, math.inf)):
                out.ok += 1
                bad = False
            else:
                out.late += 1
        elif f.code == VANISHED:
            out.vanished += 1
        else:
            out.failed[f.code] = out.failed.get(f.code, 0) + 1
        if bad and (last_bad is None or f.t > last_bad):
            last_bad = f.t
    if fault_at is not None:
        out.disruption_s = max(0.0, last_bad - fault_at) if last_bad is not None and last_bad >= fault_at else 0.0
    if end > start:
        out.offered_per_s = out.sent / (end - start)
    return out


def is_late(f: Frame, slo_ms: dict[str, float]) -> bool:
    """Answered OK, but after the SLO + CLIENT_HOP_MS."""
    return f.code == OK and not f.on_time(slo_ms.get(f.app, math.inf))


def frame_of(record: dict, timeout_s: float) -> Frame:
    """A load-generator record as a Frame: DEADLINE_EXCEEDED at the client's own timeout is VANISHED."""
    code = record["code"]
    if code == "DEADLINE_EXCEEDED" and record["ms"] >= (timeout_s - 0.05) * 1000.0:
        code = VANISHED
    return Frame(record["app"], float(record["t"]), code, float(record["ms"]), float(record.get("client_lag_ms", 0.0)))


def codes(counts: dict[str, int]) -> str:
    """Status codes and their counts, the most frequent first."""
    return ", ".join(f"{code} {n}" for code, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "0"


class RecordTail:
    """The per-frame records a client appends to a file (one JSON object per line), read as they come:
    a send record per frame (id, app, send time) and an outcome record (the same, code and latency)."""

    def __init__(self, path: Path, timeout_s: dict[str, float]):
        self.path = path
        self.timeout_s = timeout_s  # per app: the client's timeout
        self._offset = 0
        self._frames: list[Frame] = []
        self._unanswered: dict[int, tuple[str, float]] = {}  # frame id -> app, send time: sent, no outcome yet
        self.sent = 0  # send records read
        self.summary: dict | None = None
        self._told: set[str] = set()

    def read(self) -> list[Frame]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self._frames
        end = data.rfind(b"\n")
        if end < 0:
            return self._frames
        self._offset += end + 1
        for line in data[: end + 1].splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            if "summary" in rec:
                self.summary = rec["summary"]
                continue
            if "code" not in rec:  # a send record
                self.sent += 1
                self._unanswered[rec["id"]] = (rec["app"], float(rec["t"]))
                continue
            self._unanswered.pop(rec.get("id"), None)
            self._frames.append(frame_of(rec, self.timeout_s.get(rec["app"], math.inf)))
        return self._frames

    def final(self) -> list[Frame]:
        """Every frame once the client is done (or dead): the answered ones, and each frame sent without an
        outcome as VANISHED. A client summary counting more frames than there are send records means
        frames were lost without a trace: said in the log (no send time: no scenario to count them in)."""
        frames = list(self.read())
        frames += [Frame(app, t, VANISHED, self.timeout_s.get(app, math.inf) * 1000.0)
                   for app, t in self._unanswered.values()]
        told = []
        if self._unanswered:
            told.append(f"{self.path.name}: {len(self._unanswered)} frames sent without an outcome: counted VANISHED")
        if self.summary is not None and self.summary.get("sent", 0) != self.sent:
            told.append(f"{self.path.name}: the client says it sent {self.summary.get('sent')} frames, "
                        f"{self.sent} were recorded")
        for msg in told:
            if msg not in self._told:
                self._told.add(msg)
                log(msg)
        return frames
