"""Where the suite's processes listen: a network namespace per component (separate hosts, so that a
partition is a pair of blackhole routes), or 127.0.0.1 where namespaces cannot be made; and the
reaping of namespaces a killed run left behind."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from harpagon.bench.faults.processes import log, pid_alive, pid_namespace
from harpagon.runtime.lifecycle import free_port


class Loopback:
    mode = "loopback"
    note = ("Every process listens on 127.0.0.1 (no network namespaces: not root, no `ip`, or `--loopback`); "
            "the partition scenario is skipped.")

    def __init__(self, roles: Sequence[str]):
        self.ports = {r: free_port() for r in roles}
        self.ports.update({f"{r}-{what}": free_port() for r in roles for what in ("metrics", "health")})

    def host(self, role: str) -> str:
        return "127.0.0.1"

    def port(self, role: str, default: int) -> int:
        return self.ports[role]

    def prefix(self, role: str) -> list[str]:
        return []

    def partition(self, a: str, b: str) -> None:
        raise RuntimeError("no partition on loopback")

    heal = partition

    def close(self) -> None:
        pass


#: The network namespaces this suite makes: hp-<PID namespace>-<PID of the suite>-<token>-<role>.
NS_NAME_RE = re.compile(r"hp-(\d+)-(\d+)-[0-9a-f]{6}-(?:br|ctl|fe|cli|w\d+)")


def stale_namespaces(names: Iterable[str], pid_ns: str, alive: Callable[[int], bool]) -> list[str]:
    """The namespaces among `names` that a run of this suite made and that no running suite owns: named
    by NS_NAME_RE in this PID namespace, with the suite's PID dead. Anything else (another naming, another
    PID namespace, whose PIDs this process cannot check) is left alone."""
    out = []
    for name in names:
        m = NS_NAME_RE.fullmatch(name)
        if m and m.group(1) == pid_ns and not alive(int(m.group(2))):
            out.append(name)
    return out


def _kill_and_delete_namespace(ns: str) -> None:
    """SIGKILL whatever runs in the namespace `ns` (a run of this suite's processes), then delete it."""
    pids = subprocess.run(["ip", "netns", "pids", ns], check=False, capture_output=True, text=True,
                          timeout=10).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=15)


def reap_stale_namespaces() -> list[str]:
    """Delete the namespaces an earlier run left behind (killed with SIGKILL, its `finally` never ran):
    only stale_namespaces() of `ip netns list`; the ones deleted."""
    try:
        listed = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True,
                                timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    names = [line.split()[0] for line in listed.splitlines() if line.strip()]
    stale = stale_namespaces(names, pid_namespace(), pid_alive)
    for ns in stale:
        try:
            _kill_and_delete_namespace(ns)
        except (OSError, subprocess.SubprocessError) as exc:
            log(f"could not delete the stale namespace {ns}: {exc}")
    if stale:
        log(f"deleted {len(stale)} network namespaces a dead run left: {', '.join(stale)}")
    return stale


class Namespaces:
    """One network namespace per role, each with `eth0` (10.A.B.k/24) on a veth pair whose other end is
    on a bridge in a namespace of its own. Names (NS_NAME_RE) carry this process's PID namespace and PID,
    so that a later run can tell a dead run's leftovers (reap_stale_namespaces), and a random token, so
    runs cannot collide; close() kills what still runs in them and deletes them (which deletes their
    veths)."""

    mode = "netns"
    note = ("Each process runs in its own network namespace (`ip netns`), a host of its own on a 10.x "
            "subnet joined by veth pairs to a bridge in another namespace; the partition is a blackhole route "
            "each way between the controller's namespace and one worker's.")

    def __init__(self, roles: Sequence[str]):
        self.token = f"{pid_namespace()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.created: list[str] = []
        self.ips: dict[str, str] = {}
        net = f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}"
        bridge = self._ns("br")
        try:
            self._add(bridge)
            self._ip("-n", bridge, "link", "set", "lo", "up")
            self._ip("-n", bridge, "link", "add", "br0", "type", "bridge")
            self._ip("-n", bridge, "link", "set", "br0", "up")
            for k, role in enumerate(roles):
                self._join(role, k, bridge, net)
        except BaseException:
            self.close()
            raise

    def _join(self, role: str, k: int, bridge: str, net: str) -> None:
        """The namespace of `role`, its `eth0` at 10.x.y.(k + 2) on a veth to the bridge."""
        ns = self._ns(role)
        self._add(ns)
        peer = f"v{k}"
        self._ip("link", "add", "name", "eth0", "netns", ns, "type", "veth", "peer", "name", peer, "netns", bridge)
        self._ip("-n", bridge, "link", "set", peer, "master", "br0")
        self._ip("-n", bridge, "link", "set", peer, "up")
        self.ips[role] = f"{net}.{k + 2}"
        self._ip("-n", ns, "addr", "add", f"{self.ips[role]}/24", "dev", "eth0")
        self._ip("-n", ns, "link", "set", "eth0", "up")
        self._ip("-n", ns, "link", "set", "lo", "up")

    def _ns(self, role: str) -> str:
        return f"hp-{self.token}-{role}"

    def _add(self, ns: str) -> None:
        self._ip("netns", "add", ns)
        self.created.append(ns)

    @staticmethod
    def _ip(*args: str) -> None:
        done = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=15)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")

    def host(self, role: str) -> str:
        return self.ips[role]

    def port(self, role: str, default: int) -> int:
        return default

    def prefix(self, role: str) -> list[str]:
        return ["ip", "netns", "exec", self._ns(role)]

    def partition(self, a: str, b: str) -> None:
        self._ip("-n", self._ns(a), "route", "add", "blackhole", f"{self.ips[b]}/32")
        self._ip("-n", self._ns(b), "route", "add", "blackhole", f"{self.ips[a]}/32")

    def heal(self, a: str, b: str) -> None:
        for x, y in ((a, b), (b, a)):
            try:
                self._ip("-n", self._ns(x), "route", "del", "blackhole", f"{self.ips[y]}/32")
            except RuntimeError:
                pass

    def close(self) -> None:
        for ns in reversed(self.created):
            try:  # only processes this run started live in its namespaces
                _kill_and_delete_namespace(ns)
            except (OSError, subprocess.SubprocessError):
                pass
        self.created = []


def make_network(roles: Sequence[str], loopback: bool) -> tuple[Any, str]:
    """Namespaces where possible, else loopback; and why loopback, if it is."""
    if loopback:
        return Loopback(roles), "asked for (--loopback)"
    if os.geteuid() != 0:
        return Loopback(roles), "not root: cannot make network namespaces"
    if shutil.which("ip") is None:
        return Loopback(roles), "no `ip` command"
    reap_stale_namespaces()
    try:
        return Namespaces(roles), ""
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return Loopback(roles), f"network namespaces failed: {exc}"
