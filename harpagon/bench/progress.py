"""Progress of long benchmark work: a bar per phase on a terminal, one line per finished item elsewhere.

A bench that runs for many minutes must show that it is alive and how far it has come: on a terminal
each phase gets a rich progress bar (done/total, elapsed, ETA); in a log or CI (not a terminal) each
finished item prints one line to stderr, flushed, with the phase, the count and the elapsed time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self, TextIO


class Phases:
    """Phases of one long command; `phase()` opens one, `done()` counts a finished item of it."""

    def __init__(self, name: str, stream: TextIO | None = None, bars: bool | None = None):
        self.name = name
        self.stream = stream or sys.stderr
        self.bars = self.stream.isatty() if bars is None else bars
        self._progress = None
        self._tasks: dict[str, int] = {}
        self._totals: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._t0 = time.perf_counter()

    def __enter__(self) -> Self:
        if self.bars:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(TextColumn(f"{self.name}: {{task.description}}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                                      console=Console(file=self.stream))
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def phase(self, label: str, total: int) -> str:
        self._totals[label], self._done[label] = total, 0
        if self._progress is not None:
            self._tasks[label] = self._progress.add_task(label, total=total)
        else:
            self._line(f"{label}: {total} to do")
        return label

    def done(self, label: str, item: str = "") -> None:
        self._done[label] += 1
        if self._progress is not None:
            self._progress.advance(self._tasks[label], 1)
        else:
            self._line(f"{label} {self._done[label]}/{self._totals[label]}" + (f" {item}" if item else ""))

    def _line(self, text: str) -> None:
        print(f"{self.name}: {text} ({time.perf_counter() - self._t0:.0f} s)", file=self.stream, flush=True)


@contextmanager
def phases(name: str, stream: TextIO | None = None, bars: bool | None = None) -> Iterator[Phases]:
    with Phases(name, stream, bars) as p:
        yield p
