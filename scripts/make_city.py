"""Write configs/city.yaml: 20 apps (traffic, face, pose, activity, products variants) at varied rates
and SLOs on the catalog's hardware, for planning-time measurements. Deterministic (seed 7)."""

from __future__ import annotations

import random
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: object) -> bool:
        return True


def main() -> None:
    rng = random.Random(7)
    templates = yaml.safe_load((ROOT / "configs" / "multi.yaml").read_text())["apps"]
    apps = []
    for i in range(20):
        t = templates[i % len(templates)]
        apps.append({
            "name": f"{t['name']}-{i // len(templates) + 1}",
            "rate": round(t["rate"] * rng.choice([0.25, 0.5, 1, 2, 4]), 1),
            "slo_ms": round(t["slo_ms"] * rng.choice([0.5, 0.75, 1, 1.5]), 1),
            "modules": t["modules"],
        })
    header = ("# 20 apps for planning-time measurements (scripts/make_city.py, seed 7).\n"
              "include: [../models/profiles/hardware.yaml, ../models/profiles/catalog.yaml]\n")
    body = yaml.dump({"apps": apps}, Dumper=_NoAliases, sort_keys=False, default_flow_style=None, width=110)
    (ROOT / "configs" / "city.yaml").write_text(header + body)


if __name__ == "__main__":
    main()
