"""`harpagon certs --out` writes nothing through a symbolic link, and replaces files only when told."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography import x509

from harpagon.cli import main
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
