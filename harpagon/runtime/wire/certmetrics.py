"""When a component's certificates expire, as Prometheus gauges, so that an expiry is alerted on
before handshakes fail.

Two views, because a component loads its TLS files once, at start:

- `harpagon_tls_certificate_expiry_timestamp_seconds{role, cert}`: the files of its `--tls-dir` as
  they are at scrape time, so a rotated Secret (cert-manager's renewal, `harpagon certs --renew`)
  shows at once;
- `harpagon_tls_loaded_certificate_expiry_timestamp_seconds{role, cert}`: what it loaded at start
  and serves with until it restarts. The two differ while a rotation waits for a restart.

`cert` is `leaf` (tls.crt) or `ca` (ca.crt; a bundle counts as its soonest certificate). Files are
parsed again only when they change (their inode, mtime or size): a Secret volume swaps a symbolic
link on update, so the inode changes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from harpagon.runtime.wire.tls import Role, TlsFiles, not_after

log = logging.getLogger("harpagon.tls")

EXPIRY = "harpagon_tls_certificate_expiry_timestamp_seconds"
LOADED = "harpagon_tls_loaded_certificate_expiry_timestamp_seconds"
#: The file each `cert` label reads, and whether a bundle counts as its soonest certificate.
FILES = {"leaf": ("tls.crt", False), "ca": ("ca.crt", True)}


class CertificateExpiry(Collector):
    """The gauges of one component's TLS directory (read at each scrape) and of what it loaded."""

    def __init__(self, role: Role, directory: str | os.PathLike, loaded: TlsFiles | None = None):
        self.role = role
        self.directory = Path(directory)
        self._loaded: dict[str, float] = {}
        if loaded is not None:
            try:
                self._loaded = loaded.expiry()
            except ValueError as exc:  # the handshake will say so; the metric need not stop the start
                log.warning("%s: no certificate expiry for %s: %s", self.directory, role, exc)
        self._cache: dict[str, tuple[tuple[int, ...], float | None]] = {}
        self._lock = threading.Lock()  # the metrics server scrapes on several threads

    def _read(self, cert: str) -> float | None:
        """The file's not-after (None: missing or not a certificate; that sample is left out, so
        `absent()` alerts on it)."""
        name, earliest = FILES[cert]
        path = self.directory / name
        try:
            st = path.stat()
        except OSError:
            return None
        stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._cache.get(cert)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            value: float | None = not_after(path.read_bytes(), earliest=earliest)
        except (OSError, ValueError) as exc:
            log.warning("%s: no certificate expiry for %s: %s", path, self.role, exc)
            value = None
        self._cache[cert] = (stamp, value)
        return value

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (GaugeMetricFamily(EXPIRY, "When the certificate in the TLS directory expires (Unix seconds), "
                                  "read at scrape time", labels=["role", "cert"]),
                GaugeMetricFamily(LOADED, "When the certificate this process loaded at start, and serves with "
                                  "until it restarts, expires (Unix seconds)", labels=["role", "cert"]))

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        files, loaded = self._families()
        with self._lock:
            for cert in FILES:
                value = self._read(cert)
                if value is not None:
                    files.add_metric([self.role, cert], value)
        for cert, value in self._loaded.items():
            loaded.add_metric([self.role, cert], value)
        yield files
        yield loaded


def watch_certificates(registry: CollectorRegistry, role: Role, tls: TlsFiles | None) -> CertificateExpiry | None:
    """Export the expiry of `tls` on `registry` (nothing without TLS, or TLS not read from a folder)."""
    if tls is None or tls.directory is None:
        return None
    collector = CertificateExpiry(role, tls.directory, tls)
    registry.register(collector)
    return collector
