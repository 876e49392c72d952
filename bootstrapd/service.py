"""Wiring: load the site, start metrics, DNS and DHCP, handle signals (SIGTERM stop, SIGHUP reload), sd_notify."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from bootstrapd import heap
from bootstrapd.config import LoadResult, check_site
from bootstrapd.config.model import Site
from bootstrapd.dhcp.leases import Lease, LeaseState, effective_state
from bootstrapd.dns.leases import lease_name
from bootstrapd.errors import BootstrapdError
from bootstrapd.observability.logging import configure, get_logger
from bootstrapd.observability.metrics import Metrics
from bootstrapd.transport.floorpage import Job, PlaceholderReport, ReportProvider

if TYPE_CHECKING:
    from collections.abc import Callable
    from ipaddress import IPv4Address

    from bootstrapd.files.identify import LeaseInfo
    from bootstrapd.syslog import SyslogMessage


def sd_notify(message: str) -> bool:
    """The systemd notify protocol: one datagram to $NOTIFY_SOCKET; a no-op outside systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # abstract namespace socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(path)
            s.sendall(message.encode())
        except OSError:
            return False
    return True


def watchdog_interval() -> float:
    """Half of systemd's WatchdogSec (from $WATCHDOG_USEC, when it is meant for this process), else 0."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return 0.0
    return int(usec) / 2e6


def lease_dns_name(lease: Lease) -> str:
    """A leased device's DNS name: its host name when a valid label, else SEP<MAC> as Cisco phones call themselves."""
    return _dns_name(lease.hostname, lease.chaddr[:6])


@functools.lru_cache(maxsize=8192)
def _dns_name(hostname: str | None, mac: bytes) -> str:
    # Once per ACK on the DHCP worker: the name is built once per device, not with every renewal. (The
    # import is at the top: a function-level import costs an import-machinery call per new device.)
    return lease_name(hostname, mac.hex())


def restart_settings(site: Site) -> tuple[object, ...]:
    """What a reload cannot change: sockets and files opened at start."""
    from bootstrapd.transport.fileservice import restart_keys

    store = site.store  # partners apply at reload (the rogue guard reads them each round)
    return (site.listen, site.state_dir, site.syslog.port if site.syslog else None,
            (store.backend, store.dsn, store.dsn_file, store.node), restart_keys(site.files), site.central,
            site.dhcp.workers)


class FunnelReport:
    """The sign-off report from the device tracker's funnel (a view; the page never computes stages); the
    placeholder's empty report until the tracker exists."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.empty = PlaceholderReport(lambda: service.site.site)

    def json(self) -> Job:
        from bootstrapd.floor.report import report_json

        tracker, site = self.service.devices, self.service.site.site
        if tracker is None:
            return self.empty.json()
        build = tracker.report_job()
        return lambda: report_json(build(), site)

    def csv(self) -> Job:
        from bootstrapd.floor.report import report_csv

        tracker = self.service.devices
        if tracker is None:
            return self.empty.csv()
        build = tracker.report_job()
        return lambda: report_csv(build())


class Service:
    def __init__(self, path: str, loaded: LoadResult, site: Site) -> None:
        self.path = path
        self.digest = loaded.digest
        self.site = site
        self.metrics = Metrics()
        self.log = get_logger(site=site.site)
        self.dns: Any = None
        self.dhcp: Any = None
        self.rogue: Any = None
        self.devices: Any = None
        self.central: Any = None  # the cross-site inventory's shipper (bootstrapd/central), when configured
        self.syslog: Any = None
        self.files: Any = None
        self.floorpage: Any = None
        # The report behind /, /report.json and /report.csv: an object with json() and csv(), called per
        # request (at most once a second). The funnel's build_report/report_json/report_csv connect here.
        self._report_provider: ReportProvider = FunnelReport(self)
        self.merged: Any = None  # MergedRegistry with dhcp.workers >= 1
        self._probe: asyncio.Task[Any] | None = None
        self._store_up = True
        # With dhcp.workers: read what waits on the workers' channels now (DhcpWorkers.drain), for a lookup
        # by address that missed; how many datagrams were read.
        self._drain: Callable[[], int] | None = None
        self._stop = asyncio.Event()

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            await self._start()
        except (OSError, BootstrapdError) as e:  # BootstrapdError: a foreign DHCP server, a store in use
            self.log.error("service.start_failed", error=str(e))
            await self._shutdown()
            return 1
        self.metrics.reloads.labels(result="success").inc()
        self.metrics.reload_last_success.set(time.time())
        heap.settle()
        sweeper = asyncio.create_task(heap.sweep_forever(self.log))
        sd_notify(f"READY=1\nSTATUS={self._status()}")
        self.log.info("service.ready", status=self._status())
        watchdog = asyncio.create_task(self._watchdog()) if watchdog_interval() else None
        from bootstrapd.observability.looplag import LoopLag

        lag = LoopLag(self.metrics, self.log)
        lag.start()
        await self._stop.wait()
        lag.stop()
        sweeper.cancel()
        if watchdog is not None:
            watchdog.cancel()
        sd_notify("STOPPING=1")
        await self._shutdown()
        self.log.info("service.stopped")
        return 0

    async def _start(self) -> None:
        from bootstrapd.dhcp.stores import open_lease_store
        from bootstrapd.observability.devices import QUERY_TYPES, DeviceTracker
        from bootstrapd.transport.dhcp import DhcpServer
        from bootstrapd.transport.dns import DnsServer
        from bootstrapd.transport.rogue import RogueGuard

        site = self.site
        if site.dhcp.workers:  # one scrape: the DHCP workers' metrics summed into ours
            from bootstrapd.observability.worker_metrics import MergedRegistry

            self.merged = MergedRegistry(self.metrics.registry)
        await self._start_metrics()
        self.rogue = RogueGuard(lambda: self.site, self.metrics, self.log)
        self._probe = asyncio.create_task(self.rogue.check())  # listens for other DHCP servers meanwhile
        from bootstrapd.central import enabled

        self.devices = DeviceTracker(site.state_dir, lambda: self.site, self.log, metrics=self.metrics,
                                     ship=enabled(site))
        self.dns = DnsServer(site, self.metrics, self.log, on_query=self.devices.dns_query,
                             on_query_types=QUERY_TYPES)
        await self.dns.start()
        await self._probe  # raises ForeignServerError: we must not serve DHCP here
        os.makedirs(site.state_dir, exist_ok=True)
        from bootstrapd.transport.dhcp_workers import check_store_layout

        check_store_layout(site.state_dir, site.dhcp.workers)
        if site.dhcp.workers:  # DHCP in worker processes (transport/dhcp_workers.py), SQLite stores
            from bootstrapd.transport.dhcp_workers import DhcpWorkers

            self.dhcp = DhcpWorkers(self.path, site, self.metrics, self.merged, self.log,
                                    on_lease=self._lease_event, on_event=self.devices.dhcp_event)
        else:
            store = open_lease_store(site)
            self.dhcp = DhcpServer(site, store, self.metrics, self.log, on_lease=self._lease_event,
                                   on_outcome=self.devices.dhcp_outcome)
            self.dhcp.on_store_state = self._store_state
        await self.dhcp.start()
        if site.dhcp.workers:  # a lookup by address that misses reads the channels first (DhcpWorkers.drain)
            self._drain = self.dhcp.drain
            self.devices.refresh = self.dhcp.drain
        if site.files is not None:
            from bootstrapd.transport.fileservice import FileService

            self.files = FileService(site, self._lease_of, self.devices.file_fetch, self.metrics, self.log)
            await self.files.start()
        if site.syslog is not None:
            from bootstrapd.transport.syslog import SyslogServer

            self.syslog = SyslogServer(site, self.metrics, self.log, on_message=self._syslog_message,
                                       known=self.devices.knows_address, refresh=self._drain)
            await self.syslog.start()
        self.devices.start()
        self._start_central()
        self.rogue.start()

    def _start_central(self) -> None:
        """The shipper's thread; a central database that cannot be used never keeps the floor from serving."""
        from bootstrapd.central import enabled, open_shipper

        if not enabled(self.site):
            return
        try:
            self.central = open_shipper(lambda: self.site, self.devices, self.metrics, self.log)
        except BootstrapdError as e:
            self.log.error("central.disabled", error=str(e))
            return
        self.central.start()

    async def _start_metrics(self) -> None:
        """metrics.listen: /metrics, the live floor page and the sign-off report (bootstrapd.transport.floorpage)."""
        listen = self.site.metrics.listen
        if listen is None:
            return
        from bootstrapd.central import enabled
        from bootstrapd.transport.floorpage import FloorPage

        registry = self.merged if self.merged is not None else self.metrics.registry  # one scrape with workers
        self.floorpage = FloorPage(listen.host, listen.port, registry, self._report_provider, self.log,
                                   download_name=f"{self.site.site}-report.csv",
                                   sites=self._sites_json if enabled(self.site) else None)
        await self.floorpage.start()

    def _sites_json(self) -> str:
        """/sites.json: `report --all-sites --json`'s summaries (in the floor page's worker thread)."""
        from bootstrapd.central import central_dsn
        from bootstrapd.central.db import read_sites
        from bootstrapd.signoff import render_all_sites

        return render_all_sites(read_sites(central_dsn(self.site)), time.time(), "summary")

    async def _watchdog(self) -> None:
        """WATCHDOG=1 at half of WatchdogSec, from the event loop: a wedged loop stops the pings."""
        interval = watchdog_interval()
        while True:
            sd_notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _lease_event(self, event: str, lease: Lease) -> None:
        if self.dns is None or not self.site.dns.lease_records:
            return
        name = lease_dns_name(lease)
        if event == "bound":
            self.dns.lease_records.add(name, lease.address)
        else:
            self.dns.lease_records.remove(name, lease.address)

    def _store_state(self, up: bool) -> None:
        """A shared store lost or regained: systemd's status line says so (`systemctl status`)."""
        self._store_up = up
        sd_notify(f"STATUS={self._status()}")

    def _lease_of(self, address: IPv4Address) -> LeaseInfo | None:
        """The current holder of `address`, for the file service's device identification."""
        lease = self.dhcp.store.get_by_address(address) if self.dhcp is not None else None
        now = time.time()
        if lease is None or effective_state(lease, now) is not LeaseState.BOUND:
            # A client quicker than our turn for the DHCP workers' channel: its lease may be waiting there.
            if self._drain is None or not self._drain():
                return None
            lease = self.dhcp.store.get_by_address(address)
            if lease is None or effective_state(lease, now) is not LeaseState.BOUND:
                return None
        from bootstrapd.files.identify import LeaseInfo

        return LeaseInfo(lease.chaddr[:6].hex(":"), lease.vendor_class, lease.device_class)

    def _syslog_message(self, now: float, source: IPv4Address, msg: SyslogMessage) -> None:
        """The one hook for each accepted syslog message (already logged as `syslog.message`): the funnel's
        device tracker ties it to a device (its MAC, else the source address's lease) and moves its stage."""
        if self.devices is not None:
            self.devices.syslog_message(now, source, msg)

    async def _shutdown(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        if self.files is not None:
            await self.files.stop()
        if self.syslog is not None:
            await self.syslog.stop()
        if self.rogue is not None:
            await self.rogue.stop()
        if self.dhcp is not None:
            await self.dhcp.stop()
        if self.dns is not None:
            await self.dns.stop()
        if self.central is not None:
            self.central.close()  # before the tracker's last flush, which deletes what it shipped
        if self.devices is not None:
            self.devices.close()
        if self.floorpage is not None:
            await self.floorpage.stop()

    def _swap(self, new: Site) -> bool:
        """Every service takes `new`, or none: each builds its new state before swapping it in."""
        try:
            resolver = self.files.prepare(new) if self.files is not None else None
        except BootstrapdError as e:  # a template or the inventory changed on disk since check read it
            self._reject([str(e)])
            return False
        try:
            self.dns.reload(new)
        except BootstrapdError as e:  # zone data the checker accepts but DNS cannot serve
            self._reject([str(e)])
            return False
        try:
            self.dhcp.reload(new)
        except BootstrapdError as e:
            self.dns.reload(self.site)
            self._reject([str(e)])
            return False
        if self.syslog is not None:
            self.syslog.reload(new)
        if self.files is not None:
            self.files.swap(new, resolver)
        return True

    def _reject(self, errors: list[str]) -> None:
        for error in errors:
            self.log.error("service.reload_error", error=error)
        self.metrics.reloads.labels(result="failure").inc()
        self.metrics.reload_last_failed.set(1)
        self.log.error("service.reload_rejected", errors=len(errors), kept=self.digest[:12])

    def _status(self) -> str:
        s = self.site
        status = (f"site {s.site}: DHCP on {','.join(s.listen.interfaces)}:{s.listen.dhcp_port}, "
                  f"DNS {s.listen.address}:{s.listen.dns_port} for {s.domain}")
        if not self._store_up:
            status = f"store unreachable: new addresses paused; {status}"
        return status

    def reload(self) -> None:
        """SIGHUP: a valid new site swaps in; an invalid one is logged and the running one keeps serving."""
        sd_notify("RELOADING=1")
        loaded = check_site(self.path)
        if loaded.site is None:
            self._reject([str(d) for d in loaded.errors])
        else:
            new = loaded.site
            if restart_settings(new) != restart_settings(self.site):
                self.log.warning("service.reload_needs_restart",
                                 detail="listen, state_dir, the syslog port, the lease store, central, the file "
                                 "servers and dhcp.workers apply at restart")
            if not self._swap(new):
                sd_notify(f"READY=1\nSTATUS={self._status()}")
                return
            self.site, self.digest = new, loaded.digest
            self.metrics.reloads.labels(result="success").inc()
            self.metrics.reload_last_success.set(time.time())
            self.metrics.reload_last_failed.set(0)
            self.log.info("service.reloaded", digest=self.digest[:12])
        sd_notify(f"READY=1\nSTATUS={self._status()}")


def run(path: str) -> int:
    loaded = check_site(path)
    for d in loaded.diagnostics:
        print(d, file=sys.stderr)
    if loaded.site is None:
        print(f"bootstrapd: {path} is invalid; not starting", file=sys.stderr)
        return 1
    site = loaded.site
    configure(site.logging.format, site.logging.level)
    return asyncio.run(Service(path, loaded, site).main())
