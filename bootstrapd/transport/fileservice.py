"""The floor's file service as the daemon runs it: one resolver, the TFTP and HTTP(S) shells over it.

Both shells call `self.resolve`, which reads the current resolver, so a reload swaps templates, inventory
and variables for the next request while transfers under way finish with what they started with. Ports,
certificates and limits apply at restart (like `listen`). Each transfer's outcome is logged and counted by
its shell, then handed to `on_fetch` (the device tracker's `profile_fetched`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from bootstrapd.config.model import Files, Site
from bootstrapd.files.identify import LeaseInfo
from bootstrapd.files.outcome import FetchOutcome, FileRequest, Resolution
from bootstrapd.files.resolve import FileResolver
from bootstrapd.observability.metrics import Metrics

LeaseOf = Callable[[IPv4Address], LeaseInfo | None]


def read_password(path: str) -> str:
    """The first line of the password file (check made sure it exists)."""
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\r\n")


def restart_keys(files: Files | None) -> tuple[object, ...]:
    """What a reload cannot change in a running file service (sockets, certificates, limits)."""
    if files is None:
        return (None,)
    return (files.root, files.tftp, files.http, files.https, files.auth)


class FileService:
    def __init__(self, site: Site, lease_of: LeaseOf, on_fetch: Callable[[FetchOutcome], None],
                 metrics: Metrics, log: Any) -> None:
        assert site.files is not None
        self.files = site.files
        self.address = str(site.listen.address)
        self._lease_of = lease_of
        self._on_fetch = on_fetch
        self.metrics = metrics
        self.log = log
        self.resolver = FileResolver.from_config(self.files, lease_of, random_bytes=os.urandom)
        self._evictions = 0  # of the current resolver's cache, already counted
        metrics.files_render_cache_bytes.set_function(lambda: self.resolver.cache.bytes)
        metrics.files_render_cache_entries.set_function(lambda: len(self.resolver.cache))
        self.tftp: Any = None
        self.http: Any = None

    def resolve(self, req: FileRequest) -> Resolution:
        found = self.resolver.resolve(req)
        evictions = self.resolver.cache.evictions  # counted here: the core knows no metrics
        if evictions != self._evictions:
            self.metrics.files_render_cache_evictions.inc(evictions - self._evictions)
            self._evictions = evictions
        return found

    def _fetched(self, outcome: FetchOutcome) -> None:
        self._on_fetch(outcome)

    async def start(self) -> None:
        files = self.files
        if files.tftp is not None:
            from bootstrapd.tftp.session import Timing
            from bootstrapd.transport.tftp import TftpServer
            from bootstrapd.transport.tftp_workers import default_workers

            t = files.tftp
            self.tftp = TftpServer(self.address, t.port, self.resolve, self._fetched, self.metrics, self.log,
                                   max_sessions=t.max_sessions, blksize_max=t.blksize_max,
                                   windowsize_max=t.windowsize_max, timing=Timing(t.timeout, t.retries),
                                   workers=default_workers() if t.workers is None else t.workers)
            await self.tftp.start()
        if files.http is not None or files.https is not None:
            from bootstrapd.transport.http import HttpFileServer, tls_context
            from bootstrapd.transport.http_conn import Limits

            first = files.http or files.https
            assert first is not None
            limits = Limits(max_body=first.max_body, idle_timeout=float(first.idle_timeout),
                            max_connections=first.max_connections)
            auth = (files.auth.user, read_password(files.auth.password_file)) if files.auth else None
            self.http = HttpFileServer(
                self.address, self.resolve, self._fetched, self.metrics, self.log,
                http_port=files.http.port if files.http else None,
                https_port=files.https.port if files.https else None,
                ssl_context=tls_context(files.https.cert, files.https.key) if files.https else None,
                auth=auth, limits=limits)
            await self.http.start()
        self.log.info("files.listening", address=self.address, root=files.root,
                      tftp=files.tftp.port if files.tftp else None, http=files.http.port if files.http else None,
                      https=files.https.port if files.https else None, profiles=len(files.profiles))

    async def stop(self) -> None:
        if self.tftp is not None:
            await self.tftp.stop()
        if self.http is not None:
            await self.http.stop()

    def prepare(self, site: Site) -> FileResolver | None:
        """The resolver a reload would swap in (raises BootstrapdError when it cannot be built)."""
        if site.files is None:
            return None
        return FileResolver.from_config(site.files, self._lease_of, random_bytes=os.urandom)

    def swap(self, site: Site, resolver: FileResolver | None) -> None:
        if site.files is not None and resolver is not None:
            self.files, self.resolver, self._evictions = site.files, resolver, 0  # a new, empty cache
