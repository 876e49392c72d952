"""Every device seen, and where it is in the funnel (bootstrapd/floor), fed by every protocol's shell.

The shell of the funnel: each protocol's outcome becomes an event for one device (kind, detail, time), and
the core's `fold` (`apply` without building the Event) decides the stage. The reports:
- DHCP: each reply sent (after the lease is durable) -> offered / leased;
- DNS: answered `_ciscoprov*` SRV queries and A/AAAA queries for an SRV target, from an address we leased
  -> srv_looked_up / targets_resolved;
- files: each transfer's `Fetched`/`Refused` -> profile_fetched (or history only), with model and firmware;
- syslog: each message -> resync_* / upgrade_* (or history only), by the MAC it names, else by the lease
  of its source address (a disagreement is recorded on the device).

Records live in `<state_dir>/devices.sqlite3` (device_store.py; WAL, synchronous=NORMAL), beside the lease
store and not in it: device stages are bookkeeping, written in one transaction per second without an fsync
each, so a crash may lose the last second of events, never a lease, and never counts a device twice (one
row per MAC). `bootstrapd devices` and `bootstrapd report` read the file while the daemon runs. Memory
and the tables are bounded: past `max_devices` the least recently seen is dropped, and each device keeps
its last `syslog.history` (default 50) fetches and syslog lines.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bootstrapd.config.model import Site
from bootstrapd.dhcp.codec import MessageType
from bootstrapd.dhcp.leases import Lease
from bootstrapd.dhcp.outcome import Reply, Silent
from bootstrapd.dns.names import resolve, to_text
from bootstrapd.dns.wire import Rcode
from bootstrapd.files.inventory import Inventory
from bootstrapd.files.outcome import Fetched, Refused
from bootstrapd.floor.funnel import NO_DETAIL, Detail, DeviceState, Kind, Stage, Upgrade, budgets, fold, overdue
from bootstrapd.floor.report import Report, build_report, safe
from bootstrapd.observability.device_sources import (
    QTYPE_A,
    QTYPE_AAAA,
    QTYPE_SRV,
    QUERY_TYPES,
    SyslogMessage,
    address_text,
    dhcp_detail,
    fetch_event,
    load_inventory,
    syslog_event,
)
from bootstrapd.observability.device_store import (
    COLUMNS,
    DB_NAME,
    SCHEMA_VERSION,
    Device,
    HistoryEntry,
    device,
    history,
    open_writer,
    read_devices,
)
from bootstrapd.observability.device_writer import Writer
from bootstrapd.observability.metrics import Metrics
from bootstrapd.walcheckpoint import WalCheckpointer

__all__ = ["DB_NAME", "FLUSH_INTERVAL", "FLUSH_SLICE", "QUERY_TYPES", "SCHEMA_VERSION", "Device", "DeviceTracker",
           "Stage", "read_devices", "srv_targets"]

FLUSH_INTERVAL = 1.0
# Rows per transaction when the timer flushes, the next slice following at once: a busy floor's second of
# changes (3,000 devices at 3,000 DORA/s) written in one go held the event loop, and with it every DHCP and
# DNS reply, for tens of milliseconds once a second (bench/dhcp p99).
FLUSH_SLICE = 128
MAX_DEVICES = 50_000  # ~1 KiB each: a flood of made-up MACs stays near 100 MiB of RSS (bench/files/spoof.py)
HISTORY = 50  # entries kept per device when the site has no `syslog.history`
_TRACKED: tuple[Stage | Upgrade, ...] = (*Stage, Upgrade.REQUESTED)  # who is in which stage, in entry order
# Members the DHCP path tests by identity, as module names: `MessageType.OFFER` and the like go through
# EnumType.__getattr__'s slot, twenty of them per DORA.
_OFFER, _ACK, _OFFERED, _LEASED = MessageType.OFFER, MessageType.ACK, Kind.OFFERED, Kind.LEASED
_UPGRADE_REQUESTED = Upgrade.REQUESTED


def srv_targets(site: Site) -> frozenset[str]:
    """The site's SRV target names as the DNS shell reports qnames (lower case, absolute)."""
    names = set()
    for service in site.dns.srv:
        for t in service.targets:
            if t.target != ".":
                names.add(to_text(resolve(t.target, site.domain)).lower())
    return frozenset(names)


def _count_stalled(members: OrderedDict[bytes, float], limit: float | None, now: float) -> int:
    """How many are overdue: they entered in time order, so only those (and one more) are visited."""
    return sum(1 for _ in itertools.takewhile(lambda since: overdue(since, limit, now), members.values()))


class DeviceTracker:
    """In-memory devices (LRU-ordered) mirrored to SQLite by `flush`, which `start` runs every second."""

    def __init__(self, state_dir: str | Path, site: Callable[[], Site], log: Any = None, *,
                 clock: Callable[[], float] = time.time, max_devices: int = MAX_DEVICES,
                 metrics: Metrics | None = None, ship: bool = False) -> None:
        """`ship`: also queue each change in the outbox for the cross-site inventory (bootstrapd/central)."""
        self.path = Path(state_dir) / DB_NAME
        self._site = site
        self._log = log
        self._clock = clock
        self._max = max_devices
        self._metrics = metrics
        self._devices: OrderedDict[bytes, Device] = OrderedDict()
        self._by_address: dict[str, bytes] = {}  # leased address -> chaddr, for DNS/file/syslog attribution
        # Per stage label, its devices in the order they entered it: the front ones are the stalled ones.
        self._in_stage: dict[Stage | Upgrade, OrderedDict[bytes, float]] = {s: OrderedDict() for s in _TRACKED}
        self._upgrading = self._in_stage[Upgrade.REQUESTED]  # (an Upgrade key hashes in Python: looked up once)
        self._targets: tuple[Site | None, frozenset[str]] = (None, frozenset())
        self._inventory: tuple[Site | None, Inventory | None, frozenset[bytes]] = (None, None, frozenset())
        self._timer: asyncio.TimerHandle | None = None
        # With dhcp.workers: reads what waits on the workers' channels (leases, replies) and returns how many
        # datagrams it read. An attribution by address that misses calls it and looks again: a phone may
        # ask us something before our loop's turn for the channel that carries its ACK's lease.
        self.refresh: Callable[[], int] | None = None
        self._writer = Writer(open_writer(self.path), log, ship=ship)
        self._checkpointer: WalCheckpointer | None = None
        rows = self._writer.conn.execute(f"SELECT {COLUMNS} FROM devices ORDER BY last_seen").fetchall()
        for d in sorted((device(r) for r in rows), key=lambda d: d.funnel.since):
            self._devices[d.chaddr] = d
            self._place(d, None)
        for d in sorted(self._devices.values(), key=lambda d: d.last_seen):  # LRU order
            self._devices.move_to_end(d.chaddr)
            self._index(d)

    def __len__(self) -> int:
        return len(self._devices)

    def get(self, chaddr: bytes) -> Device | None:
        return self._devices.get(chaddr)

    def states(self) -> list[DeviceState]:
        return [d.funnel for d in self._devices.values()]

    def history(self, chaddr: bytes) -> list[HistoryEntry]:
        """A device's history, oldest first: what is written, then what is still pending, within the bound."""
        entries = [*history(self._writer.conn, chaddr), *self._writer.pending_history(chaddr)]
        return entries[-self._history_max():]

    # -- reports from the shells ---------------------------------------------------------------------------
    def dhcp_outcome(self, outcome: Reply | Silent) -> None:
        """From the DHCP shell: each reply sent, and each RELEASE/DECLINE, after its lease is durable."""
        lease = outcome.lease
        if lease is not None:
            if isinstance(outcome, Silent):
                self.dhcp_event(None, lease, None)
            else:
                self.dhcp_event(outcome.msg_type, lease, outcome.device_class)

    def dhcp_event(self, msg_type: MessageType | None, lease: Lease, device_class: str | None) -> None:
        """dhcp_outcome as values (what a DHCP worker process sends over its channel): the reply's type, or
        None for a RELEASE/DECLINE, the lease record as written and the class the device was served as."""
        chaddr = lease.chaddr
        if not chaddr:  # a RELEASE of nothing
            return
        now = self._clock()
        known = self._devices.get(chaddr)
        if msg_type is None:  # released or declined: its DNS queries are no longer its own
            # A RELEASE or DECLINE from a device we have no record of: it had been leased (before this table).
            d = self._event(chaddr, now, None if known else Kind.LEASED, first_seen=lease.first_seen)
            self._unindex(d)
            d.address = d.address or lease.address
            return
        # Identity tests: `in (OFFER, ACK)` or a dict keyed by MessageType hashes the member in Python.
        if msg_type is _OFFER:
            kind = _OFFERED
        elif msg_type is _ACK:
            kind = _LEASED
        else:
            return
        address = lease.address
        text = address_text(address)
        old = known.address if known is not None else None
        same = old is not None and (old is address or old == address)
        if old is not None and not same:
            self._unindex(known)  # type: ignore[arg-type]  # (old is set only when known is)
        d = self._event(chaddr, now, kind, dhcp_detail(text, lease.vendor_class), first_seen=lease.first_seen)
        d.address = address
        d.device_class = device_class
        d.vendor_class = lease.vendor_class or d.vendor_class
        d.hostname = lease.hostname or d.hostname
        if kind is _LEASED:  # leased (or further): its queries from this address are its own
            self._by_address[text] = chaddr
        elif same and self._by_address.get(text) == chaddr:  # offered again: not its own until the ACK
            del self._by_address[text]

    def knows_address(self, address: str) -> bool:
        """Does a device we track hold a lease on `address` (dotted quad)? The syslog sink's shedding test."""
        return address in self._by_address

    def dns_query(self, client: str, qname: str, qtype: int, rcode: Rcode) -> None:
        """From the DNS shell (on the hot path: the address lookup comes first and mostly ends it)."""
        chaddr = self._by_address.get(client)
        if chaddr is None:
            # A phone's first query after its ACK is its SRV lookup (an A query for a target counts only
            # after it): its lease may still wait in the DHCP workers' channel.
            if (rcode != Rcode.NOERROR or qtype != QTYPE_SRV or not qname.startswith("_ciscoprov")
                    or not self._refreshed() or (chaddr := self._by_address.get(client)) is None):
                return
        elif rcode != Rcode.NOERROR:
            return
        d = self._devices.get(chaddr)
        if d is None:
            return
        if qtype == QTYPE_SRV and qname.startswith("_ciscoprov"):
            kind = Kind.SRV_LOOKED_UP
        elif (qtype in (QTYPE_A, QTYPE_AAAA) and d.stage is not None and d.stage >= Stage.SRV_LOOKED_UP
              and qname in self._srv_targets()):
            kind = Kind.TARGETS_RESOLVED
        else:
            return
        self._event(chaddr, self._clock(), kind)

    def _refreshed(self) -> bool:
        """After a miss: did the DHCP workers' channels hold anything (now read)?"""
        return self.refresh is not None and self.refresh() > 0

    def file_fetch(self, outcome: Fetched | Refused) -> None:
        """From the file service's shells (TFTP, HTTP, HTTPS): each transfer's outcome, when it ends."""
        found = fetch_event(outcome, self._by_address.get)
        if found is None and self._refreshed():
            found = fetch_event(outcome, self._by_address.get)
        if found is None:
            self._count_unattributed("files")
            return
        chaddr, kind, detail, text = found
        if detail.conflict and self._metrics is not None:
            self._metrics.device_mac_conflicts.labels("files").inc()
        self._event(chaddr, self._clock(), kind, detail, text=text)

    def syslog_message(self, now: float, source: ipaddress.IPv4Address, msg: SyslogMessage) -> None:
        """From the syslog sink: each message, with its receive time and source address."""
        found = syslog_event(source, msg, self._by_address.get)
        if found is None and self._refreshed():
            found = syslog_event(source, msg, self._by_address.get)
        if found is None:
            self._count_unattributed("syslog")
            return
        chaddr, kind, detail = found
        if detail.conflict and self._metrics is not None:
            self._metrics.device_mac_conflicts.labels("syslog").inc()
        self._event(chaddr, now, kind, detail, text=safe(msg.text) or "")

    # -- the fold -----------------------------------------------------------------------------------------
    def _event(self, chaddr: bytes, now: float, kind: Kind | None, detail: Detail = NO_DETAIL, *,
               first_seen: float | None = None, text: str | None = None) -> Device:
        """Fold one event into its device (created when new); `kind` None only marks it seen."""
        d = self._devices.get(chaddr)
        if d is None:  # born with the earlier first sighting: no second state built just to move it back
            born = first_seen if first_seen is not None and first_seen < now else now
            mac = chaddr.hex(":")
            state = (fold(None, now, mac, kind, detail, born) if kind is not None
                     else DeviceState(mac, born, since=now))
            d = self._devices[chaddr] = Device(chaddr, None, None, None, None, state, now)
            self._writer.revived(chaddr)
            self._place(d, None)
            if len(self._devices) > self._max:
                self._evict()
        else:
            self._devices.move_to_end(chaddr)
            if now > d.last_seen:
                d.last_seen = now
            before = d.funnel
            if kind is not None:
                after = fold(before, now, before.mac, kind, detail, first_seen)
            elif first_seen is not None and first_seen < before.first_seen:
                after = before._replace(first_seen=first_seen)
            else:
                after = before
            if after is not before:
                d.funnel = after
                self._place(d, before)
        if text is not None and kind is not None:
            d.history_seq += 1
            self._writer.add_history(chaddr, HistoryEntry(d.history_seq, now, kind.value, text), self._history_max())
        self._writer.dirty.add(chaddr)
        return d

    def _place(self, d: Device, before: DeviceState | None) -> None:
        """Keep `_in_stage` in step with the device's stage and upgrade."""
        s, b = d.funnel, before
        if b is None or b.stage is not s.stage or b.since != s.since:
            if b is not None and b.stage is not None:
                self._in_stage[b.stage].pop(d.chaddr, None)
            if s.stage is not None:
                self._in_stage[s.stage][d.chaddr] = s.since
        up = self._upgrading
        if s.upgrade is _UPGRADE_REQUESTED and s.upgrade_since is not None:
            if b is None or b.upgrade_since != s.upgrade_since:
                up.pop(d.chaddr, None)
                up[d.chaddr] = s.upgrade_since
        elif up:
            up.pop(d.chaddr, None)

    def _evict(self) -> None:
        """Least recently seen first, an inventory phone last: made-up MACs must not erase the floor's phones."""
        expected = self._expected()[1]
        spared = 0
        while len(self._devices) > self._max:
            chaddr = next(iter(self._devices))
            if chaddr in expected and spared < len(self._devices):
                self._devices.move_to_end(chaddr)
                spared += 1
                continue
            _, old = self._devices.popitem(last=False)
            self._unindex(old)
            for members in self._in_stage.values():
                members.pop(old.chaddr, None)
            self._writer.evicted(old.chaddr)

    def _history_max(self) -> int:
        syslog = getattr(self._site(), "syslog", None)
        return int(getattr(syslog, "history", None) or HISTORY)

    def _count_unattributed(self, source: str) -> None:
        if self._metrics is not None:
            self._metrics.device_events_unattributed.labels(source).inc()

    def _srv_targets(self) -> frozenset[str]:
        site = self._site()
        if self._targets[0] is not site:  # computed again only after a reload
            self._targets = (site, srv_targets(site))
        return self._targets[1]

    def inventory(self) -> Inventory | None:
        """The site's inventory (read again after a reload), or None when it has none or it is unreadable."""
        return self._expected()[0]

    def _expected(self) -> tuple[Inventory | None, frozenset[bytes]]:
        site = self._site()
        if self._inventory[0] is not site:
            inventory, problems = load_inventory(site)
            for p in problems:
                if self._log is not None:
                    self._log.warning("devices.inventory_problem", problem=p)
            rows = inventory.rows if inventory is not None else ()
            macs = frozenset(bytes.fromhex(r.mac.replace(":", "")) for r in rows)
            self._inventory = (site, inventory, macs)
        return self._inventory[1], self._inventory[2]

    def _index(self, d: Device) -> None:
        if d.address is not None and d.stage is not None and d.stage >= Stage.LEASED:
            self._by_address[address_text(d.address)] = d.chaddr

    def _unindex(self, d: Device) -> None:
        if d.address is not None and self._by_address.get(text := address_text(d.address)) == d.chaddr:
            del self._by_address[text]

    # -- views --------------------------------------------------------------------------------------------
    def report(self, now: float | None = None) -> Report:
        """The sign-off report of the devices in memory (the live floor page)."""
        return self.report_job(now)()

    def report_job(self, now: float | None = None) -> Callable[[], Report]:
        """The report's inputs taken now (immutable states: cheap), built when called, in any thread."""
        now = self._clock() if now is None else now
        states, inventory, limits = self.states(), self.inventory(), budgets(self._site().floor.stall_after)
        return lambda: build_report(states, inventory, now, limits)

    def update_metrics(self, now: float | None = None) -> None:
        """The stage gauges, from `_in_stage` (stalled: the front of each stage's entry order)."""
        if self._metrics is None:
            return
        now = self._clock() if now is None else now
        limits = budgets(self._site().floor.stall_after)
        m = self._metrics
        for stage, members in self._in_stage.items():
            label = stage.label
            if isinstance(stage, Stage):
                m.devices_by_stage.labels(label).set(len(members))
            limit = limits.get(label)
            stalled = _count_stalled(members, limit, now)
            m.devices_stalled.labels(label).set(stalled)
        m.devices_tracked.set(len(self._devices))
        inventory, expected = self._expected()
        if inventory is not None:
            seen = sum(1 for c in expected if c in self._devices)
            m.devices_missing.set(len(expected) - seen)
            m.devices_unexpected.set(len(self._devices) - seen)

    # -- persistence --------------------------------------------------------------------------------------
    def flush(self, limit: int | None = None) -> bool:
        """Write the changed devices (at most `limit` of them) in one transaction; on failure they stay
        pending for the next flush. True when this one succeeded and more changes are waiting."""
        return self._writer.flush(self._devices, limit)

    @property
    def writer(self) -> Writer:
        """The table's writer: the central shipper acknowledges shipped outbox rows through it."""
        return self._writer

    def start(self) -> None:
        """Flush every FLUSH_INTERVAL seconds on the running loop: what is pending at the tick, in slices of
        FLUSH_SLICE rows with the loop's other work in between. Changes made meanwhile wait for the next
        tick, so a device that changes several times within an interval is still written about once."""
        loop = asyncio.get_running_loop()
        if self._checkpointer is None:  # the WAL's checkpoints off the loop too (walcheckpoint.py)
            self._checkpointer = WalCheckpointer.take_over(self._writer.conn, self.path, log=self._log,
                                                           name="devices-checkpoint")

        def tick(budget: int | None = None) -> None:
            if budget is None:
                budget = self._writer.pending()
                try:
                    self.update_metrics()
                except Exception as e:  # a bug in a view must not stop the flushes
                    if self._log is not None:
                        self._log.error("devices.metrics_failed", error=repr(e))
            more = self.flush(min(FLUSH_SLICE, budget))
            if self._checkpointer is not None:
                self._checkpointer.tail(self._writer.conn)  # when the WAL outgrew the thread's copies
            budget -= FLUSH_SLICE
            if more and budget > 0:
                self._timer = loop.call_later(0, tick, budget)
            else:
                self._timer = loop.call_later(FLUSH_INTERVAL, tick)

        self._timer = loop.call_later(FLUSH_INTERVAL, tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        try:
            self.flush()
        finally:
            self._writer.conn.close()
