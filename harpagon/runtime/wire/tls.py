"""Mutual TLS for the control plane: certificates, credentials and who may call what.

Every component holds a certificate whose identity is its role (`harpagon-controller`,
`harpagon-frontend`, `harpagon-worker`: subject CN and DNS SAN), signed by the deployment's CA.
Peers verify each other against that CA and dial with the expected role as the TLS target name,
so a pod's address need not be known when its certificate is made. Servers then authorise each
call by the caller's role (:data:`POLICY`): only the controller configures workers, only workers
register and heartbeat, only frontends watch routes, report rates and send batches.

A TLS directory holds `ca.crt`, `tls.crt` and `tls.key`: the keys of a Kubernetes
`kubernetes.io/tls` Secret plus the CA, so a Secret mounts as one (cert-manager writes exactly these).
The CA outlives the certificates it signs (`harpagon certs --ca-days`), so leaves can be re-issued from
it (`--renew`) without handing every peer a new CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import grpc

Role = Literal["controller", "frontend", "worker"]
ROLES: tuple[Role, ...] = ("controller", "frontend", "worker")

#: Which roles may call each method; a method not listed is refused to every authenticated peer.
POLICY: dict[str, frozenset[Role]] = {
    "/harpagon.v1.Controller/Register": frozenset({"worker"}),
    "/harpagon.v1.Controller/Heartbeat": frozenset({"worker"}),
    "/harpagon.v1.Controller/Leave": frozenset({"worker"}),
    "/harpagon.v1.Controller/WatchRoutes": frozenset({"frontend"}),
    "/harpagon.v1.Controller/ReportRates": frozenset({"frontend"}),
    "/harpagon.v1.Worker/ApplyConfig": frozenset({"controller"}),
    "/harpagon.v1.Worker/Infer": frozenset({"frontend"}),
    "/harpagon.v1.Worker/Health": frozenset(ROLES),
    "/harpagon.v1.Worker/Stats": frozenset({"controller", "frontend"}),
    "/grpc.health.v1.Health/Check": frozenset(ROLES),
    # Health/Watch holds a stream open (a thread, on a worker): probes use Check, or the plaintext
    # health port, which serves Watch without tying a thread
}


def identity(role: Role) -> str:
    """The name a role's certificate carries and its peers verify."""
    return f"harpagon-{role}"


@dataclass(frozen=True)
class TlsFiles:
    """One component's credentials: the CA that signs every peer, its certificate and its key, as
    loaded at start (a component serves with these until it restarts); `directory` is where they were
    read from, which the expiry metric reads again at each scrape."""

    ca: bytes
    cert: bytes
    key: bytes
    directory: Path | None = None

    @staticmethod
    def load(directory: str | os.PathLike, need_ca: bool = True) -> TlsFiles:
        """The files of a TLS directory (`need_ca=False`: a server that asks clients for no certificate)."""
        d = Path(directory)
        parts = {}
        for name in ("ca.crt", "tls.crt", "tls.key"):
            try:
                parts[name] = (d / name).read_bytes()
            except OSError as exc:
                if name == "ca.crt" and not need_ca:
                    parts[name] = b""
                    continue
                raise ValueError(f"--tls-dir {str(d)!r}: cannot read {name}: {exc.strerror or exc}") from None
        return TlsFiles(parts["ca.crt"], parts["tls.crt"], parts["tls.key"], d)

    def expiry(self) -> dict[str, float]:
        """When the loaded certificate and CA expire (:func:`expiry_of`)."""
        return expiry_of(self.cert, self.ca)

    def server_credentials(self, require_client_auth: bool = True) -> grpc.ServerCredentials:
        """Peers must present a certificate signed by the CA (mutual TLS)."""
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca or None,
                                           require_client_auth=require_client_auth)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)


def channel_options(peer: Role) -> list[tuple[str, str]]:
    """Verify the server as `peer`, whatever address it was dialled at."""
    return [("grpc.ssl_target_name_override", identity(peer))]


def peer_role(context: grpc.ServicerContext | grpc.aio.ServicerContext) -> Role | None:
    """The authenticated caller's role, from its certificate (None: no certificate, or not a role)."""
    auth = context.auth_context() or {}
    for name in auth.get("x509_common_name", ()):
        text = name.decode() if isinstance(name, bytes) else str(name)
        for role in ROLES:
            if text == identity(role):
                return role
    return None


def denial(method: str, role: Role | None) -> str | None:
    """Why a caller with `role` may not call `method` (None: it may)."""
    allowed = POLICY.get(method, frozenset())
    if role in allowed:
        return None
    who = f"a {role}" if role else "a caller without a Harpagon certificate"
    return f"{method}: {who} may not call this (allowed: {', '.join(sorted(allowed)) or 'nobody'})"


class _Authorizer:
    """Wraps each handler so the call is refused with PERMISSION_DENIED unless the caller's role may
    make it (:data:`POLICY`). The check needs the call's auth context, which only the servicer
    context has, so it runs inside the handler, before the method."""

    def _check_sync(self, method: str, behaviour):
        def run(request, context):
            reason = denial(method, peer_role(context))
            if reason:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
            return behaviour(request, context)
        return run

    def _check_async(self, method: str, behaviour, streaming: bool):
        if streaming:
            async def run_stream(request, context):
                reason = denial(method, peer_role(context))
                if reason:
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
                async for reply in behaviour(request, context):
                    yield reply
            return run_stream

        async def run(request, context):
            reason = denial(method, peer_role(context))
            if reason:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
            return await behaviour(request, context)
        return run

    def wrap(self, handler: grpc.RpcMethodHandler | None, method: str, asynchronous: bool):
        if handler is None:
            return None
        if handler.request_streaming:  # no control-plane method streams requests; refuse rather than guess
            raise ValueError(f"{method}: request streaming is not authorised by this interceptor")
        kind = "unary_stream" if handler.response_streaming else "unary_unary"
        behaviour = getattr(handler, kind)
        wrapped = (self._check_async(method, behaviour, handler.response_streaming) if asynchronous
                   else self._check_sync(method, behaviour))
        make = grpc.unary_stream_rpc_method_handler if handler.response_streaming else grpc.unary_unary_rpc_method_handler
        return make(wrapped, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)


class SyncAuthorizer(grpc.ServerInterceptor, _Authorizer):
    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        return self.wrap(continuation(handler_call_details), method, asynchronous=False)


class AsyncAuthorizer(grpc.aio.ServerInterceptor, _Authorizer):
    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        return self.wrap(await continuation(handler_call_details), method, asynchronous=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_tls_off_loopback(host: str, tls: TlsFiles | None, insecure: bool) -> None:
    """Binding beyond this host without TLS exposes the control plane: it takes `--insecure`."""
    if tls is None and not insecure and not is_loopback(host):
        raise ValueError(f"--host {host}: listening beyond loopback without TLS exposes the control plane "
                         f"(any peer could configure workers or register as one); give --tls-dir DIR "
                         f"(see `harpagon certs`) or say --insecure")


# --- expiry ---------------------------------------------------------------------------------


def not_after(pem: bytes, earliest: bool = False) -> float:
    """When the first certificate of `pem` expires, in Unix seconds (`earliest`: the soonest of all
    the certificates it holds, for a CA bundle). ValueError when it holds none."""
    from cryptography import x509

    certs = x509.load_pem_x509_certificates(pem)  # ValueError on no certificate
    chosen = certs if earliest else certs[:1]
    return min(c.not_valid_after_utc.timestamp() for c in chosen)


def expiry_of(cert: bytes, ca: bytes) -> dict[str, float]:
    """{"leaf": when the certificate a component serves with expires, "ca": when its CA does} in Unix
    seconds. A CA bundle counts as its soonest certificate: peers whose leaves it signed fail then.
    No "ca" without a CA (a server that asks clients for no certificate)."""
    out = {"leaf": not_after(cert)}
    if ca:
        out["ca"] = not_after(ca, earliest=True)
    return out


def certificate_expiry(directory: str | os.PathLike) -> dict[str, float]:
    """:func:`expiry_of` the files of a TLS directory as they are now (a rotated Secret shows at once,
    before the component restarts onto it). OSError or ValueError when a file is missing or holds no
    certificate."""
    d = Path(directory)
    ca = d / "ca.crt"
    return expiry_of((d / "tls.crt").read_bytes(), ca.read_bytes() if ca.exists() else b"")


# --- certificates ---------------------------------------------------------------------------


def make_certs(out: str | os.PathLike, hosts: Iterable[str] = (), days: int = 365,
               roles: Iterable[Role] = ROLES, force: bool = False, ca_days: int | None = None,
               renew: bool = False) -> Path:
    """A CA and one certificate per role under `out` (`ca.crt`, `ca.key`, `<role>/{ca,tls}.crt`,
    `<role>/tls.key`); `hosts` are extra DNS names or IP addresses every certificate carries.

    The leaves are valid for `days`, the CA for `ca_days` (default: `days`, for throwaway CAs), which
    may not be shorter. `renew` keeps the CA `out` holds and writes new leaves signed by it (replacing
    the old ones): leaves rotate without handing every peer a new CA.

    Nothing is written through a symbolic link (a folder where keys go may be shared with other
    users): `out` and the role folders must be real folders of this user, and each file is created
    anew (O_EXCL, O_NOFOLLOW; keys 0600). Existing files are refused unless `force` (or, for the
    leaves, `renew`), which writes each beside its old one and renames it over it, so a planted link
    is replaced, not followed."""
    if days < 1:
        raise ValueError(f"--days must be >= 1, got {days}")
    if ca_days is not None and renew:
        raise ValueError(f"--ca-days {ca_days}: --renew keeps the CA as it is; give one or the other")
    if ca_days is not None and ca_days < days:
        raise ValueError(f"--ca-days {ca_days} is shorter than --days {days}: the CA must outlive the "
                         "certificates it signs")
    roles = tuple(roles)
    root = Path(out)
    # one instant, in whole seconds (as certificates hold it): a CA of --ca-days == --days ends with its leaves
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    if renew and not os.path.lexists(root):
        raise ValueError(f"--renew: {str(root)!r} does not exist; make a CA first (without --renew)")
    root.parent.mkdir(parents=True, exist_ok=True)
    folders = {"": _own_folder(root, None, str(root))}
    try:
        for role in roles:
            folders[role] = _own_folder(Path(role), folders[""], str(root / role))
        if renew:
            ca = _load_ca(folders[""], root)
        else:
            names = [("", "ca.crt"), ("", "ca.key")] + [(r, n) for r in roles
                                                        for n in ("ca.crt", "tls.crt", "tls.key")]
            existing = [str(root / r / n) for r, n in names if _exists(n, folders[r])]
            if existing and not force:
                more = f" and {len(existing) - 2} more" if len(existing) > 2 else ""
                raise ValueError(f"--out {str(root)!r}: {', '.join(existing[:2])}{more} exist already; give "
                                 "--force to replace them, or --renew to keep the CA and replace the rest")
            ca = _new_ca(folders[""], days if ca_days is None else ca_days, now)
        _issue_leaves(folders, roles, hosts, days, ca, root, now)
    finally:
        for fd in folders.values():
            os.close(fd)
    return root


_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _own_folder(path: Path, parent: int | None, shown: str) -> int:
    """An open descriptor of folder `path` (relative to the folder `parent`), created 0700 when
    missing; refused when it is a symbolic link, not a folder, or another user's."""
    try:
        os.mkdir(path, 0o700, dir_fd=parent)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, _NOFOLLOW_DIR, dir_fd=parent)
    except OSError as exc:
        if os.path.islink(shown):
            raise ValueError(f"--out: {shown!r} is a symbolic link; give a real folder") from None
        raise ValueError(f"--out: {shown!r} is not a folder ({exc.strerror or exc})") from None
    owner = os.fstat(fd).st_uid
    if owner != os.geteuid():
        os.close(fd)
        raise ValueError(f"--out: {shown!r} belongs to user {owner}, not to this user ({os.geteuid()})")
    return fd


def _exists(name: str, folder: int) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _write_new(folder: int, name: str, data: bytes, secret: bool) -> None:
    """`name` in `folder`, created anew under a temporary name and renamed over any old one."""
    temp = f".{name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o600 if secret else 0o644, dir_fd=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        os.unlink(temp, dir_fd=folder)
        raise


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class _Ca:
    """A CA that signs leaves: its certificate, its key and ca.crt as the peers get it."""

    cert: object  # cryptography.x509.Certificate
    key: object  # its private key
    pem: bytes


def _new_ca(folder: int, days: int, now: datetime.datetime) -> _Ca:
    """A new CA valid for `days` from `now`, written into the open `folder` as ca.crt and ca.key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "harpagon-ca")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    _write_new(folder, "ca.crt", pem, secret=False)
    _write_new(folder, "ca.key", _pem_key(key), secret=True)
    return _Ca(cert, key, pem)


def _read_own(folder: int, name: str) -> bytes:
    """A file of `folder`, not through a symbolic link."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _load_ca(folder: int, root: Path) -> _Ca:
    """The CA of `root` (ca.crt, ca.key), checked: a CA certificate, its key, still valid."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    parts = {}
    for name in ("ca.crt", "ca.key"):
        try:
            parts[name] = _read_own(folder, name)
        except OSError as exc:
            raise ValueError(f"--renew: cannot read {root / name} ({exc.strerror or exc}); make a CA first "
                             "(without --renew)") from None
    try:
        cert = x509.load_pem_x509_certificates(parts["ca.crt"])[0]
    except ValueError as exc:
        raise ValueError(f"--renew: {root / 'ca.crt'} holds no certificate ({exc})") from None
    try:
        key = serialization.load_pem_private_key(parts["ca.key"], password=None)
    except (TypeError, ValueError) as exc:  # TypeError: an encrypted key
        raise ValueError(f"--renew: {root / 'ca.key'} is not an unencrypted private key ({exc})") from None
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ValueError(f"--renew: {root / 'ca.crt'} ({cert.subject.rfc4514_string()}) is not a CA certificate")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise ValueError(f"--renew: {root / 'ca.key'} is not the key of {root / 'ca.crt'}")
    return _Ca(cert, key, parts["ca.crt"])


def _issue_leaves(folders: dict[str, int], roles: tuple[Role, ...], hosts: Iterable[str], days: int, ca: _Ca,
                  root: Path, now: datetime.datetime) -> None:
    """One certificate per role signed by `ca`, valid for `days` from `now`, written with the CA's certificate into the role's
    open folder; refused when it would outlive the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_end = ca.cert.not_valid_after_utc
    if end > ca_end:
        left = (ca_end - now).days
        raise ValueError(f"--days {days}: the certificates would outlive the CA ({root / 'ca.crt'} expires "
                         f"{ca_end:%Y-%m-%d}); give --days {left} or less, or make a new CA (without --renew)"
                         if left >= 1 else
                         f"--renew: the CA {root / 'ca.crt'} expires {ca_end:%Y-%m-%d %H:%M} UTC; make a new CA "
                         "(without --renew)")
    digest = None if isinstance(ca.key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else hashes.SHA256()

    extra: list[x509.GeneralName] = []
    for h in hosts:
        try:
            extra.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            extra.append(x509.DNSName(h))
    for role in roles:
        key = ec.generate_private_key(ec.SECP256R1())
        name = identity(role)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name), *extra]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca.key, digest))
        _write_new(folders[role], "ca.crt", ca.pem, secret=False)
        _write_new(folders[role], "tls.crt", cert.public_bytes(serialization.Encoding.PEM), secret=False)
        _write_new(folders[role], "tls.key", _pem_key(key), secret=True)
