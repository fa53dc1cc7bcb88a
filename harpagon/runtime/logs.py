"""Logging for the long-running commands: readable text, or one JSON object per line for log
collectors (`--log-format json`: fields `time`, `level`, `logger`, `message`, plus any extras).
Times are RFC 3339, in UTC, to the millisecond (`2026-12-06T11:02:34.086+00:00`)."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from datetime import UTC, datetime

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The levels `--log-level` takes.
LEVELS = ("debug", "info", "warning", "error")
#: The level `harpagon --log-level` asked for (None: each command's own default).
LEVEL: str | None = None
#: The format `setup` last set ("text" or "json"): `harpagon serve` starts its children with it.
FORMAT = "text"


def rfc3339(record: logging.LogRecord, datefmt: str | None = None) -> str:
    """A record's time as RFC 3339 (UTC, milliseconds): what log collectors parse without a hint."""
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


#: Seconds during which a warning or error already logged, word for word, is counted instead of logged again.
REPEAT_WINDOW_S = 60.0


class Repeats(logging.Filter):
    """Rate-limits repeated warnings and errors: the first of a kind (same logger, same level, same text)
    is logged, the same line again within REPEAT_WINDOW_S is counted, and the next one logged after the
    window says how many were not (a worker whose controller is down, a flapping peer: one line a
    minute, not one per retry). Different events (two workers evicted) are different lines, each logged."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S, clock=time.monotonic):
        super().__init__()
        self.window_s, self.clock = window_s, clock
        self.seen: dict[tuple[str, int, str], list] = {}  # kind -> [logged at, held back since]
        self._lock = threading.Lock()  # records come from every thread

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            key = (record.name, record.levelno, record.getMessage())
        except Exception:  # a record whose arguments do not format: the handler reports it, not this
            return True
        with self._lock:
            now = self.clock()
            entry = self.seen.get(key)
            if entry is not None and now - entry[0] < self.window_s:
                entry[1] += 1
                return False
            if entry is not None and entry[1]:
                record.msg, record.args = (f"{key[2]} (and {entry[1]} more like it in the last "
                                           f"{self.window_s:g} s, not shown)"), None
            if len(self.seen) > 1024:  # bounded: old kinds go
                self.seen = {k: v for k, v in self.seen.items() if now - v[0] < self.window_s}
            self.seen[key] = [now, 0]
        return True


class _Text(logging.Formatter):
    formatTime = staticmethod(rfc3339)  # type: ignore[assignment]


def setup(fmt: str = "text", level: int = logging.INFO) -> None:
    """Log to stderr in `fmt` from `level` on (or from the level `--log-level` set, `LEVEL`)."""
    global FORMAT
    FORMAT = fmt
    if LEVEL is not None:
        level = logging.getLevelName(LEVEL.upper())
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        class _Json(JsonFormatter):
            formatTime = staticmethod(rfc3339)  # type: ignore[assignment]

        handler.setFormatter(_Json("%(asctime)s %(levelname)s %(name)s %(message)s",
                                   rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(_Text(TEXT))
    handler.addFilter(Repeats())
    logging.basicConfig(level=level, handlers=[handler], force=True)


def banner(message: str, logger: str = "harpagon", **fields: object) -> None:
    """A start-up or shutdown line on stdout (what scripts and supervisors wait for): the text itself, or
    in JSON mode one object with the log lines' fields plus `fields`, so that every line is JSON."""
    if FORMAT == "json":
        record = logging.makeLogRecord({"created": time.time()})
        line = json.dumps({"time": rfc3339(record), "level": "INFO", "logger": logger, "message": message, **fields})
    else:
        line = message
    print(line, flush=True)
