"""After DHCP: find the provisioning server (options, else DNS SRV) and fetch the first profile.

Blocking code, run in a worker thread per phone. The decision itself is discovery.choose_source(); this
module performs it: each URL of the winning option in turn, or each SRV target in RFC 2782 order (HTTPS
service first, then HTTP), falling over to the next target when one cannot be reached or refuses.
"""

from __future__ import annotations

import random
import ssl
import time
from dataclasses import dataclass, field

from bootstrapd.sim.dhcp import Lease
from bootstrapd.sim.discovery import ProfileUrl, Source, SrvDiscovery, Stuck, choose_source, ipv4_list
from bootstrapd.sim.fetch import Fetched, Fetcher
from bootstrapd.sim.macros import expand
from bootstrapd.sim.phone import Phone
from bootstrapd.sim.profile import ProfileError
from bootstrapd.sim.resolver import ResolveError, Resolver
from bootstrapd.sim.resync import open_profile
from bootstrapd.sim.srv import rfc2782_order

SRV_SCHEMES = {"_ciscoprov-https._tls": "https", "_ciscoprov-http._tcp": "http"}
SRV_PATH = "/$PSN.xml"  # Cisco's SRV steps: $PSN.xml at the web root (or $MA.cfg under /Cisco/)


@dataclass
class Provisioning:
    """How far a leased phone got, and why it stopped there."""

    found_by: str | None = None  # "option 160", "SRV https, priority 10", ...
    url: str | None = None  # the profile URL fetched (or last tried)
    fetched: bool = False
    size: int = 0
    reason: str | None = None  # why the phone is stuck (None once fetched)
    attempts: list[str] = field(default_factory=list)  # every failed try, in order
    discovery_seconds: float = 0.0
    fetch_seconds: float = 0.0
    source: ProfileUrl | None = None  # where the profile came from (the resync chain starts there)
    params: dict[str, str] = field(default_factory=dict)  # the profile's parameters, decrypted and parsed
    fetcher: Fetcher | None = None  # the phone's HTTP/TFTP client, for what comes after


@dataclass(frozen=True)
class Settings:
    """What the phones are configured with: trusted CA for HTTPS, and how long they wait."""

    ca_file: str | None = None
    http_timeout: float = 3.0
    dns_timeout: float = 1.0


def provision(phone: Phone, lease: Lease, rng: random.Random, settings: Settings,
              tls: ssl.SSLContext) -> Provisioning:
    ip = str(lease.address)
    t0 = time.monotonic()
    decision = choose_source(lease.options, phone, ip)
    result = Provisioning()
    if isinstance(decision, Stuck):
        result.reason = decision.reason
        result.attempts.extend(decision.ignored)
        return result
    dns = decision.dns_servers if isinstance(decision, SrvDiscovery) else _dns_servers(lease)
    resolver = Resolver(dns, ip, rng, settings.dns_timeout) if dns else None
    fetcher = Fetcher(phone, ip, resolver.address if resolver else _no_dns, tls, settings.http_timeout)
    result.fetcher = fetcher
    if isinstance(decision, Source):
        _from_source(decision, fetcher, result, t0)
    else:
        assert resolver is not None
        _from_srv(decision, phone, resolver, fetcher, rng, result, t0)
    return result


def _dns_servers(lease: Lease) -> tuple[str, ...]:
    return tuple(ipv4_list(lease.options.get(6, b"")))


def _no_dns(host: str) -> str:
    raise ResolveError(f"{host}: the phone has no DNS server (option 6)")


def _from_source(source: Source, fetcher: Fetcher, result: Provisioning, t0: float) -> None:
    result.found_by = f"option {source.option}"
    result.discovery_seconds = time.monotonic() - t0
    if source.option == 43:
        result.url = source.value
        result.reason = f"TR-069 ACS {source.value} (CWMP is not simulated)"
        return
    for url in source.urls:
        if _try(fetcher, url, None, result):
            break
    result.fetch_seconds = time.monotonic() - t0 - result.discovery_seconds


def _from_srv(discovery: SrvDiscovery, phone: Phone, resolver: Resolver, fetcher: Fetcher, rng: random.Random,
              result: Provisioning, t0: float) -> None:
    path = expand(SRV_PATH, phone.macros(fetcher.source_ip))
    looked_up: list[str] = []
    fetch_started: float | None = None
    for name in discovery.names:
        service = ".".join(name.split(".", 2)[:2])  # _ciscoprov-https._tls
        try:
            answer = resolver.srv(name)
        except ResolveError as e:
            looked_up.append(f"{name}: {e}")
            continue
        targets = rfc2782_order(answer.records, rng)
        looked_up.append(f"{name}: {answer.rcode}, {len(targets)} target(s)")
        for t in targets:
            if fetch_started is None:
                fetch_started = time.monotonic()
                result.discovery_seconds = fetch_started - t0
            url = ProfileUrl(SRV_SCHEMES[service], t.target, t.port, path, phone.username, phone.password)
            result.found_by = f"SRV {SRV_SCHEMES[service]}, priority {t.priority}"
            addresses = answer.addresses.get(t.target)
            if _try(fetcher, url, addresses[0] if addresses else None, result):
                result.fetch_seconds = time.monotonic() - fetch_started
                return
    if fetch_started is None:
        result.discovery_seconds = time.monotonic() - t0
        result.reason = "no provisioning option and no SRV target: " + "; ".join(looked_up)
        result.found_by = None
    else:
        result.fetch_seconds = time.monotonic() - fetch_started
        result.reason = f"every SRV target failed (last: {result.attempts[-1]})"
    result.attempts[:0] = looked_up


def _try(fetcher: Fetcher, url: ProfileUrl, address: str | None, result: Provisioning) -> bool:
    fetched: Fetched = fetcher.fetch(url, address)
    result.url, result.size = fetched.url, fetched.size
    outcome = fetched.outcome
    if fetched.ok:
        try:
            result.params = open_profile(fetched, url, fetcher.phone, None)
            result.fetched, result.reason, result.source = True, None, url
            return True
        except ProfileError as e:
            outcome = f"class C: {e}"
    result.attempts.append(f"{fetched.url}: {outcome}")
    result.reason = outcome
    return False
