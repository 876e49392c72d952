"""The device tracker: stages from DHCP replies and DNS queries, persistence, bounds; the listing formats."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from bootstrapd.config.loader import load_site
from bootstrapd.config.model import Site
from bootstrapd.dhcp.codec import Message, MessageType
from bootstrapd.dhcp.leases import Lease, LeaseState
from bootstrapd.dhcp.outcome import Destination, Reply, Silent
from bootstrapd.dns.wire import Rcode
from bootstrapd.listings import DEVICE_COLUMNS, device_rows, render
from bootstrapd.observability.devices import (
    FLUSH_INTERVAL,
    FLUSH_SLICE,
    DeviceTracker,
    Stage,
    read_devices,
    srv_targets,
)

SITE_YAML = """
site: t
listen: {interfaces: [stg0], address: 198.18.0.1}
domain: staging.test
dhcp:
  subnets: [{prefix: 198.18.0.0/23, pools: ["198.18.0.100-198.18.0.200"]}]
dns:
  records: [{name: prov1, type: A, value: 198.18.0.10}, {name: other, type: A, value: 198.18.0.11}]
  srv:
    - {service: _ciscoprov-http._tcp, targets: [{target: prov1, port: 80}, {target: "prov2.example.net.", port: 80}]}
"""
PHONE = bytes.fromhex("00562b043615")
ADDR = IPv4Address("198.18.0.100")
SRV, A, AAAA = 33, 1, 28
SRV_NAME = "_ciscoprov-http._tcp.staging.test."


@pytest.fixture
def site(tmp_path: Path) -> Site:
    path = tmp_path / "site.yaml"
    path.write_text(SITE_YAML)
    return load_site(str(path))


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def reply(kind: MessageType, chaddr: bytes = PHONE, address: IPv4Address = ADDR, **lease_fields: Any) -> Reply:
    lease = Lease(address=address, client_id=b"\x01" + chaddr, chaddr=chaddr, state=LeaseState.BOUND,
                  subnet="198.18.0.0/23", expires=2e9, first_seen=1_600_000_000.0, updated=1.0,
                  vendor_class="CP-8841-3PCC", hostname="SEP00562B043615", device_class="mpp")
    lease = dataclasses.replace(lease, **lease_fields)
    dest = Destination(IPv4Address("255.255.255.255"), 68, None, True)
    return Reply(Message(), b"", dest, kind, "mpp", address, lease, new_device=False)


def tracker(tmp_path: Path, site: Site, clock: Clock | None = None, **kw: int) -> DeviceTracker:
    return DeviceTracker(tmp_path / "state", lambda: site, clock=clock or Clock(), **kw)


def test_srv_targets_are_absolute_lower_case_names(site: Site) -> None:
    assert srv_targets(site) == {"prov1.staging.test.", "prov2.example.net."}


def test_stages_move_forward_in_boot_order(tmp_path: Path, site: Site) -> None:
    t = tracker(tmp_path, site)
    t.dhcp_outcome(reply(MessageType.OFFER))
    assert t.get(PHONE).stage is Stage.OFFERED  # type: ignore[union-attr]
    t.dns_query(str(ADDR), SRV_NAME, SRV, Rcode.NOERROR)  # not leased yet: the address is not its own
    assert t.get(PHONE).stage is Stage.OFFERED  # type: ignore[union-attr]
    t.dhcp_outcome(reply(MessageType.ACK))
    t.dns_query(str(ADDR), "prov1.staging.test.", A, Rcode.NOERROR)  # no SRV yet: a URL from option 160
    assert t.get(PHONE).stage is Stage.LEASED  # type: ignore[union-attr]
    t.dns_query(str(ADDR), SRV_NAME, SRV, Rcode.NXDOMAIN)
    t.dns_query("198.18.0.101", SRV_NAME, SRV, Rcode.NOERROR)  # someone else's address
    assert t.get(PHONE).stage is Stage.LEASED  # type: ignore[union-attr]
    t.dns_query(str(ADDR), SRV_NAME, SRV, Rcode.NOERROR)
    assert t.get(PHONE).stage is Stage.SRV_LOOKED_UP  # type: ignore[union-attr]
    t.dns_query(str(ADDR), "other.staging.test.", A, Rcode.NOERROR)  # not an SRV target
    assert t.get(PHONE).stage is Stage.SRV_LOOKED_UP  # type: ignore[union-attr]
    t.dns_query(str(ADDR), "prov2.example.net.", AAAA, Rcode.NOERROR)
    assert t.get(PHONE).stage is Stage.TARGETS_RESOLVED  # type: ignore[union-attr]
    t.dhcp_outcome(reply(MessageType.OFFER))  # a reboot: the furthest stage stays
    assert t.get(PHONE).stage is Stage.TARGETS_RESOLVED  # type: ignore[union-attr]
    t.close()


def test_released_address_is_no_longer_attributed(tmp_path: Path, site: Site) -> None:
    t = tracker(tmp_path, site)
    t.dhcp_outcome(reply(MessageType.ACK))
    t.dhcp_outcome(Silent("release", reply(MessageType.ACK).lease))
    t.dns_query(str(ADDR), SRV_NAME, SRV, Rcode.NOERROR)
    assert t.get(PHONE).stage is Stage.LEASED  # type: ignore[union-attr]
    t.close()


def test_address_given_to_another_device_moves_attribution(tmp_path: Path, site: Site) -> None:
    t = tracker(tmp_path, site)
    other = bytes.fromhex("00562b000001")
    t.dhcp_outcome(reply(MessageType.ACK))
    t.dhcp_outcome(reply(MessageType.ACK, chaddr=other))
    t.dns_query(str(ADDR), SRV_NAME, SRV, Rcode.NOERROR)
    assert (t.get(PHONE).stage, t.get(other).stage) == (Stage.LEASED, Stage.SRV_LOOKED_UP)  # type: ignore[union-attr]
    t.close()


def test_flushed_devices_are_read_back_and_reloaded(tmp_path: Path, site: Site) -> None:
    clock = Clock()
    t = tracker(tmp_path, site, clock)
    t.dhcp_outcome(reply(MessageType.OFFER))
    clock.now += 5
    t.dhcp_outcome(reply(MessageType.ACK))
    assert read_devices(tmp_path / "state") == []  # nothing before the flush
    t.flush()
    [d] = read_devices(tmp_path / "state")
    assert (d.mac, d.address, d.stage, d.device_class) == ("00:56:2b:04:36:15", ADDR, Stage.LEASED, "mpp")
    assert (d.vendor_class, d.hostname) == ("CP-8841-3PCC", "SEP00562B043615")
    assert (d.first_seen, d.last_seen) == (1_600_000_000.0, clock.now)  # first seen: the lease record's
    t.close()
    again = tracker(tmp_path, site, clock)  # a restart: attribution by address survives
    again.dns_query(str(ADDR), SRV_NAME, SRV, Rcode.NOERROR)
    assert again.get(PHONE).stage is Stage.SRV_LOOKED_UP  # type: ignore[union-attr]
    again.close()
    assert read_devices(tmp_path / "state")[0].stage is Stage.SRV_LOOKED_UP  # close() flushes
    # Reading a closed table leaves no -wal/-shm behind (owned by root, they would lock the daemon out).
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["devices.sqlite3"]


def test_flush_in_slices_writes_everything_and_the_timer_follows_up_at_once(tmp_path: Path, site: Site) -> None:
    """A busy floor's second of changes goes out in slices of FLUSH_SLICE rows (other work runs between
    them); the timer does not wait a FLUSH_INTERVAL between slices, and evictions are written too."""
    clock = Clock()
    n = FLUSH_SLICE * 2 + 10
    t = tracker(tmp_path, site, clock, max_devices=n - 3)  # the first 3 are evicted before any flush
    macs = [bytes.fromhex(f"0256{i:08x}") for i in range(n)]
    for i, m in enumerate(macs):
        t.dhcp_outcome(reply(MessageType.OFFER, chaddr=m, address=IPv4Address(int(ADDR) + i)))
    assert t.flush(FLUSH_SLICE) is True
    assert len(read_devices(tmp_path / "state")) == FLUSH_SLICE

    async def run_timer() -> list[bytes]:
        t.start()
        # One timer tick, plus a little: the remaining slices must follow it at once, not an interval apart.
        await asyncio.sleep(FLUSH_INTERVAL + 0.3)
        return sorted(d.chaddr for d in read_devices(tmp_path / "state"))

    assert asyncio.run(run_timer()) == macs[3:]
    assert t.flush() is False  # nothing left
    t.close()


def test_least_recently_seen_device_is_dropped_past_the_bound(tmp_path: Path, site: Site) -> None:
    clock = Clock()
    t = tracker(tmp_path, site, clock, max_devices=2)
    macs = [bytes.fromhex(f"0256000000{i:02x}") for i in range(3)]
    for i, m in enumerate(macs):
        t.dhcp_outcome(reply(MessageType.OFFER, chaddr=m, address=IPv4Address(int(ADDR) + i)))
        t.flush()
        clock.now += 1
    assert len(t) == 2 and t.get(macs[0]) is None
    assert sorted(d.chaddr for d in read_devices(tmp_path / "state")) == macs[1:]
    t.close()


def test_listing_formats_parse_and_the_table_escapes_hostile_names(tmp_path: Path, site: Site) -> None:
    t = tracker(tmp_path, site)
    t.dhcp_outcome(reply(MessageType.ACK, hostname="evil\x1b[2Jname", vendor_class="Some Laptop"))
    t.close()
    rows = device_rows(read_devices(tmp_path / "state"))
    assert json.loads(render(rows, DEVICE_COLUMNS, "json")) == rows
    [parsed] = csv.DictReader(io.StringIO(render(rows, DEVICE_COLUMNS, "csv")))
    assert parsed["hostname"] == "evil\x1b[2Jname" and parsed["model"] == ""
    table = render(rows, DEVICE_COLUMNS, "table")
    assert "\x1b" not in table
    assert table.splitlines()[1].split() == ["00:56:2b:04:36:15", str(ADDR), "mpp", "-", "Some\\x20Laptop",
                                             "evil\\x1b[2Jname", "2020-09-13T12:26:40Z", "2023-11-14T22:13:20Z",
                                             "leased"]
