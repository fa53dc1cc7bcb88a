"""The committed generated code matches protos/ (regenerated with the pinned grpcio-tools)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO


def test_generated_code_is_up_to_date(tmp_path):
    protoc = pytest.importorskip("grpc_tools.protoc")
    proto = REPO / "protos" / "harpagon" / "v1" / "worker.proto"
    rc = protoc.main(["protoc", f"-I{REPO / 'protos'}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
                      f"--grpc_python_out={tmp_path}", str(proto)])
    assert rc == 0
    for name in ("worker_pb2.py", "worker_pb2.pyi", "worker_pb2_grpc.py"):
        fresh = (tmp_path / "harpagon" / "v1" / name).read_text()
        assert fresh == (REPO / "harpagon" / "v1" / name).read_text(), f"{name} is stale: run scripts/gen_protos.sh"
