"""The README's *Pipelines* section holds: its YAML modules are a valid app, and its tritonclient
example, run against `configs/demo.yaml` served locally, prints one line per vehicle as it says."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import threading

import pytest
import yaml
from PIL import Image

from harpagon.config import load_workload
from harpagon.runtime.serve import LocalCluster
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration

SECTION = (REPO / "README.md").read_text().split("### Pipelines", 1)[1].split("\n### ", 1)[0]


def _block(lang: str, n: int = 0) -> str:
    return re.findall(rf"```{lang}\n(.*?)```", SECTION, re.DOTALL)[n]


def test_the_readme_modules_are_a_valid_app(tmp_path):
    modules = yaml.safe_load(_block("yaml"))["modules"]
    config = tmp_path / "app.yaml"
    profiled = [{"model": m, "hardware": "t4", "batches": [[1, 2.0]]} for m in ("resnet18", "mlp_join")]
    config.write_text(yaml.safe_dump({"include": [str(REPO / "models/profiles/hardware.yaml"),
                                                  str(REPO / "models/profiles/catalog.yaml")],
                                      "profiles": profiled,  # the catalog has none of these two
                                      "apps": [{"name": "x", "rate": 10, "slo_ms": 500, "modules": modules}]}))
    app = load_workload([config]).apps[0]
    assert app.objects == {"detect": None, "vehicles": "detect", "colour": "detect", "pair": "detect"}


def test_the_readme_tritonclient_example_prints_each_vehicle(tmp_path):
    workload = load_workload([REPO / "configs" / "demo.yaml"])
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    cluster = LocalCluster(workload, grpc_port=0, metrics_port=0)

    async def up():
        await cluster.start()
        await cluster.ready()

    asyncio.run_coroutine_threadsafe(up(), loop).result(180)
    try:
        code = _block("python").replace("127.0.0.1:8001", f"127.0.0.1:{cluster.port}")
        jpeg = _block("python", 1).replace("street.jpg", str(tmp_path / "street.jpg"))
        Image.new("RGB", (320, 240), (90, 120, 30)).save(tmp_path / "street.jpg", quality=85)
        printed = io.StringIO()
        scope: dict = {}
        with contextlib.redirect_stdout(printed):
            for _ in range(3):  # the demo's vehicles: 2 a frame (the configured scale, emulated)
                exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own example
            exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - once more, then its JPEG file
            exec(compile(jpeg, "README.md", "exec"), scope)  # noqa: S102
        boxes = scope["r"].as_numpy("vehicles_box")
    finally:
        asyncio.run_coroutine_threadsafe(cluster.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    # the JPEG's vehicles, boxes in its own pixels (320 x 240)
    assert len(boxes) == 2 and boxes.min() >= 0 and boxes[:, 2].max() <= 320 and boxes[:, 3].max() <= 240
    lines = printed.getvalue().splitlines()
    assert len(lines) == 8, lines
    for line in lines:
        assert re.fullmatch(r"detection \d+: (car|bus|truck) 0\.90 at \[[-\d., ]+\], best classes \[0, 1, 2, 3, 4\]",
                            line), line
