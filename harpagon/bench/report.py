"""The pieces every bench report is made of, so that the planner, live and fault reports print
tables, numbers and the host the same way: a report is prose around tables, each a list of rows
rendered by `md_table`."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harpagon.data import configs_dir

#: The repository: configs, model profiles and tools are found from here, and paths are shown against it.
ROOT = Path(__file__).resolve().parents[2]


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Iterable[int] | None = None) -> list[str]:
    """A markdown table; columns in `right` (default every one but the first) right-aligned."""
    right = set(range(1, len(headers)) if right is None else right)
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---:" if i in right else ":---" for i in range(len(headers))) + "|"]
    for r in rows:
        cells = [str(c) for c in r]
        if len(cells) != len(headers):
            raise ValueError(f"a row has {len(cells)} cells for {len(headers)} columns: {cells}")
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return out


def fmt(x: float | None, spec: str = ".1f", missing: str = "-") -> str:
    """A number as a cell; `missing` where there is none (None or nan)."""
    return missing if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def percentiles(samples: Iterable[float]) -> tuple[float, float, float, int]:
    """(P50, P99, max, n) of samples, interpolated; NaNs when there are none."""
    a = np.asarray(list(samples), float)
    if not a.size:
        return math.nan, math.nan, math.nan, 0
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max()), int(a.size)


def nearest_rank(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]): always one of the values; nan for none."""
    values = sorted(values)
    if not values:
        return math.nan
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def machine() -> str:
    """The host a report's figures were measured on."""
    cores = os.cpu_count()
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{cores} cores ({model}), Python {sys.version.split()[0]}, no GPU used"


def shown(path: Path) -> str:
    """`path` as a report names it: a packaged file as `configs/...` or `models/...` (the repository's
    links to them), else relative to the repository when it is in it."""
    for base in (configs_dir().parent, ROOT):
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)
