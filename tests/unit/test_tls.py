"""Certificates, the authorisation policy and the weights directory (no network)."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from harpagon.cli import main
from harpagon.runtime.wire.errors import FailedPrecondition
from harpagon.runtime.wire.modules import ModuleSpec
from harpagon.runtime.wire.tls import ROLES, TlsFiles, denial, identity, is_loopback, require_tls_off_loopback
from harpagon.runtime.worker.executor import TorchExecutor


def test_certs_makes_a_ca_and_one_certificate_per_role_signed_by_it(tmp_path, capsys):
    assert main(["certs", "--out", str(tmp_path), "--hosts", "frontend.example", "10.1.2.3"]) == 0
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    for role in ROLES:
        files = TlsFiles.load(tmp_path / role)
        cert = x509.load_pem_x509_certificate(files.cert)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == identity(role)
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert identity(role) in san.get_values_for_type(x509.DNSName)
        assert "frontend.example" in san.get_values_for_type(x509.DNSName)
        assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
        assert stat.S_IMODE(os.stat(tmp_path / role / "tls.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "ca.key").st_mode) == 0o600
    assert f"--tls-dir {tmp_path / 'worker'}" in capsys.readouterr().out


def test_a_tls_dir_missing_a_file_is_named(tmp_path):
    (tmp_path / "ca.crt").write_text("x")
    with pytest.raises(ValueError, match="cannot read tls.crt"):
        TlsFiles.load(tmp_path)


@pytest.mark.parametrize(("method", "role", "allowed"), [
    ("/harpagon.v1.Worker/ApplyConfig", "controller", True),
    ("/harpagon.v1.Worker/ApplyConfig", "frontend", False),
    ("/harpagon.v1.Worker/ApplyConfig", "worker", False),
    ("/harpagon.v1.Worker/Infer", "frontend", True),
    ("/harpagon.v1.Worker/Infer", "controller", False),
    ("/harpagon.v1.Controller/Register", "worker", True),
    ("/harpagon.v1.Controller/Register", "frontend", False),
    ("/harpagon.v1.Controller/WatchRoutes", "frontend", True),
    ("/harpagon.v1.Controller/WatchRoutes", "worker", False),
    ("/harpagon.v1.Controller/ReportRates", "frontend", True),
    ("/harpagon.v1.Controller/ReportRates", None, False),
    ("/harpagon.v1.Worker/NotAMethod", "controller", False),
])
def test_each_method_is_allowed_to_its_callers_roles_only(method, role, allowed):
    reason = denial(method, role)
    assert (reason is None) == allowed
    if not allowed:
        assert method in reason


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                                 ("0.0.0.0", False), ("10.0.0.5", False), ("node-1", False)])
def test_listening_beyond_loopback_needs_tls_or_insecure(host, loopback):
    assert is_loopback(host) == loopback
    if loopback:
        require_tls_off_loopback(host, None, False)
    else:
        with pytest.raises(ValueError, match="--insecure"):
            require_tls_off_loopback(host, None, False)
        require_tls_off_loopback(host, None, True)


def test_cli_refuses_a_public_bind_without_tls(capsys):
    assert main(["worker", "--device", "emulated:t4", "--host", "0.0.0.0"]) == 2
    assert "--tls-dir" in capsys.readouterr().err


def _spec(weights: str) -> ModuleSpec:
    return ModuleSpec("app/m", "resnet18", 1, (3, 32, 32), weights)


def test_a_worker_reads_weights_only_under_its_weights_dir(tmp_path):
    inside = tmp_path / "weights"
    inside.mkdir()
    (inside / "m.pt").write_bytes(b"")
    (tmp_path / "secret.pt").write_bytes(b"")
    (inside / "link.pt").symlink_to(tmp_path / "secret.pt")
    ex = TorchExecutor("cpu", weights_dir=inside)
    assert ex.weights_path(_spec("m.pt")) == (inside / "m.pt").resolve()
    assert ex.weights_path(_spec(str(inside / "m.pt"))) == (inside / "m.pt").resolve()  # absolute, inside
    assert ex.weights_path(_spec("")) is None
    for escape in ("../secret.pt", str(tmp_path / "secret.pt"), "link.pt", "/etc/passwd"):
        with pytest.raises(FailedPrecondition, match="outside the worker's --weights-dir"):
            ex.weights_path(_spec(escape))
    with pytest.raises(FailedPrecondition, match="reads no weights"):
        TorchExecutor("cpu").weights_path(_spec("m.pt"))
