"""Engine behaviour by RFC 2131 client state, played by the fake client (design.md convention 13)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_client import RELAY, SERVER, ZERO, FakeClient, Wire, dropped, ip, make_site, reply, reply_options

from bootstrapd.dhcp.codec import BROADCAST_FLAG, Message, MessageType, Op
from bootstrapd.dhcp.engine import DropReason, Silent
from bootstrapd.dhcp.leases import LeaseState
from bootstrapd.dhcp.options import OptionCode

# -- INIT -> SELECTING -> REQUESTING -> BOUND -------------------------------------------------------------


def test_init_discover_gets_offer_held_for_offer_hold(wire: Wire) -> None:
    offer = reply(FakeClient(wire).discover(), MessageType.OFFER)
    assert offer.address == offer.message.yiaddr == ip("198.18.0.100")
    assert offer.new_device and offer.device_class == "mpp"
    held = wire.store.get_by_address(offer.address)
    assert held is not None and held.state is LeaseState.OFFERED
    assert held.expires == wire.now + 30
    assert wire.engine.offers_held(wire.now) == 1
    assert wire.engine.offers_held(wire.now + 31) == 0


def test_init_two_phones_booting_together_get_different_addresses(wire: Wire) -> None:
    first = reply(FakeClient(wire, mac="00:56:2b:00:00:01").discover(), MessageType.OFFER)
    second = reply(FakeClient(wire, mac="00:56:2b:00:00:02").discover(), MessageType.OFFER)
    assert first.address != second.address


def test_init_discover_repeated_offers_the_same_address(wire: Wire) -> None:
    client = FakeClient(wire)
    first = reply(client.discover(), MessageType.OFFER)
    wire.advance(4)
    again = reply(client.discover(), MessageType.OFFER)
    assert again.address == first.address and not again.new_device


def test_selecting_request_gets_ack_and_bound_lease(wire: Wire) -> None:
    client = FakeClient(wire)
    ack = client.dora()
    assert ack.lease is not None and ack.lease.state is LeaseState.BOUND
    assert ack.lease.expires == wire.now + 3600 and ack.lease.device_class == "mpp"
    assert client.address == ack.address == wire.store.get_by_address(ack.address).address  # type: ignore[union-attr]
    opts = reply_options(ack)
    assert opts[OptionCode.SERVER_ID] == SERVER.packed
    assert opts[OptionCode.LEASE_TIME] == (3600).to_bytes(4, "big")
    assert opts[OptionCode.RENEWAL_TIME] == (1800).to_bytes(4, "big")  # T1 = 50 %
    assert opts[OptionCode.REBINDING_TIME] == (3150).to_bytes(4, "big")  # T2 = 87.5 %
    assert opts[OptionCode.SUBNET_MASK] == ip("255.255.255.0").packed
    assert opts[OptionCode.ROUTER] == SERVER.packed


def test_selecting_request_for_other_server_forgets_offer(wire: Wire) -> None:
    client = FakeClient(wire)
    offer = reply(client.discover(), MessageType.OFFER)
    dropped(client.select(offer, server_id=ip("198.18.0.254")), DropReason.OTHER_SERVER)
    record = wire.store.get_by_address(offer.address)  # type: ignore[arg-type]
    assert record is not None and record.is_free(wire.now)
    assert wire.engine.offers_held(wire.now) == 0


def test_selecting_request_after_address_went_to_another_client_is_nak(wire: Wire) -> None:
    slow = FakeClient(wire, mac="00:56:2b:00:00:01")
    offer = reply(slow.discover(), MessageType.OFFER)
    wire.advance(31)  # the hold is over; another client asks for that very address (option 50)
    fast = FakeClient(wire, mac="00:56:2b:00:00:02")
    assert reply(fast.discover(requested=offer.address), MessageType.OFFER).address == offer.address
    nak = reply(slow.select(offer), MessageType.NAK)
    assert nak.destination.broadcast and nak.message.yiaddr == ZERO
    assert wire.store.get_by_address(offer.address).client_id == b"\x01" + fast.chaddr  # type: ignore[union-attr]


# -- INIT-REBOOT ----------------------------------------------------------------------------------------------


def test_init_reboot_own_address_ack(wire: Wire) -> None:
    client = FakeClient(wire)
    address = client.dora().address
    wire.advance(600)
    ack = reply(client.init_reboot(), MessageType.ACK)
    assert ack.address == address and ack.lease.expires == wire.now + 3600  # type: ignore[union-attr]


def test_init_reboot_wrong_subnet_nak(wire: Wire) -> None:
    client = FakeClient(wire)
    old = client.dora().address
    client.giaddr = RELAY  # the phone was moved to the floor behind the relay
    nak = reply(client.init_reboot(old), MessageType.NAK)
    # RFC 2131 4.3.2: through a relay, with the broadcast bit set so that the relay broadcasts it.
    assert nak.destination.ip == RELAY and nak.destination.port == 67
    assert nak.message.flags & BROADCAST_FLAG
    assert reply_options(nak)[OptionCode.SERVER_ID] == SERVER.packed


def test_init_reboot_wrong_subnet_on_local_link_nak_is_broadcast(wire: Wire) -> None:
    nak = reply(FakeClient(wire).init_reboot(ip("198.18.2.100")), MessageType.NAK)
    assert nak.destination.broadcast and nak.destination.ip == ip("255.255.255.255")
    assert nak.destination.port == 68 and nak.destination.l2_unicast is None


def test_init_reboot_wrong_subnet_silent_when_not_authoritative(tmp_path: Path) -> None:
    wire = Wire(make_site(tmp_path, {"dhcp": {"authoritative": False}}))
    dropped(FakeClient(wire).init_reboot(ip("198.18.2.100")), DropReason.NOT_AUTHORITATIVE)


def test_init_reboot_unknown_client_nak_when_authoritative(wire: Wire) -> None:
    # An address in our pool that we never gave this client: not its own (site-yaml.md authoritative).
    reply(FakeClient(wire).init_reboot(ip("198.18.0.150")), MessageType.NAK)


def test_init_reboot_unknown_client_silent_when_not_authoritative(tmp_path: Path) -> None:
    # RFC 2131 4.3.2: "If the DHCP server has no record of this client, then it MUST remain silent".
    wire = Wire(make_site(tmp_path, {"dhcp": {"authoritative": False}}))
    dropped(FakeClient(wire).init_reboot(ip("198.18.0.150")), DropReason.NO_LEASE)


def test_init_reboot_for_another_clients_address_nak(wire: Wire) -> None:
    owner = FakeClient(wire, mac="00:56:2b:00:00:01")
    address = owner.dora().address
    reply(FakeClient(wire, mac="00:56:2b:00:00:02").init_reboot(address), MessageType.NAK)
    assert wire.store.get_by_address(address).client_id == b"\x01" + owner.chaddr  # type: ignore[arg-type,union-attr]


# -- BOUND -> RENEWING -> REBINDING ---------------------------------------------------------------------------


def test_renewing_unicast_extends_lease(wire: Wire) -> None:
    client = FakeClient(wire)
    address = client.dora().address
    wire.advance(1800)  # T1
    ack = reply(client.renew(), MessageType.ACK)
    assert ack.address == address and ack.message.ciaddr == address
    assert ack.lease.expires == wire.now + 3600 and not ack.new_device  # type: ignore[union-attr]
    # RFC 2131 4.1: ciaddr set, no relay: an ordinary unicast to ciaddr, no layer-2 tricks.
    assert ack.destination.ip == address and ack.destination.port == 68
    assert ack.destination.l2_unicast is None and not ack.destination.broadcast


def test_rebinding_extends_lease_and_keeps_first_seen(wire: Wire) -> None:
    client = FakeClient(wire)
    first = client.dora().lease
    wire.advance(3150)  # T2
    ack = reply(client.rebind(), MessageType.ACK)
    assert ack.address == first.address and ack.lease.first_seen == first.first_seen  # type: ignore[union-attr]


def test_rebinding_through_relay_goes_back_to_the_relay(wire: Wire) -> None:
    client = FakeClient(wire, giaddr=RELAY)
    address = client.dora().address
    assert address in (ip("198.18.2.100"), ip("198.18.2.101"), ip("198.18.2.102"))
    ack = reply(client.rebind(), MessageType.ACK)
    assert ack.destination.ip == RELAY and ack.destination.port == 67


def test_renewing_unicast_from_relayed_client_uses_its_ciaddr_subnet(wire: Wire) -> None:
    client = FakeClient(wire, giaddr=RELAY)
    address = client.dora().address
    client.giaddr = ZERO  # RENEWING is unicast straight to the server, not through the relay
    ack = reply(client.renew(), MessageType.ACK)
    assert ack.address == address and ack.lease.subnet == "198.18.2.0/24"  # type: ignore[union-attr]


def test_rebinding_for_a_lease_we_never_gave_is_nak_when_authoritative(wire: Wire) -> None:
    client = FakeClient(wire, address=ip("198.18.0.120"))
    reply(client.rebind(), MessageType.NAK)


def test_rebinding_for_a_lease_we_never_gave_is_silent_when_not_authoritative(tmp_path: Path) -> None:
    wire = Wire(make_site(tmp_path, {"dhcp": {"authoritative": False}}))
    dropped(FakeClient(wire, address=ip("198.18.0.120")).rebind(), DropReason.NO_LEASE)


def test_renewing_after_expiry_while_nobody_took_the_address_acks(wire: Wire) -> None:
    client = FakeClient(wire)
    address = client.dora().address
    wire.advance(4000)
    assert reply(client.renew(), MessageType.ACK).address == address


# -- DECLINE, RELEASE, INFORM ---------------------------------------------------------------------------------


def test_decline_quarantines_address_for_probation(wire: Wire) -> None:
    client = FakeClient(wire)
    address = client.dora().address
    outcome = client.decline()
    assert isinstance(outcome, Silent) and outcome.event == "decline"
    assert outcome.lease is not None and outcome.lease.state is LeaseState.DECLINED
    assert outcome.lease.expires == wire.now + 3600
    # Neither the decliner nor anyone asking for it by name gets it during probation ...
    assert reply(client.discover(), MessageType.OFFER).address != address
    other = FakeClient(wire, mac="00:56:2b:00:00:02")
    assert reply(other.discover(requested=address), MessageType.OFFER).address != address
    # ... and after probation it is an ordinary free address again.
    wire.advance(3601)
    third = FakeClient(wire, mac="00:56:2b:00:00:03")
    assert reply(third.discover(requested=address), MessageType.OFFER).address == address


def test_decline_of_an_address_the_client_does_not_hold_is_dropped(wire: Wire) -> None:
    owner = FakeClient(wire, mac="00:56:2b:00:00:01")
    address = owner.dora().address
    liar = FakeClient(wire, mac="00:56:2b:00:00:02", address=address, server_id=SERVER)
    dropped(liar.decline(), DropReason.NO_LEASE)
    assert wire.store.get_by_address(address).state is LeaseState.BOUND  # type: ignore[arg-type,union-attr]


def test_release_frees_address_and_returning_client_gets_it_back(wire: Wire) -> None:
    client = FakeClient(wire)
    address = client.dora().address
    outcome = client.release()
    assert isinstance(outcome, Silent) and outcome.event == "release"
    assert outcome.lease is not None and outcome.lease.state is LeaseState.RELEASED
    assert outcome.lease.is_free(wire.now)
    wire.advance(60)
    assert client.dora().address == address


def test_release_naming_another_server_is_dropped(wire: Wire) -> None:
    client = FakeClient(wire)
    client.dora()
    client.server_id = ip("198.18.0.254")
    dropped(client.release(), DropReason.OTHER_SERVER)


def test_returning_client_gets_previous_address_after_expiry(wire: Wire) -> None:
    client = FakeClient(wire)
    address = client.dora().address
    FakeClient(wire, mac="00:56:2b:00:00:02").dora()
    wire.advance(7200)  # lease long expired, address not reused yet
    assert client.dora().address == address


def test_client_id_and_chaddr_identify_the_same_client(wire: Wire) -> None:
    # RFC 2132 9.14 form `01:<mac>`: the same phone with and without option 61 is one client.
    client = FakeClient(wire, client_id=bytes.fromhex("0100562b000001"))
    address = client.dora().address
    client.client_id = None
    assert client.dora().address == address


def test_inform_gets_options_without_lease(wire: Wire) -> None:
    static = ip("198.18.0.20")
    ack = reply(FakeClient(wire).inform(static), MessageType.ACK)
    opts = reply_options(ack)
    assert ack.message.ciaddr == static and ack.message.yiaddr == ZERO and ack.lease is None
    assert OptionCode.LEASE_TIME not in opts and OptionCode.RENEWAL_TIME not in opts  # RFC 2131 4.3.5
    assert opts[OptionCode.CISCO_TFTP_SERVERS] == SERVER.packed
    assert ack.destination.ip == static and ack.destination.port == 68
    assert wire.store.get_by_address(static) is None


# -- accept filters -------------------------------------------------------------------------------------------


def _raw(wire: Wire, **fields: object) -> object:
    base: dict[str, object] = {"chaddr": bytes.fromhex("00562b000001"), "options": ((53, b"\x01"),)}
    base.update(fields)
    return wire.send(Message(**base))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"op": Op.BOOTREPLY}, DropReason.RFC_VIOLATION),
        ({"options": ()}, DropReason.RFC_VIOLATION),
        ({"options": ((53, b"\x02"),)}, DropReason.RFC_VIOLATION),  # an OFFER sent to a server
        ({"options": ((53, b"\x0a"),)}, DropReason.NOT_FOR_US),  # RFC 4388 leasequery: not served
        ({"hops": 17}, DropReason.RFC_VIOLATION),
        ({"chaddr": bytes(6)}, DropReason.RFC_VIOLATION),
        ({"options": ((53, b"\x03"),)}, DropReason.RFC_VIOLATION),  # REQUEST without ciaddr or option 50
        ({"giaddr": ip("10.0.0.1")}, DropReason.NO_SUBNET),
    ],
)
def test_messages_no_server_answers_are_dropped_with_reason(
    wire: Wire, fields: dict[str, object], reason: DropReason
) -> None:
    dropped(_raw(wire, **fields), reason)


def test_interface_outside_every_subnet_is_no_subnet(tmp_path: Path) -> None:
    wire = Wire(make_site(tmp_path), local_address=ip("10.1.1.1"))
    dropped(FakeClient(wire).discover(), DropReason.NO_SUBNET)
