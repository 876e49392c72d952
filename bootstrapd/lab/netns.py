"""Network-namespace lab: hosts, bridges and veth links built with `ip`, torn down by PID and by name.

Everything lives inside namespaces this module creates: veth pairs are created directly in their
namespaces (`ip -n A link add ... peer ... netns B`), so the host namespace never sees a lab interface.
Addresses are confined to 198.18.0.0/15 (RFC 2544 benchmarking space) by a guard that raises ValueError.
Not thread-safe: one Lab belongs to one thread.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bootstrapd.errors import BootstrapdError

LAB_NET = ipaddress.IPv4Network("198.18.0.0/15")
TERM_GRACE = 2.0  # seconds a process gets between SIGTERM and SIGKILL
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,31}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_-]{1,15}$")  # IFNAMSIZ is 16 including the NUL
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

_open_labs: set[Lab] = set()
_used_prefixes: set[str] = set()


class LabError(BootstrapdError):
    """Tear-down could not remove everything the lab created."""


class CommandError(subprocess.CalledProcessError):
    """A failed command whose message carries its stderr (CalledProcessError's does not)."""

    def __str__(self) -> str:
        return f"{super().__str__()}: {(self.stderr or '').strip()}"


def _run(argv: Sequence[str], *, check: bool = True, timeout: float | None = 30,
         **kw: Any) -> subprocess.CompletedProcess[str]:
    if not {"stdout", "stderr", "capture_output"} & kw.keys():
        kw["capture_output"] = True
    proc = subprocess.run(list(argv), check=False, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


def check_address(addr: str) -> ipaddress.IPv4Interface:
    """Parse "a.b.c.d[/len]"; refuse anything outside 198.18.0.0/15 (network-safety rule)."""
    iface = ipaddress.ip_interface(addr)
    if not isinstance(iface, ipaddress.IPv4Interface) or not iface.network.subnet_of(LAB_NET):
        raise ValueError(f"lab address {addr!r} is outside {LAB_NET}")
    return iface


def check_name(kind: str, value: str, pattern: re.Pattern[str]) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"invalid {kind} {value!r} (must match {pattern.pattern})")
    return value


def list_namespaces() -> list[str]:
    """Names of all network namespaces mounted under /var/run/netns."""
    if shutil.which("ip") is None:
        return []
    out = _run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def leftover_namespaces() -> list[str]:
    """Namespaces that belong to a Lab created by this process and still exist."""
    return [ns for ns in list_namespaces() if ns.split("-", 1)[0] in _used_prefixes]


@functools.cache
def lab_available() -> tuple[bool, str]:
    """Can this process build a lab? (ok, reason) - probes a throwaway namespace with a bridge and veth."""
    if os.geteuid() != 0:
        return False, "network-namespace lab needs root"
    if shutil.which("ip") is None:
        return False, "iproute2 `ip` not found"
    probe = f"bsd{os.urandom(3).hex()}-probe"
    steps = [["ip", "netns", "add", probe],
             ["ip", "-n", probe, "link", "add", "br0", "type", "bridge"],
             ["ip", "-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1"]]
    try:
        for argv in steps:
            proc = _run(argv, check=False, timeout=10)
            if proc.returncode != 0:
                return False, f"`{' '.join(argv)}` failed: {proc.stderr.strip()}"
    finally:
        _run(["ip", "netns", "del", probe], check=False, timeout=10)
    return True, ""


@dataclass(frozen=True)
class Segment:
    """A Linux bridge `name` inside `hub`'s namespace; `addr` is the hub's address on it."""

    name: str
    hub: Host
    addr: str | None


@dataclass(frozen=True)
class Port:
    """One end of a veth pair in `host` (ifname, mac); the other end is `peer_ifname` in `peer`."""

    host: Host
    ifname: str
    mac: str
    peer: Host
    peer_ifname: str


class Host:
    """One network namespace. Create through Lab.host()."""

    def __init__(self, lab: Lab, name: str, netns: str) -> None:
        self.lab = lab
        self.name = name
        self.netns = netns

    def __repr__(self) -> str:
        return f"Host({self.name!r}, netns={self.netns!r})"

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`ip -n <netns> args...` (runs in the host namespace, acts on this one)."""
        return _run(["ip", "-n", self.netns, *args], check=check)

    def run(self, argv: Sequence[str], check: bool = True, timeout: float | None = 30,
            **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run argv inside the namespace and wait; output captured as text unless redirected."""
        return _run(["ip", "netns", "exec", self.netns, *argv], check=check, timeout=timeout, **kw)

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start argv inside the namespace; Lab.close() stops it by PID."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        # `ip netns exec` execs argv in place, so the Popen PID is argv's own PID.
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], **kw)
        self.lab._procs.append(proc)
        return proc

    def sysctl(self, *settings: str) -> None:
        """Set "key=value" sysctls; net.* keys are per namespace."""
        self.run(["sysctl", "-q", "-w", *settings])

    def add_address(self, ifname: str, addr: str) -> None:
        check_address(addr)
        self.ip("addr", "add", addr, "dev", check_name("interface", ifname, _IFNAME))

    def add_route(self, dst: str, via: str) -> None:
        """Route dst ("a.b.c.d/len" or "default") via a gateway; both must be lab addresses."""
        gateway = check_address(via)
        if dst != "default":
            check_address(dst)
        self.ip("route", "replace", dst, "via", str(gateway.ip))

    def enable_forwarding(self) -> None:
        self.sysctl("net.ipv4.ip_forward=1")

    def addresses(self, ifname: str) -> list[str]:
        """Current IPv4 addresses on ifname as "a.b.c.d/len" (e.g. what a DHCP client configured)."""
        out = self.ip("-j", "-4", "addr", "show", "dev", ifname).stdout
        return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out or "[]")
                for a in link.get("addr_info", [])]

    def mac(self, ifname: str) -> str:
        out = self.ip("-j", "link", "show", "dev", ifname).stdout
        return str(json.loads(out)[0]["address"])


class Lab:
    """A set of namespaces, bridges, links and processes that close() removes completely.

    Use as a context manager or call close(); open labs are also closed at interpreter exit.
    """

    def __init__(self, prefix: str | None = None) -> None:
        if prefix is None:
            prefix = self._fresh_prefix()
        elif any(ns.startswith(f"{check_name('prefix', prefix, _PREFIX)}-") for ns in list_namespaces()):
            raise ValueError(f"namespaces with prefix {prefix!r} already exist")
        self.prefix = prefix
        _used_prefixes.add(self.prefix)
        self.hosts: dict[str, Host] = {}
        self._procs: list[subprocess.Popen[Any]] = []
        self._links: list[tuple[Host, str]] = []  # (namespace it was created in, name)
        self._ports = 0
        self._macs = 0
        _open_labs.add(self)

    @staticmethod
    def _fresh_prefix() -> str:
        existing = {ns.split("-", 1)[0] for ns in list_namespaces()}
        while (prefix := f"bsd{os.urandom(3).hex()}") in existing | _used_prefixes:
            pass
        return prefix

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_mac(self) -> str:
        """A fresh locally administered unicast MAC, distinct within this lab."""
        self._macs += 1
        return "02:b5:00:00:{:02x}:{:02x}".format(*divmod(self._macs, 256))

    def host(self, name: str, *, ipv6: bool = False) -> Host:
        """A new namespace `<prefix>-<name>` with lo up; IPv6 off by default to keep segments quiet."""
        if check_name("host name", name, _NAME) in self.hosts:
            raise ValueError(f"host {name!r} already exists")
        netns = f"{self.prefix}-{name}"
        _run(["ip", "netns", "add", netns])
        host = self.hosts[name] = Host(self, name, netns)
        host.ip("link", "set", "lo", "up")
        if not ipv6:
            host.sysctl("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        return host

    def segment(self, name: str, hub: Host, addr: str | None = None) -> Segment:
        """A bridge `name` in hub's namespace, up, with the hub's optional address on it."""
        check_name("bridge name", name, _IFNAME)
        if addr is not None:
            check_address(addr)
        # A fixed bridge MAC: otherwise it follows the lowest port MAC and changes as ports join.
        hub.ip("link", "add", name, "address", self.next_mac(), "type", "bridge",
               "forward_delay", "0", "mcast_snooping", "0")
        self._links.append((hub, name))
        hub.ip("link", "set", name, "up")
        if addr is not None:
            hub.add_address(name, addr)
        return Segment(name, hub, addr)

    def attach(self, host: Host, segment: Segment, ifname: str = "eth0", addr: str | None = None,
               mac: str | None = None) -> Port:
        """Plug host into segment: a veth `ifname` in host, its peer a bridge port in the hub."""
        self._ports += 1
        # The counter leads so that truncation to 15 characters never makes two names equal.
        hub_if = f"p{self._ports}-{host.name}"[:15]
        port = self._veth(host, ifname, segment.hub, hub_if, addr, None, mac)
        segment.hub.ip("link", "set", hub_if, "master", segment.name, "up")
        return port

    def link(self, a: Host, b: Host, a_if: str, b_if: str, a_addr: str | None = None,
             b_addr: str | None = None) -> Port:
        """A point-to-point veth between a (a_if) and b (b_if), both ends up."""
        port = self._veth(a, a_if, b, b_if, a_addr, b_addr, None)
        b.ip("link", "set", b_if, "up")
        return port

    def _veth(self, a: Host, a_if: str, b: Host, b_if: str, a_addr: str | None, b_addr: str | None,
              mac: str | None) -> Port:
        check_name("interface", a_if, _IFNAME)
        check_name("interface", b_if, _IFNAME)
        for addr in (a_addr, b_addr):
            if addr is not None:
                check_address(addr)
        mac = check_name("MAC", (mac or self.next_mac()).lower(), _MAC)
        a.ip("link", "add", a_if, "address", mac, "type", "veth", "peer", "name", b_if, "netns", b.netns)
        self._links.append((a, a_if))
        a.ip("link", "set", a_if, "up")
        if a_addr is not None:
            a.add_address(a_if, a_addr)
        if b_addr is not None:
            b.add_address(b_if, b_addr)
        return Port(a, a_if, mac, b, b_if)

    def close(self) -> None:
        """Stop processes, delete links and namespaces. Idempotent; what fails is retried next call."""
        errors: list[str] = []
        self._stop_started()
        for host in list(self.hosts.values()):
            _stop_pids(_ns_pids(host.netns))
        self._delete_links()
        for name, host in list(self.hosts.items()):
            proc = _run(["ip", "netns", "del", host.netns], check=False)
            if proc.returncode == 0 or host.netns not in list_namespaces():
                del self.hosts[name]
            else:
                errors.append(f"{host.netns}: {proc.stderr.strip()}")
        if errors:
            raise LabError("lab tear-down left namespaces behind: " + "; ".join(errors))
        _open_labs.discard(self)

    def _stop_started(self) -> None:
        live = [p for p in self._procs if p.poll() is None]
        for proc in live:
            proc.terminate()
        deadline = time.monotonic() + TERM_GRACE
        for proc in live:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()

    def _delete_links(self) -> None:
        # Explicit deletion frees veths and bridges even if a namespace is kept alive elsewhere.
        for host in {h.netns: h for h, _ in self._links}.values():
            names = [n for h, n in reversed(self._links) if h is host]
            script = "".join(f"link del {n}\n" for n in names)
            _run(["ip", "-force", "-n", host.netns, "-batch", "-"], check=False, input=script)
        self._links.clear()


def _ns_pids(netns: str) -> list[int]:
    """Every process in the namespace, e.g. daemons that forked away from a tracked PID."""
    out = _run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(tok) for tok in out.split() if tok.isdigit()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM a process we started (by its PID), SIGKILL it if it is still there after `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _stop_pids(pids: list[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + TERM_GRACE
        while (pids := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not pids:
            return


@atexit.register
def _close_open_labs() -> None:
    """Backstop for labs whose owner never reached close() (e.g. an unhandled exception)."""
    for lab in list(_open_labs):
        try:
            lab.close()
        except Exception as exc:  # at exit: report, and keep closing the others
            print(f"bootstrapd.lab: {exc}", flush=True)
