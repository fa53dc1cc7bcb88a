"""Logging for the long-running commands: readable text, or one JSON object per line for log
collectors (`--log-format json`: fields `time`, `level`, `logger`, `message`, plus any extras)."""

from __future__ import annotations

import logging
import sys

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The levels `--log-level` takes.
LEVELS = ("debug", "info", "warning", "error")
#: The level `harpagon --log-level` asked for (None: each command's own default).
LEVEL: str | None = None


def setup(fmt: str = "text", level: int = logging.INFO) -> None:
    """Log to stderr in `fmt` from `level` on (or from the level `--log-level` set, `LEVEL`)."""
    if LEVEL is not None:
        level = logging.getLevelName(LEVEL.upper())
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(TEXT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
