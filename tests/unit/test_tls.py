"""Certificates, their expiry metric, the authorisation policy and the weights directory (no network)."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from harpagon.cli import main
from harpagon.runtime.wire.errors import FailedPrecondition
from harpagon.runtime.wire.modules import ModuleSpec
from harpagon.runtime.wire.tls import (
    ROLES,
    TlsFiles,
    certificate_expiry,
    denial,
    expiry_of,
    identity,
    is_loopback,
    make_certs,
    require_tls_off_loopback,
)
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


# --- certificate expiry, exported to Prometheus ---------------------------------------------------


def _expiry(registry, name: str, role: str, cert: str) -> float | None:
    return registry.get_sample_value(name, {"role": role, "cert": cert})


def test_expiry_gives_the_not_after_of_the_leaf_and_of_its_ca(tmp_path):
    make_certs(tmp_path, days=3, ca_days=40)
    got = certificate_expiry(tmp_path / "worker")
    for cert, path in (("leaf", "worker/tls.crt"), ("ca", "ca.crt")):
        when = x509.load_pem_x509_certificate((tmp_path / path).read_bytes()).not_valid_after_utc
        assert got[cert] == when.timestamp()
    assert got["ca"] - got["leaf"] == 37 * 86400
    assert TlsFiles.load(tmp_path / "worker").expiry() == got
    # a CA bundle (old and new CA during a CA rotation) counts as its soonest CA
    other = tmp_path / "other"
    make_certs(other, days=1)
    bundle = (tmp_path / "ca.crt").read_bytes() + (other / "ca.crt").read_bytes()
    assert expiry_of((tmp_path / "worker" / "tls.crt").read_bytes(), bundle)["ca"] == certificate_expiry(other / "worker")["ca"]


def test_the_collector_exports_the_files_expiry_and_follows_a_rotated_leaf(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest

    from harpagon.runtime.wire.certmetrics import EXPIRY, LOADED, watch_certificates

    make_certs(tmp_path, days=3, ca_days=40)
    tls = TlsFiles.load(tmp_path / "frontend")
    registry = CollectorRegistry()
    watch_certificates(registry, "frontend", tls)
    first = certificate_expiry(tmp_path / "frontend")
    for cert in ("leaf", "ca"):
        assert _expiry(registry, EXPIRY, "frontend", cert) == first[cert]
        assert _expiry(registry, LOADED, "frontend", cert) == first[cert]
    text = generate_latest(registry).decode()
    assert f'{EXPIRY}{{cert="leaf",role="frontend"}}' in text and f"# TYPE {EXPIRY} gauge" in text

    make_certs(tmp_path, days=10, renew=True)  # a rotation: the same CA, new leaves
    leaf = _expiry(registry, EXPIRY, "frontend", "leaf")
    assert leaf == certificate_expiry(tmp_path / "frontend")["leaf"] and leaf - first["leaf"] >= 7 * 86400
    assert _expiry(registry, EXPIRY, "frontend", "ca") == first["ca"]
    # what the process serves with until it restarts
    assert _expiry(registry, LOADED, "frontend", "leaf") == first["leaf"]


def test_the_collector_parses_a_file_again_only_when_it_changes(tmp_path, monkeypatch):
    from prometheus_client import CollectorRegistry

    from harpagon.runtime.wire import certmetrics

    make_certs(tmp_path, days=3)
    registry = CollectorRegistry()
    certmetrics.watch_certificates(registry, "worker", TlsFiles.load(tmp_path / "worker"))
    parsed = []
    real = certmetrics.not_after
    monkeypatch.setattr(certmetrics, "not_after", lambda pem, earliest=False: parsed.append(earliest) or real(pem, earliest))
    for _ in range(3):
        registry.get_sample_value(certmetrics.EXPIRY, {"role": "worker", "cert": "leaf"})
    assert len(parsed) == 2  # the leaf and the CA, once
    make_certs(tmp_path, days=3, renew=True)
    registry.get_sample_value(certmetrics.EXPIRY, {"role": "worker", "cert": "leaf"})
    assert len(parsed) == 4  # both again: --renew writes every file of the folder anew (new inodes)


def test_a_missing_or_broken_file_leaves_its_sample_out(tmp_path):
    from prometheus_client import CollectorRegistry

    from harpagon.runtime.wire.certmetrics import EXPIRY, LOADED, watch_certificates

    make_certs(tmp_path, days=3)
    registry = CollectorRegistry()
    watch_certificates(registry, "controller", TlsFiles.load(tmp_path / "controller"))
    (tmp_path / "controller" / "tls.crt").write_text("not a certificate")
    (tmp_path / "controller" / "ca.crt").unlink()
    assert _expiry(registry, EXPIRY, "controller", "leaf") is None
    assert _expiry(registry, EXPIRY, "controller", "ca") is None
    assert _expiry(registry, LOADED, "controller", "leaf") is not None
    assert watch_certificates(registry, "controller", None) is None
