"""The planner benchmark's workload grid: apps x rates x SLOs x hardware catalogs.

Each workload is one app on one catalog. Its SLO is a multiple of the app's fastest possible path
(every module at its fastest profiled batch on its fastest hardware), from tight (1.5x) to loose (10x).
Apps and profiles come from `configs/multi.yaml` and `models/profiles/catalog.yaml`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from harpagon.config import load_workload
from harpagon.config.schema import App, Hardware, Workload
from harpagon.data import configs_dir
from harpagon.model.latency import Settings, options_for

RATES = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
SLO_FACTORS = (1.5, 2.0, 3.0, 5.0, 10.0)
#: Price lists: on-demand AWS-like (the catalog's), GCP GPU-only prices, and one where T4 is scarce
#: and dear, so that the fast expensive kinds win more often.
CATALOGS: dict[str, dict[str, float]] = {
    "aws": {"t4": 0.526, "v100": 3.06, "titanx": 1.46},
    "gcp": {"t4": 0.35, "v100": 2.48, "titanx": 1.46},
    "dear-t4": {"t4": 1.2, "v100": 2.48, "titanx": 1.46},
}


@dataclass(frozen=True)
class Case:
    """One benchmark workload."""

    id: str
    app: str
    rate: float
    slo_factor: float
    catalog: str
    workload: Workload


def fastest_path_ms(app: App, workload: Workload, settings: Settings) -> float:
    fast = {m.name: min(o.d_ms for o in options_for(workload, app, m, settings)) + settings.overhead_ms
            for m in app.modules}
    return max(sum(fast[m] for m in p) for p in app.paths)


def grid(settings: Settings, limit: int | None = None, seed: int = 0) -> list[Case]:
    """Every (app, rate, SLO, catalog) combination; `limit` takes a seeded sample of them."""
    base = load_workload([configs_dir() / "multi.yaml"])
    cases = []
    for catalog, prices in CATALOGS.items():
        hardware = tuple(Hardware(name=n, price_per_hour=p) for n, p in prices.items())
        for app in base.apps:
            for rate in RATES:
                for factor in SLO_FACTORS:
                    a = app.model_copy(update={"rate": rate})
                    w = Workload(hardware=hardware, profiles=base.profiles, apps=(a,))
                    slo = round(fastest_path_ms(a, w, settings) * factor, 3)
                    w = Workload(hardware=hardware, profiles=base.profiles, apps=(a.model_copy(update={"slo_ms": slo}),))
                    cases.append(Case(f"{catalog}/{app.name}/{rate:g}fps/x{factor:g}", app.name, rate, factor,
                                      catalog, w))
    if limit is not None and limit < len(cases):
        cases = sorted(random.Random(seed).sample(cases, limit), key=lambda c: c.id)
    return cases


def many_apps(count: int, seed: int = 0) -> Workload:
    """`count` apps (the example apps at seeded rates and SLOs) on the AWS catalog, for scale tests."""
    rng = random.Random(seed)
    base = load_workload([configs_dir() / "multi.yaml"])
    hardware = tuple(Hardware(name=n, price_per_hour=p) for n, p in CATALOGS["aws"].items())
    apps = []
    for i in range(count):
        a = base.apps[i % len(base.apps)]
        a = a.model_copy(update={"name": f"{a.name}-{i}", "rate": rng.choice(RATES)})
        w = Workload(hardware=hardware, profiles=base.profiles, apps=(a,))
        slo = fastest_path_ms(a, w, Settings()) * rng.choice(SLO_FACTORS)
        apps.append(a.model_copy(update={"slo_ms": round(slo, 3)}))
    return Workload(hardware=hardware, profiles=base.profiles, apps=tuple(apps))


def multi_app_grid(count: int, settings: Settings, seed: int = 0) -> list[Case]:
    """`count` seeded workloads of 2 to 5 distinct apps each (the paper's setting: several DNN apps
    sharing one cluster), every app at its own rate and SLO factor, on a seeded catalog.

    A multi-app case's `app` joins the app names with "+", its `rate` is the sum of the apps' rates and
    its `slo_factor` is nan (each app has its own)."""
    rng = random.Random(f"multi-app/{seed}")
    base = load_workload([configs_dir() / "multi.yaml"])
    cases = []
    for i in range(count):
        catalog = rng.choice(sorted(CATALOGS))
        hardware = tuple(Hardware(name=n, price_per_hour=p) for n, p in CATALOGS[catalog].items())
        apps = []
        for app in sorted(rng.sample(base.apps, rng.randint(2, min(5, len(base.apps)))), key=lambda a: a.name):
            a = app.model_copy(update={"rate": rng.choice(RATES)})
            w = Workload(hardware=hardware, profiles=base.profiles, apps=(a,))
            slo = round(fastest_path_ms(a, w, settings) * rng.choice(SLO_FACTORS), 3)
            apps.append(a.model_copy(update={"slo_ms": slo}))
        w = Workload(hardware=hardware, profiles=base.profiles, apps=tuple(apps))
        cases.append(Case(f"multi/{i:02d}/{catalog}/{len(apps)}apps", "+".join(a.name for a in apps),
                          sum(a.rate for a in apps), float("nan"), catalog, w))
    return cases
