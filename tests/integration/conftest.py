"""Real worker processes on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from harpagon.v1 import worker_pb2 as pb
from harpagon.v1 import worker_pb2_grpc as rpc

REPO = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(self, *args: str):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "harpagon.cli", "worker", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env)
        self.lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("worker exited:\n" + "".join(self.lines))
            self.lines.append(line)
            if line.startswith("worker listening on "):
                self.address = line.split()[3]
                break
        else:
            raise RuntimeError("worker did not start:\n" + "".join(self.lines))
        self.channel = grpc.insecure_channel(self.address)
        self.stub = rpc.WorkerStub(self.channel)
        self.stub.Health(pb.HealthRequest(), timeout=30)

    def stop(self) -> int:
        self.channel.close()
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture
def start_worker() -> Iterator:
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        w = WorkerProcess(*args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()
