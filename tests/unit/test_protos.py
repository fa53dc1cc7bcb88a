"""The committed generated code matches protos/ (regenerated with the pinned grpcio-tools)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO


def test_generated_code_is_up_to_date(tmp_path):
    protoc = pytest.importorskip("grpc_tools.protoc")
    protos = [str(REPO / "protos" / "harpagon" / "v1" / f"{name}.proto") for name in ("worker", "controller")]
    rc = protoc.main(["protoc", f"-I{REPO / 'protos'}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
                      f"--grpc_python_out={tmp_path}", *protos])
    assert rc == 0
    for name in (f"{proto}_pb2{ext}" for proto in ("worker", "controller") for ext in (".py", ".pyi", "_grpc.py")):
        fresh = (tmp_path / "harpagon" / "v1" / name).read_text()
        assert fresh == (REPO / "harpagon" / "v1" / name).read_text(), f"{name} is stale: run scripts/gen_protos.sh"
