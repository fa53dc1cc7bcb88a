"""`harpagon demo`, the README's main command, end to end (short run, a video file made here), with the
default promise: the controller replays each plan under Poisson arrivals before it serves it, and the
demo sends Poisson arrivals and judges each app's attainment against that promise."""

from __future__ import annotations

import re
import subprocess
import sys

import av
import numpy as np
import pytest

from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration


def test_demo_streams_a_video_through_the_demo_apps_and_summarises(tmp_path):
    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    proc = subprocess.run([sys.executable, "-m", "harpagon.cli", "demo", "--seconds", "3", "--video", str(video),
                           "--arrivals", "poisson", "--seed", "3"],
                          cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "streaming 10 frames of" in out and "[EMULATED workers]" in out
    assert "plan promise poisson ≥99%: replayed 10000 frames or 60 s of each app (seed 0), min attainment " in out
    assert "sending each app's frames at its rate, Poisson arrivals, seed 3" in out
    assert "summary: plan $" in out and "per module, whole run: measured against predicted" in out
    for app, slo in (("traffic", 250), ("face", 150)):
        assert f"│ {app}" in out
        line = re.search(rf"^{app}: (\d+\.\d)% within the {slo} ms SLO \((\d+) of (\d+) frames\); promise ≥ 99% "
                         rf"\(Poisson\), replay predicted (\d+\.\d)%: (kept|missed)$", out, re.MULTILINE)
        assert line, out[-3000:]
        within, frames = int(line[2]), int(line[3])
        assert 0 < frames and float(line[1]) == pytest.approx(100 * within / frames, abs=0.1)
        assert (line[5] == "kept") == (within >= 0.99 * frames)
        # the module table counts the whole run: every frame done reached its app's source module
        row = re.search(rf"│ {app}\s+│ detect\s+│ [\w, -]+│\s+1\.00 │\s+1\.00 │\s+(\d+) │", out)
        assert row and int(row[1]) == frames, out[-3000:]
    # emulated detectors find objects as the configured scale says: the measured fan-out is the planned one
    assert re.search(r"│ traffic\s+│ vehicles\s+│ [\w, -]+│\s+2\.00 │\s+2\.00 │", out), out[-3000:]
    # one frame's reply, per object: its detection, label (named, from the COCO label set) and best classes
    assert "traffic: sink 'vehicles', one frame's reply" in out and "face: sink 'recognize', one frame's reply" in out
    assert re.search(r"│ \d+\s+│ 3 car\s+│ 0\.90\s+│ \d+, \d+, \d+, \d+\s+│ 0 \(0\.001\)", out), out[-3000:]
