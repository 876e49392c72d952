"""perfdhcp (Kea 2.2's, Debian kea-admin) as the load: run it in the client namespace and parse its report."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from servers import SERVER_IP

from bootstrapd.lab import Host

PERF_BASE_MAC = "00:0c:01:00:00:00"  # perfdhcp's clients: base + 0 .. clients-1
PROBE_MAC = "02:ee:00:00:00:01"  # the readiness probe's one client


@dataclass
class Stats:
    """One perfdhcp run, parsed."""

    perfdhcp_rate: float = 0.0  # perfdhcp's "4-way exchanges/second": counts the -W wait when some are lost
    sent: dict[str, int] = field(default_factory=dict)  # per exchange ("DO", "RA")
    received: dict[str, int] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    orphans: int = 0
    delays: dict[str, list[float]] = field(default_factory=dict)  # ms, per exchange
    stamps: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # (sent s, delay ms)
    first_sent: float | None = None  # s since perfdhcp's start: first DISCOVER
    last_received: float | None = None  # last ACK
    exit_code: int = 0
    seconds: float = 0.0

    @property
    def completed(self) -> int:
        return self.received.get("RA", 0)

    @property
    def rate(self) -> float:
        """Completed DORAs per second, first DISCOVER sent to last ACK received."""
        if not self.completed or self.first_sent is None or self.last_received is None:
            return 0.0
        return self.completed / max(self.last_received - self.first_sent, 1e-6)

    @property
    def lost(self) -> int:
        """Clients whose DORA did not complete: no OFFER, or an OFFER but no ACK."""
        return max(0, self.sent.get("DO", 0) - self.completed)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- perfdhcp -------------------------------------------------------------------------------------------
_SECTION = re.compile(r"\*\*\*(Statistics|Timestamps) for(?: packets)?: (DISCOVER-OFFER|REQUEST-ACK)\*\*\*")
_KEY = {"DISCOVER-OFFER": "DO", "REQUEST-ACK": "RA"}


def parse_perfdhcp(out: str) -> Stats:
    stats = Stats()
    if m := re.search(r"^Rate: ([0-9.eE+-]+) 4-way", out, re.M):
        stats.perfdhcp_rate = float(m.group(1))
    kind, key = "", ""
    for line in out.splitlines():
        if m := _SECTION.search(line):
            kind, key = m.group(1), _KEY[m.group(2)]
            stats.delays.setdefault(key, [])
            continue
        if kind == "Statistics" and ":" in line:
            name, _, value = line.partition(":")
            value = value.strip()
            if name == "sent packets":
                stats.sent[key] = int(value)
            elif name == "received packets":
                stats.received[key] = int(value)
            elif name == "drops":
                stats.drops[key] = int(value)
            elif name == "orphans":
                stats.orphans += int(value)
        elif kind == "Timestamps" and line.startswith("sent / received:"):
            sent_ts, received_ts = (float(t) for t in line.split(":", 1)[1].split("/"))
            stats.delays[key].append((received_ts - sent_ts) * 1000)
            stats.stamps.setdefault(key, []).append((sent_ts, (received_ts - sent_ts) * 1000))
            if key == "DO":
                stats.first_sent = min(sent_ts, stats.first_sent or sent_ts)
            else:
                stats.last_received = max(received_ts, stats.last_received or received_ts)
    return stats


def perfdhcp(client: Host, clients: int, rate: int, *, base_mac: str, limit_s: float, pin: str | None,
             wait_s: float = 2.0, server: str = SERVER_IP) -> Stats:
    """One perfdhcp run: `clients` exchanges from `clients` distinct MACs, at `rate` per second."""
    # -n twice: the run ends when N OFFERs and N ACKs are in (with one -n it ends at N replies of any kind,
    # before half the ACKs), or -W after the last DISCOVER if some never come.
    argv = ["perfdhcp", "-4", "-l", "eth0", "-R", str(clients), "-n", str(clients), "-n", str(clients),
            "-b", f"mac={base_mac}",
            "-p", str(int(limit_s)), "-d", "2", "-W", str(int(wait_s * 1e6)), "-x", "t",
            # single: in multi-thread mode a fast reply can be stamped before its request and perfdhcp aborts
            "-g", "single",
            # Without -r perfdhcp floods DISCOVERs far past -n until the replies are in: always give a rate.
            "-r", str(rate)]
    if pin is not None:
        argv = ["taskset", "-c", pin, *argv]
    t0 = time.monotonic()
    proc = client.run([*argv, server], check=False, timeout=limit_s + 30)
    stats = parse_perfdhcp(proc.stdout)
    stats.exit_code, stats.seconds = proc.returncode, time.monotonic() - t0
    if proc.returncode not in (0, 3):  # 3: some exchanges failed, which is a measurement, not an error
        raise RuntimeError(f"perfdhcp failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return stats


def wait_answering(client: Host, proc: subprocess.Popen[Any], timeout: float = 120.0,
                   server: str = SERVER_IP) -> float:  # fmt: skip
    """Seconds until the server completes one DORA with a probe client (its one extra lease)."""
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        # Short waits for a precise start-up time; long ones for a server that answers slowly once up
        # (dnsmasq with 50,000 leases: ~30 s at full CPU after start, then about a second per DORA).
        wait = 0.3 if elapsed < 5 else 5.0
        stats = perfdhcp(client, 1, 10, base_mac=PROBE_MAC, limit_s=1, pin=None, wait_s=wait, server=server)
        if stats.completed >= 1:
            return time.monotonic() - t0
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer within {timeout}s")
