"""Engine: subnets, pool exhaustion, reservations, reload, and the same exchanges on the SQLite store."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from fake_client import RELAY, FakeClient, Wire, ip, make_site, reply, reply_options

from bootstrapd.dhcp.codec import MessageType
from bootstrapd.dhcp.engine import Drop, DropReason
from bootstrapd.dhcp.leases import LeaseState
from bootstrapd.dhcp.options import OptionCode
from bootstrapd.dhcp.store_sqlite import open_store

RESERVED_MAC = "00:56:2b:04:36:15"
RESERVED = IPv4Address("198.18.0.50")
RELAYED_POOL = [IPv4Address(f"198.18.2.{n}") for n in (100, 101, 102)]


def mac(n: int) -> str:
    return f"00:56:2b:00:01:{n:02x}"


def relayed(wire: Wire, n: int) -> FakeClient:
    return FakeClient(wire, mac=mac(n), giaddr=RELAY)


# -- subnet selection and pool exhaustion ------------------------------------------------------------------


def test_relayed_discover_gets_address_of_relay_subnet_sent_to_relay(wire: Wire) -> None:
    offer = reply(relayed(wire, 1).discover(), MessageType.OFFER)
    assert offer.address == ip("198.18.2.100")
    assert reply_options(offer)[OptionCode.ROUTER] == RELAY.packed
    assert offer.destination.ip == RELAY and offer.destination.port == 67
    assert offer.destination.l2_unicast is None and not offer.destination.broadcast


def test_pool_exhausted_drops_discover(wire: Wire) -> None:
    leased = {relayed(wire, n).dora().address for n in range(3)}
    assert leased == set(RELAYED_POOL)
    outcome = relayed(wire, 9).discover()
    assert isinstance(outcome, Drop) and outcome.reason is DropReason.POOL_EXHAUSTED


def test_pool_exhausted_reuses_expired_leases_oldest_first(wire: Wire) -> None:
    clients = [relayed(wire, n) for n in range(3)]
    for client in clients:
        client.dora()
        wire.advance(10)
    # Lease ends: clients[1] first, then [0]; [2] keeps renewing.
    wire.advance(3000)
    clients[1].release()
    wire.advance(600)
    clients[2].renew()
    wire.advance(1000)  # clients[0]'s lease has now expired too, after clients[1]'s release
    newcomer = reply(relayed(wire, 7).dora(), MessageType.ACK)
    assert newcomer.address == clients[1].address  # free the longest
    second = reply(relayed(wire, 8).dora(), MessageType.ACK)
    assert second.address == clients[0].address
    outcome = relayed(wire, 9).discover()
    assert isinstance(outcome, Drop) and outcome.reason is DropReason.POOL_EXHAUSTED


def test_offers_not_taken_up_are_reused_after_offer_hold(wire: Wire) -> None:
    for n in range(3):
        reply(relayed(wire, n).discover(), MessageType.OFFER)
    assert isinstance(relayed(wire, 9).discover(), Drop)
    wire.advance(31)
    assert reply(relayed(wire, 9).dora(), MessageType.ACK).address == RELAYED_POOL[0]


# -- reservations ----------------------------------------------------------------------------------------------


def test_reservation_gets_its_address_class_and_hostname(wire: Wire) -> None:
    # The reservation says class mpp; the device itself sends no MPP vendor class.
    device = FakeClient(wire, mac=RESERVED_MAC, vendor_class=b"udhcp 1.36")
    ack = device.dora()
    opts = reply_options(ack)
    assert ack.address == RESERVED and ack.device_class == "mpp"
    assert opts[OptionCode.HOSTNAME] == b"SEP00562B043615"
    assert opts[OptionCode.CISCO_TFTP_SERVERS] == ip("198.18.0.1").packed
    assert ack.lease is not None and ack.lease.hostname == "SEP00562B043615"


def test_reservation_beats_the_devices_previous_dynamic_address(tmp_path: Path) -> None:
    wire = Wire(make_site(tmp_path, {"dhcp": {"reservations": []}}))
    device = FakeClient(wire, mac=RESERVED_MAC)
    dynamic = device.dora().address
    assert dynamic != RESERVED
    wire.engine.reload(make_site(tmp_path, name="with-reservation.yaml"))
    reply(device.renew(), MessageType.NAK)  # reservations always win, also over a bound lease
    assert device.dora().address == RESERVED


def test_reserved_address_is_never_given_to_anyone_else(wire: Wire) -> None:
    other = FakeClient(wire, mac=mac(1))
    assert reply(other.discover(requested=RESERVED), MessageType.OFFER).address != RESERVED
    reply(other.init_reboot(RESERVED), MessageType.NAK)
    other.dora()
    other.address = RESERVED
    reply(other.renew(), MessageType.NAK)


def test_reservation_takes_its_address_back_from_a_dynamic_lease(tmp_path: Path) -> None:
    wire = Wire(make_site(tmp_path))
    squatter = FakeClient(wire, mac=mac(1))
    taken = squatter.dora().address
    assert taken == ip("198.18.0.100")
    # The operator carves .100 out of the pool and reserves it while the squatter's lease is valid.
    site = make_site(
        tmp_path,
        {"dhcp": {
            "subnets": [
                {"prefix": "198.18.0.0/24", "pools": ["198.18.0.101-198.18.0.199"]},
                {"prefix": "198.18.2.0/24", "pools": ["198.18.2.100-198.18.2.102"]},
            ],
            "reservations": [{"mac": mac(2), "address": "198.18.0.100", "class": "mpp"}],
        }},
        name="reserve-100.yaml",
    )  # fmt: skip
    wire.engine.reload(site)
    assert FakeClient(wire, mac=mac(2)).dora().address == taken
    reply(squatter.renew(), MessageType.NAK)
    assert squatter.dora().address != taken


# -- reload --------------------------------------------------------------------------------------------------------


def test_reload_keeps_leases_and_naks_out_of_pool_renewals(tmp_path: Path) -> None:
    wire = Wire(make_site(tmp_path))
    outside = FakeClient(wire, mac=mac(1))
    inside = FakeClient(wire, mac=mac(2), giaddr=RELAY)
    old = outside.dora().address
    inside.dora()
    shrunk = {"dhcp": {"subnets": [
        {"prefix": "198.18.0.0/24", "pools": ["198.18.0.150-198.18.0.199"], "router": "198.18.0.1"},
        {"prefix": "198.18.2.0/24", "pools": ["198.18.2.100-198.18.2.102"], "router": "198.18.2.1"},
    ]}}  # fmt: skip
    wire.engine.reload(make_site(tmp_path, shrunk, name="shrunk.yaml"))
    assert wire.store.get_by_address(old).state is LeaseState.BOUND  # type: ignore[union-attr]  # kept
    reply(inside.renew(), MessageType.ACK)
    reply(outside.renew(), MessageType.NAK)
    assert wire.store.get_by_address(old) is not None  # NAKed, not deleted
    assert outside.dora().address == ip("198.18.0.150")
    assert wire.engine.pool_sizes()["198.18.0.0/24"] == 50


def test_reload_then_init_reboot_out_of_pool_is_nak_even_when_not_authoritative(tmp_path: Path) -> None:
    wire = Wire(make_site(tmp_path, {"dhcp": {"authoritative": False}}))
    client = FakeClient(wire, mac=mac(1))
    old = client.dora().address
    shrunk = {"dhcp": {"authoritative": False, "subnets": [
        {"prefix": "198.18.0.0/24", "pools": ["198.18.0.150-198.18.0.199"]},
    ]}}  # fmt: skip
    wire.engine.reload(make_site(tmp_path, shrunk, name="shrunk.yaml"))
    reply(client.init_reboot(old), MessageType.NAK)  # our own lease: we know it is wrong now


def test_reload_removing_a_subnet_naks_its_renewals(tmp_path: Path) -> None:
    wire = Wire(make_site(tmp_path))
    client = FakeClient(wire, mac=mac(1), giaddr=RELAY)
    client.dora()
    one_subnet = {"dhcp": {"subnets": [
        {"prefix": "198.18.0.0/24", "pools": ["198.18.0.100-198.18.0.199"], "router": "198.18.0.1"},
    ]}}  # fmt: skip
    wire.engine.reload(make_site(tmp_path, one_subnet, name="one.yaml"))
    client.giaddr = IPv4Address(0)
    reply(client.renew(), MessageType.NAK)


# -- gauges ------------------------------------------------------------------------------------------------------


def test_gauges_count_pools_bound_leases_and_held_offers(wire: Wire) -> None:
    FakeClient(wire, mac=mac(1)).dora()
    relayed(wire, 2).dora()
    relayed(wire, 3).discover()
    # 100 pool addresses minus none reserved inside; 3 in the relayed pool.
    assert wire.engine.pool_sizes() == {"198.18.0.0/24": 100, "198.18.2.0/24": 3}
    assert wire.engine.active_leases(wire.now) == {"198.18.0.0/24": 1, "198.18.2.0/24": 1}
    assert wire.engine.offers_held(wire.now) == 1
    assert wire.engine.active_leases(wire.now + 3601) == {"198.18.0.0/24": 0, "198.18.2.0/24": 0}


# -- the same exchanges on the durable store ---------------------------------------------------------------------


def test_sqlite_store_dora_survives_reopen_and_renews_same_address(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    store = open_store(tmp_path / "state")
    wire = Wire(site, store)
    phones = [FakeClient(wire, mac=mac(n)) for n in range(5)]
    addresses = [phone.dora().address for phone in phones]
    phones[4].decline()
    store.flush()  # what the shell does before sending the ACKs
    store.close()
    reopened = open_store(tmp_path / "state")
    wire2 = Wire(site, reopened)
    wire2.now = wire.now + 1800
    for phone, address in zip(phones[:4], addresses[:4], strict=True):
        phone.wire = wire2
        assert reply(phone.renew(), MessageType.ACK).address == address
    newcomer = reply(FakeClient(wire2, mac=mac(9)).dora(), MessageType.ACK)
    assert newcomer.address not in addresses  # nor the declined one, still in probation
    assert reopened.get_by_address(addresses[4]).state is LeaseState.DECLINED  # type: ignore[union-attr]
    reopened.close()
