"""The log lines the suite reads: the controller's (plans, joins, removals, leaves) and, best effort,
the workers' (the configurations they put in force, a leave given up on)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass

PLAN_RE = re.compile(r"plan (\d+) in force")
JOINED_RE = re.compile(r"worker (\S+) joined: .*? at ([^\s,]+)")
REMOVED_RE = re.compile(r"worker (\S+) at ([^\s,]+) removed:")
#: A worker sent SIGTERM says it is leaving; the controller lets it go once nothing routes to it (not an
#: eviction: `removed` is).
LEAVING_RE = re.compile(r"worker (\S+) at ([^\s,:]+:\d+) is leaving")
LEFT_RE = re.compile(r"worker (\S+) left$")
#: Worker lines: the id it registered under...
REGISTERED_RE = re.compile(r"registered with the controller at \S+ as (\S+)")
#: ...and its own line when the controller did not move its modules within its drain timeout.
GAVE_UP_RE = re.compile(r"leaving: the controller did not move")
#: Worker lines (best effort: without them the controller restart's push counts are 0 of 0).
CONFIG_RE = re.compile(r"configuration (\d+) in force: (\[[^\]]*\])")
LOADING_RE = re.compile(r"loading module (\S+) ")


def membership(lines: Iterable[tuple[float, str]]) -> tuple[dict[str, str], float]:
    """Registered workers (address -> id) after these controller lines (joined, less those removed or
    left), and when it last changed."""
    members: dict[str, str] = {}
    changed = 0.0
    for t, s in lines:
        m = JOINED_RE.search(s)
        if m:
            wid, addr = m.groups()
            for a in [a for a, i in members.items() if i == wid]:
                del members[a]
            members[addr] = wid
            changed = t
            continue
        m = REMOVED_RE.search(s)
        if m:
            wid, addr = m.groups()
            if members.get(addr) == wid:
                del members[addr]
            changed = t
            continue
        m = LEFT_RE.search(s)
        if m:
            for a in [a for a, i in members.items() if i == m.group(1)]:
                del members[a]
            changed = t
    return members, changed


def plan_lines(lines: Iterable[tuple[float, str]]) -> list[tuple[float, int]]:
    return [(t, int(m.group(1))) for t, s in lines if (m := PLAN_RE.search(s))]


@dataclass(frozen=True)
class Push:
    """A configuration a worker put in force (its log), against the one in force before."""

    t: float
    modules: tuple[str, ...]
    loaded: tuple[str, ...]  # modules it did not run before
    reloaded: tuple[str, ...]  # modules it ran, loaded again (another spec under the same name)
    unloaded: tuple[str, ...]

    @property
    def noop(self) -> bool:
        """It changed nothing the worker runs (only the version)."""
        return not (self.loaded or self.reloaded or self.unloaded)


def config_pushes(lines: Iterable[tuple[float, str]]) -> list[Push]:
    """The configurations a worker's log says it put in force (`configuration N in force: [...]`, with
    the `loading module X` lines before each), each compared with the one before. A worker's first
    configuration is compared with nothing running."""
    out: list[Push] = []
    current: tuple[str, ...] = ()
    loading: list[str] = []
    for t, s in lines:
        m = LOADING_RE.search(s)
        if m:
            loading.append(m.group(1))
            continue
        m = CONFIG_RE.search(s)
        if m is None:
            continue
        try:
            mods = tuple(ast.literal_eval(m.group(2)))
        except (ValueError, SyntaxError):
            continue
        out.append(Push(t, mods, tuple(x for x in loading if x not in current),
                        tuple(x for x in loading if x in current), tuple(x for x in current if x not in mods)))
        current, loading = mods, []
    return out
