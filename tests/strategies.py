"""Hypothesis strategies for random but valid workloads (monotone profiles that include batch 1)."""

from __future__ import annotations

from hypothesis import strategies as st

from harpagon.config.schema import Workload
from harpagon.model.latency import Settings

BATCHES = (1, 2, 4, 8, 16, 32)


@st.composite
def profiles_for(draw, model: str, hardware: list[str]) -> list[dict]:
    kinds = draw(st.lists(st.sampled_from(hardware), min_size=1, max_size=len(hardware), unique=True))
    out = []
    for hw in kinds:
        base = draw(st.floats(0.5, 30.0))
        per_item = draw(st.floats(0.05, 8.0))
        sizes = [1] + draw(st.lists(st.sampled_from(BATCHES[1:]), max_size=4, unique=True))
        std = draw(st.sampled_from([0.0, 0.0, 0.05]))
        rows = [[b, round(base + per_item * (b - 1) * draw(st.floats(0.8, 1.0)), 3), round(std * base, 3)]
                for b in sorted(sizes)]
        out.append({"model": model, "hardware": hw, "batches": rows})
    return out


@st.composite
def workloads(draw, max_modules: int = 4, max_apps: int = 2, counts: bool = False) -> Workload:
    n_hw = draw(st.integers(1, 3))
    hardware = [{"name": f"h{i}", "price_per_hour": draw(st.floats(0.2, 5.0))} for i in range(n_hw)]
    if counts:
        for h in hardware:
            h["count"] = draw(st.integers(0, 6))
    names = [h["name"] for h in hardware]
    models = [f"m{i}" for i in range(draw(st.integers(1, 3)))]
    profiles = [p for m in models for p in draw(profiles_for(m, names))]
    apps = []
    for a in range(draw(st.integers(1, max_apps))):
        n = draw(st.integers(1, max_modules))
        modules = [{"name": "s", "model": draw(st.sampled_from(models))}]
        for i in range(1, n):
            parents = draw(st.lists(st.sampled_from([m["name"] for m in modules]), min_size=1, max_size=2,
                                    unique=True))
            modules.append({"name": f"x{i}", "model": draw(st.sampled_from(models)), "after": parents,
                            "scale": draw(st.sampled_from([0.5, 1.0, 1.0, 2.0, 3.0]))})
        apps.append({"name": f"a{a}", "rate": draw(st.floats(1.0, 5000.0)), "slo_ms": draw(st.floats(5.0, 800.0)),
                     "modules": modules})
    return Workload.model_validate({"hardware": hardware, "profiles": profiles, "apps": apps})


settings = st.builds(Settings, arrivals=st.just("fluid"), safety=st.floats(1.0, 1.5), overhead_ms=st.floats(0.0, 5.0),
                     max_utilization=st.floats(0.5, 1.0))
