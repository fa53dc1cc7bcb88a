"""`harpagon certs --out` writes nothing through a symbolic link, and replaces files only when told;
its CA outlives the leaves (--ca-days), which --renew re-issues under the same CA."""

from __future__ import annotations

import datetime
import os
import stat

import pytest
from cryptography import x509

from harpagon.cli import main
from harpagon.cli.certs import CA_DAYS
from harpagon.runtime.wire.tls import ROLES, TlsFiles

FILES = ["ca.crt", "ca.key"] + [f"{role}/{name}" for role in ROLES for name in ("ca.crt", "tls.crt", "tls.key")]


@pytest.fixture
def victim(tmp_path):
    """A file of someone else's that a planted link points at."""
    path = tmp_path / "victim"
    path.write_text("precious\n")
    return path


def _certs(out, *flags) -> int:
    return main(["certs", "--out", str(out), "--days", "1", *flags])


def test_a_link_planted_where_a_key_goes_is_refused_and_its_target_untouched(tmp_path, victim, capsys):
    out = tmp_path / "pki"
    (out / "worker").mkdir(parents=True)
    (out / "worker" / "tls.key").symlink_to(victim)
    assert _certs(out) == 2
    err = capsys.readouterr().err
    assert f"{out / 'worker' / 'tls.key'}" in err and "--force" in err
    assert victim.read_text() == "precious\n"
    assert not (out / "ca.key").exists()  # refused before anything is written


def test_force_replaces_a_planted_link_without_following_it(tmp_path, victim):
    out = tmp_path / "pki"
    (out / "worker").mkdir(parents=True)
    (out / "worker" / "tls.key").symlink_to(victim)
    assert _certs(out, "--force") == 0
    assert victim.read_text() == "precious\n"
    key = out / "worker" / "tls.key"
    assert not key.is_symlink() and stat.S_IMODE(key.stat().st_mode) == 0o600
    TlsFiles.load(out / "worker")


def test_existing_files_are_refused_unless_forced_then_replaced(tmp_path, capsys):
    out = tmp_path / "pki"
    assert _certs(out) == 0
    before = {name: (out / name).read_bytes() for name in FILES}
    assert _certs(out) == 2
    assert "exist already; give --force" in capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in FILES} == before
    assert _certs(out, "--force") == 0
    after = {name: (out / name).read_bytes() for name in FILES}
    assert all(after[name] != before[name] for name in FILES)  # a new CA, new keys
    ca = x509.load_pem_x509_certificate(after["ca.crt"])
    x509.load_pem_x509_certificate(after["worker/tls.crt"]).verify_directly_issued_by(ca)
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "ca.key", *sorted(ROLES)]  # no temporary left


def test_keys_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        assert _certs(tmp_path / "pki") == 0
    finally:
        os.umask(old)
    for name in FILES:
        mode = stat.S_IMODE((tmp_path / "pki" / name).stat().st_mode)
        assert mode == (0o600 if name.endswith(".key") else 0o644), (name, oct(mode))
    assert stat.S_IMODE((tmp_path / "pki").stat().st_mode) == 0o700


@pytest.mark.parametrize("where", ["out", "role"])
def test_a_folder_that_is_a_link_is_refused(tmp_path, capsys, where):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "pki"
    if where == "out":
        out.symlink_to(elsewhere)
        shown = out
    else:
        out.mkdir()
        (out / "frontend").symlink_to(elsewhere)
        shown = out / "frontend"
    assert _certs(out, "--force") == 2
    assert f"{str(shown)!r} is a symbolic link" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user takes root")
def test_a_folder_of_another_user_is_refused(tmp_path, capsys):
    out = tmp_path / "pki"
    out.mkdir()
    os.chown(out, 65534, 65534)
    assert _certs(out) == 2
    assert "belongs to user 65534" in capsys.readouterr().err
    assert list(out.iterdir()) == []


# --- a CA that outlives its leaves, and leaves renewed under it --------------------------------


def _cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _days(cert: x509.Certificate) -> float:
    return (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400


def test_the_ca_outlives_the_leaves_by_default(tmp_path, capsys):
    out = tmp_path / "pki"
    assert main(["certs", "--out", str(out), "--days", "30"]) == 0
    ca = _cert(out / "ca.crt")
    assert round(_days(ca)) == CA_DAYS
    for role in ROLES:
        leaf = _cert(out / role / "tls.crt")
        assert round(_days(leaf)) == 30
        leaf.verify_directly_issued_by(ca)
    assert "--renew" in capsys.readouterr().out


def test_ca_days_sets_the_cas_validity_and_may_equal_days(tmp_path):
    assert main(["certs", "--out", str(tmp_path / "a"), "--days", "30", "--ca-days", "400"]) == 0
    assert round(_days(_cert(tmp_path / "a" / "ca.crt"))) == 400
    assert main(["certs", "--out", str(tmp_path / "b"), "--days", "30", "--ca-days", "30"]) == 0
    assert _cert(tmp_path / "b" / "ca.crt").not_valid_after_utc == _cert(tmp_path / "b" / "worker" / "tls.crt").not_valid_after_utc


def test_leaves_longer_than_the_default_ca_keep_a_ca_as_long(tmp_path):
    """`--days 5000` worked before --ca-days existed: the CA then lasts as long as the leaves."""
    assert main(["certs", "--out", str(tmp_path), "--days", "5000"]) == 0
    assert round(_days(_cert(tmp_path / "ca.crt"))) == 5000


def test_a_ca_shorter_than_its_leaves_is_refused_naming_both(tmp_path, capsys):
    assert main(["certs", "--out", str(tmp_path / "pki"), "--days", "90", "--ca-days", "30"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--ca-days 30" in err and "--days 90" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "pki").exists()


def test_renew_keeps_the_ca_and_replaces_the_leaves(tmp_path, capsys):
    out = tmp_path / "pki"
    assert _certs(out) == 0
    before = {name: (out / name).read_bytes() for name in FILES}
    assert main(["certs", "--out", str(out), "--days", "60", "--renew"]) == 0
    assert "kept" in capsys.readouterr().out
    after = {name: (out / name).read_bytes() for name in FILES}
    for name in FILES:
        kept = name.endswith("ca.crt") or name == "ca.key"
        assert (after[name] == before[name]) == kept, name
    ca = _cert(out / "ca.crt")
    for role in ROLES:
        files = TlsFiles.load(out / role)
        leaf = x509.load_pem_x509_certificate(files.cert)
        leaf.verify_directly_issued_by(ca)
        assert round(_days(leaf)) == 60
        assert stat.S_IMODE((out / role / "tls.key").stat().st_mode) == 0o600
        assert stat.S_IMODE((out / role).stat().st_mode) == 0o700
    assert sorted(p.name for p in (out / "worker").iterdir()) == ["ca.crt", "tls.crt", "tls.key"]


def test_renew_signs_with_a_ca_harpagon_did_not_make(tmp_path):
    """An organisation's CA (its own name, an RSA key) in DIR: the leaves name it as their issuer."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Example CA")])
    now = datetime.datetime.now(datetime.UTC)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=100))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(key, hashes.SHA256()))
    out = tmp_path / "pki"
    out.mkdir(mode=0o700)
    (out / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (out / "ca.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    assert main(["certs", "--out", str(out), "--days", "30", "--renew"]) == 0
    leaf = _cert(out / "frontend" / "tls.crt")
    assert leaf.issuer == name
    leaf.verify_directly_issued_by(ca)


@pytest.mark.parametrize(("flags", "said"), [
    (["--ca-days", "4000"], "--ca-days 4000: --renew keeps the CA"),
    (["--days", "400"], "--days 400: the certificates would outlive the CA"),
])
def test_renew_refuses_what_cannot_hold_and_changes_nothing(tmp_path, capsys, flags, said):
    out = tmp_path / "pki"
    assert main(["certs", "--out", str(out), "--days", "30", "--ca-days", "365"]) == 0
    before = {name: (out / name).read_bytes() for name in FILES}
    assert main(["certs", "--out", str(out), "--renew", *flags]) == 2
    assert said in capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in FILES} == before


def test_renew_needs_a_ca_and_its_key(tmp_path, capsys):
    assert main(["certs", "--out", str(tmp_path / "none"), "--renew"]) == 2
    assert "does not exist; make a CA first" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
    out = tmp_path / "pki"
    assert _certs(out) == 0
    other = tmp_path / "other"
    assert _certs(other) == 0
    (out / "ca.key").write_bytes((other / "ca.key").read_bytes())
    assert main(["certs", "--out", str(out), "--renew"]) == 2
    assert f"{out / 'ca.key'} is not the key of {out / 'ca.crt'}" in capsys.readouterr().err
    (out / "ca.crt").write_bytes((out / "worker" / "tls.crt").read_bytes())
    assert main(["certs", "--out", str(out), "--renew"]) == 2
    assert "is not a CA certificate" in capsys.readouterr().err
    (out / "ca.key").unlink()
    assert main(["certs", "--out", str(out), "--renew"]) == 2
    assert f"cannot read {out / 'ca.key'}" in capsys.readouterr().err


def test_renew_reads_no_ca_key_through_a_link_and_replaces_leaf_links(tmp_path, victim, capsys):
    out = tmp_path / "pki"
    assert _certs(out) == 0
    (out / "worker" / "tls.key").unlink()
    (out / "worker" / "tls.key").symlink_to(victim)
    assert main(["certs", "--out", str(out), "--renew"]) == 0
    assert victim.read_text() == "precious\n"
    assert not (out / "worker" / "tls.key").is_symlink()
    key = out / "ca.key"
    key.rename(tmp_path / "real.key")
    key.symlink_to(tmp_path / "real.key")
    assert main(["certs", "--out", str(out), "--renew"]) == 2
    assert f"cannot read {key}" in capsys.readouterr().err
