"""The live bench's plots, PNGs beside its report: attainment per app, the hop split per module, and
the capacity search."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from harpagon.bench.live.capacity import CAPACITY_GOAL
from harpagon.bench.live.measure import HOPS
from harpagon.bench.live.results import Report


def plots(rep: Report, out_dir: Path, stem: str) -> list[str]:
    """PNG plots next to the report (none if matplotlib is missing); their file names."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    names = []
    for kind, draw in (("attainment", _attainment_figure), ("hops", _hops_figure), ("capacity", _capacity_figure)):
        fig = draw(plt, rep)
        if fig is None:
            continue
        fig.tight_layout()
        name = f"{stem}_{kind}.png"
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
        names.append(name)
    return names


def _policy(dispatch: str) -> str:
    return "BA" if dispatch == "batch-aware" else "RL"


def _attainment_figure(plt: Any, rep: Report) -> Any:
    runs = [(c, r) for c in rep.clusters for r in c.runs]
    if not runs:
        return None
    labels, values, colors = [], [], []
    for c, r in runs:
        for a in r.apps:
            labels.append(f"{Path(c.config).stem}/{a.app}\n{_policy(c.dispatch)} {r.arrivals[:4]}")
            values.append(100 * (0 if math.isnan(a.attainment) else a.attainment))
            colors.append("tab:green" if a.kept else "tab:red" if a.kept is False else "tab:gray")
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(labels)), 4.5))
    ax.bar(range(len(values)), values, color=colors)
    ax.axhline(99, color="k", lw=0.8, ls="--", label="99% (Poisson promise)")
    ax.set_xticks(range(len(values)), labels, rotation=90, fontsize=6)
    ax.set_ylabel("frames within SLO (%)")
    ax.set_ylim(0, 101)
    ax.set_title("Live attainment per app on EMULATED workers (green: promise kept, red: missed)")
    ax.legend(loc="lower left", fontsize=7)
    return fig


def _hops_figure(plt: Any, rep: Report) -> Any:
    hops = [(c, h) for c in rep.clusters for h in (c.hops or [])]
    if not hops:
        return None
    fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(hops)), 4.5))
    bottom = np.zeros(len(hops))
    for k, label, _ in HOPS:
        v = np.nan_to_num(np.array([h[k][0] for _, h in hops]))
        ax.bar(range(len(hops)), v, bottom=bottom, label=label)
        bottom += v
    ax.set_xticks(range(len(hops)), [f"{Path(c.config).stem}/{h['app']}/{h['module']}\n{_policy(c.dispatch)}"
                                     for c, h in hops], rotation=90, fontsize=6)
    ax.set_ylabel("median ms (stacked; batch hops per batch)")
    ax.set_title("Hop split per module (EMULATED workers)")
    ax.legend(fontsize=7)
    return fig


def _capacity_figure(plt: Any, rep: Report) -> Any:
    if not (rep.capacity and rep.capacity.steps):
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax2 = ax.twinx()
    for label, c, color in (("unary", rep.capacity, "tab:blue"), ("streaming", rep.capacity_streaming, "tab:green")):
        if c is None or not c.steps:
            continue
        steps = sorted((s for s in c.steps if not math.isnan(s.attainment)), key=lambda s: s.rate)  # measured
        x = [s.rate for s in steps]
        ax.plot(x, [100 * s.attainment for s in steps], "o-", color=color, label=f"attainment (%), {label}")
        ax2.plot(x, [s.server_cores for s in steps], "s--", color=color, alpha=0.5, label=f"server cores, {label}")
    ax.set_xscale("log")
    ax.set_xlabel("offered frames/s (one-module app)")
    ax.set_ylabel("frames within SLO (%)")
    ax.axvline(CAPACITY_GOAL, color="gray", ls=":", label=f"goal {CAPACITY_GOAL:,.0f}/s")
    ax2.set_ylabel("serving process CPU (cores)")
    ax.set_title("Capacity of one frontend process (EMULATED workers)")
    fig.legend(loc="center left", bbox_to_anchor=(0.1, 0.45), fontsize=7)
    return fig
