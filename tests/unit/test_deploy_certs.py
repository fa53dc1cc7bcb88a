"""deploy/overlays/cert-manager, checked offline: it renders with kustomize, its Issuers and Certificates
validate against cert-manager's published CRD schemas (tests/data/cert-manager/, closed to undeclared
fields), they chain bootstrap -> CA -> one leaf per role into the Secrets the stacks mount, and a leaf
issued as its Certificate asks is accepted by Harpagon's TLS code as that role (a real handshake and
authorisation on 127.0.0.1, in this process).

Helpers and constants come from tests/unit/test_deploy.py; a check whose tool is missing is skipped.
"""

from __future__ import annotations

import copy
import datetime
import re
from pathlib import Path

import grpc
import pytest
import yaml

from harpagon.runtime.wire.tls import ROLES, TlsFiles, certificate_expiry, identity, peer_role
from tests.unit.test_deploy import (
    DOCS,
    K8S_VERSION,
    NO_SCHEMAS,
    OPERATOR_SECRETS,
    ROOT,
    VARIANTS,
    _containers,
    _kustomization_files,
    _mounts,
    _opt,
    _rendered,
    _role,
    crd_validator,
    render,
)

OVERLAY = ROOT / "deploy" / "overlays" / "cert-manager"
CERT_MANAGER = ROOT / "tests" / "data" / "cert-manager"
#: The custom resources of the overlay -> cert-manager's CRD (v1.21.1) they are validated against.
CRDS = {("cert-manager.io/v1", "Certificate"): CERT_MANAGER / "cert-manager.io_certificates.yaml",
        ("cert-manager.io/v1", "Issuer"): CERT_MANAGER / "cert-manager.io_issuers.yaml"}
#: What Harpagon's peers need of a leaf: it is a server and a client of the control plane.
USAGES = {"server auth", "client auth"}
HOUR = datetime.timedelta(hours=1)


# --- helpers --------------------------------------------------------------------------------


def _overlay() -> tuple[dict, ...]:
    return render(OVERLAY)


def _validator(api_version: str, kind: str):
    """The closed schema of cert-manager's CRD for `kind` (an undeclared field fails, as the API server's
    strict field validation refuses it)."""
    return crd_validator(CRDS[(api_version, kind)], api_version, kind)


def _go_duration(text: str) -> datetime.timedelta:
    """A Go time.ParseDuration string (what cert-manager's durations are), in the units they use."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"{text!r} is not a Go duration"
    return datetime.timedelta(seconds=sum(float(n) * units[u] for n, u in parts))


def _by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in _overlay() if d["kind"] == kind}


def _issuers() -> tuple[dict, dict, dict[str, dict]]:
    """(the self-signed bootstrap Issuer, the CA Certificate, the CA Issuer) and the leaves by role."""
    issuers, certificates = _by_kind("Issuer"), _by_kind("Certificate")
    (ca_cert,) = [c for c in certificates.values() if c["spec"].get("isCA")]
    bootstrap = issuers[ca_cert["spec"]["issuerRef"]["name"]]
    (ca_issuer,) = [i for i in issuers.values() if "ca" in i["spec"]]
    leaves = {}
    for c in certificates.values():
        if c is not ca_cert:
            role = next(r for r in ROLES if c["spec"]["secretName"] == OPERATOR_SECRETS[r])
            assert role not in leaves, f"two Certificates write {OPERATOR_SECRETS[role]}"
            leaves[role] = c
    return bootstrap, ca_cert, ca_issuer, leaves


# --- the manifests --------------------------------------------------------------------------


def test_every_file_parses_and_native_resources_validate_against_the_kubernetes_schemas():
    kv = pytest.importorskip("kubernetes_validate", reason=NO_SCHEMAS)
    files = _kustomization_files(OVERLAY)
    assert files
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if (doc["apiVersion"], doc["kind"]) in CRDS:
                continue  # test_custom_resources_validate_against_cert_managers_crds
            assert "cert-manager.io" not in doc["apiVersion"], f"{f}: {doc['kind']}: no CRD schema vendored"
            try:
                kv.validate(doc, K8S_VERSION, strict=True)
            except kv.ValidationError as exc:
                pytest.fail(f"{f.relative_to(ROOT)}: {doc['kind']} {doc['metadata']['name']}: {exc}")


def test_custom_resources_validate_against_cert_managers_crds():
    docs = _overlay()
    assert {(d["apiVersion"], d["kind"]) for d in docs} == set(CRDS)
    for doc in docs:
        assert doc["metadata"]["namespace"] == "harpagon"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "harpagon"
        validator = _validator(doc["apiVersion"], doc["kind"])
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, f"{doc['kind']} {doc['metadata']['name']}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    # the closed schema refuses what the API server would drop
    leaf = copy.deepcopy(next(d for d in docs if d["kind"] == "Certificate"))
    leaf["spec"]["dnsName"] = leaf["spec"].pop("dnsNames", [])
    assert not _validator(leaf["apiVersion"], "Certificate").is_valid(leaf), "misspelt fields get through"


def test_a_bootstrap_issuer_signs_a_long_lived_ca_whose_issuer_signs_each_role():
    bootstrap, ca_cert, ca_issuer, leaves = _issuers()
    assert bootstrap["spec"] == {"selfSigned": {}}
    assert ca_issuer["spec"]["ca"]["secretName"] == ca_cert["spec"]["secretName"]
    assert ca_cert["spec"]["secretName"] not in OPERATOR_SECRETS.values(), "the CA's key in a pod's Secret"
    # renewing the CA keeps its key, so leaves signed before still verify against the renewed CA
    assert ca_cert["spec"]["privateKey"]["rotationPolicy"] == "Never"
    ca_life, ca_renew = _go_duration(ca_cert["spec"]["duration"]), _go_duration(ca_cert["spec"]["renewBefore"])
    assert set(leaves) == set(ROLES)
    for role, leaf in leaves.items():
        spec = leaf["spec"]
        ref = spec["issuerRef"]
        assert (ref["name"], ref.get("kind", "Issuer"), ref.get("group", "cert-manager.io")) == \
            (ca_issuer["metadata"]["name"], "Issuer", "cert-manager.io"), role
        life, renew = _go_duration(spec["duration"]), _go_duration(spec["renewBefore"])
        # cert-manager's webhook: at least an hour, renewed before it ends
        assert HOUR <= renew < life, f"{role}: renewBefore {spec['renewBefore']} vs duration {spec['duration']}"
        # a restart has days to pick up a renewed leaf; the CA outlives many leaves, and is renewed early
        # enough for every leaf re-issued since to carry the renewed CA before the old one ends
        assert renew >= datetime.timedelta(days=7), role
        assert ca_life >= 10 * life and ca_renew > life, role
        assert spec["privateKey"]["rotationPolicy"] == "Always", f"{role}: a renewal keeps the old key"


def test_each_leaf_carries_its_roles_identity_in_the_secret_its_role_mounts():
    _, _, _, leaves = _issuers()
    for role, leaf in leaves.items():
        spec = leaf["spec"]
        assert spec["secretName"] == OPERATOR_SECRETS[role]
        assert spec["commonName"] == identity(role), f"{role}: peers authorise by the subject CN"
        assert identity(role) in spec["dnsNames"], f"{role}: clients verify the server's DNS SAN"
        assert USAGES <= set(spec["usages"]), f"{role}: usages {spec['usages']}"
        key = spec["privateKey"]
        assert (key["algorithm"], key.get("size")) in {("ECDSA", 256), ("ECDSA", 384), ("RSA", 2048),
                                                       ("RSA", 3072), ("RSA", 4096)}, f"{role}: {key}"
    # the stacks mount exactly these Secrets as each role's --tls-dir
    for variant in VARIANTS:
        for d, spec, c in _containers(_rendered(variant)):
            volume = _mounts(spec, c)[_opt(c, "--tls-dir")]
            assert volume["secret"]["secretName"] == leaves[_role(c)]["spec"]["secretName"], d["metadata"]["name"]


def test_docs_give_the_cert_manager_recipe():
    text = DOCS.read_text()
    for needed in ("## cert-manager", "kubectl apply -k deploy/overlays/cert-manager", "renewBefore",
                   "harpagon_tls_certificate_expiry_timestamp_seconds",
                   "harpagon_tls_loaded_certificate_expiry_timestamp_seconds", "--ca-days", "--renew",
                   "rollout restart"):
        assert needed in text, f"docs/deploy.md does not mention {needed!r}"


# --- a leaf as cert-manager issues it, accepted by Harpagon -----------------------------------


def _private_key(spec: dict):
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = spec.get("privateKey", {})
    if key.get("algorithm", "RSA") == "ECDSA":
        return ec.generate_private_key({256: ec.SECP256R1(), 384: ec.SECP384R1()}[key.get("size", 256)])
    return rsa.generate_private_key(public_exponent=65537, key_size=key.get("size", 2048))


def _usages(spec: dict):
    """The KeyUsage and ExtendedKeyUsage cert-manager puts in a certificate for `usages`."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    usages = set(spec.get("usages") or ["digital signature", "key encipherment"])  # cert-manager's default
    if spec.get("isCA"):
        usages.add("cert sign")
    flags = {f: False for f in ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                                "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")}
    names = {"digital signature": "digital_signature", "key encipherment": "key_encipherment",
             "cert sign": "key_cert_sign", "crl sign": "crl_sign"}
    extended = {"server auth": ExtendedKeyUsageOID.SERVER_AUTH, "client auth": ExtendedKeyUsageOID.CLIENT_AUTH}
    for u in usages:
        if u in names:
            flags[names[u]] = True
        else:
            assert u in extended, f"usage {u!r}: not modelled by this test"
    eku = [extended[u] for u in sorted(usages) if u in extended]
    return x509.KeyUsage(**flags), (x509.ExtendedKeyUsage(eku) if eku else None)


def _issue(spec: dict, signer=None):
    """(certificate, key) as cert-manager's CA (or self-signed) issuer makes them for a Certificate spec."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _private_key(spec)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec["commonName"])])
    issuer_cert, issuer_key = signer or (None, key)
    now = datetime.datetime.now(datetime.UTC)
    ku, eku = _usages(spec)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + _go_duration(spec.get("duration", "2160h")))
               .add_extension(x509.BasicConstraints(ca=bool(spec.get("isCA")), path_length=None), critical=True)
               .add_extension(ku, critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if eku is not None:
        builder = builder.add_extension(eku, critical=False)
    if spec.get("dnsNames"):
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in spec["dnsNames"]]),
                                        critical=False)
    if issuer_cert is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _secret(folder: Path, ca, leaf, key) -> Path:
    """A TLS directory as a cert-manager Secret mounts: ca.crt, tls.crt, tls.key (the key's encoding as asked)."""
    from cryptography.hazmat.primitives import serialization

    folder.mkdir()
    (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.crt").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder


def test_a_leaf_issued_as_the_certificates_ask_is_accepted_as_its_role(tmp_path):
    """A worker serving with its cert-manager leaf, called by the controller's and the frontend's: each
    handshake verifies (the server as harpagon-worker, each client against the CA) and the worker
    authorises each call by the role it reads from the caller's certificate."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from harpagon.runtime.wire.rpc import sync_channel, thread_server

    _, ca_spec, _, leaves = _issuers()
    assert ca_spec["spec"]["privateKey"]["algorithm"] == "ECDSA"
    ca, ca_key = _issue(ca_spec["spec"])
    dirs = {}
    for role, leaf in leaves.items():
        assert leaf["spec"]["privateKey"].get("encoding") == "PKCS8"
        cert, key = _issue(leaf["spec"], (ca, ca_key))
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        dirs[role] = _secret(tmp_path / role, ca, cert, key)
        assert set(certificate_expiry(dirs[role])) == {"leaf", "ca"}

    def who(request, context):
        return (peer_role(context) or "").encode()

    handlers = {m: grpc.unary_unary_rpc_method_handler(who) for m in ("ApplyConfig", "Infer")}
    server, address = thread_server("127.0.0.1", 0, 2, tls=TlsFiles.load(dirs["worker"]))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("harpagon.v1.Worker", handlers),))
    server.start()
    try:
        with sync_channel(address, TlsFiles.load(dirs["controller"]), "worker") as ch:
            assert ch.unary_unary("/harpagon.v1.Worker/ApplyConfig")(b"", timeout=10) == b"controller"
        with sync_channel(address, TlsFiles.load(dirs["frontend"]), "worker") as ch:
            assert ch.unary_unary("/harpagon.v1.Worker/Infer")(b"", timeout=10) == b"frontend"
            with pytest.raises(grpc.RpcError) as refused:
                ch.unary_unary("/harpagon.v1.Worker/ApplyConfig")(b"", timeout=10)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "a frontend may not call this" in refused.value.details()
    finally:
        server.stop(0)
