"""Engine: which options each device gets, in which order, within which size, and where replies go."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from fake_client import RELAY, SERVER, FakeClient, Wire, make_site, option_codes, reply, reply_options

from bootstrapd.dhcp.codec import MessageType, parse
from bootstrapd.dhcp.engine import Drop, DropReason
from bootstrapd.dhcp.options import OptionCode, decode_tlvs

PROVISIONING = {150, 159, 160}
MPP_URL = b"http://prov1.staging.example.net/$PSN.xml"


# -- classes ----------------------------------------------------------------------------------------------


def test_mpp_class_gets_exactly_the_configured_values(wire: Wire) -> None:
    ack = FakeClient(wire, vendor_class=b"CP-8841-3PCC").dora()
    opts = reply_options(ack)
    assert ack.device_class == "mpp" and ack.lease.device_class == "mpp"  # type: ignore[union-attr]
    assert opts[OptionCode.TFTP_SERVER_NAME] == b"198.18.0.1"
    assert opts[OptionCode.CISCO_TFTP_SERVERS] == SERVER.packed
    assert opts[OptionCode.PROVISIONING_SERVER] == b"http://198.18.0.10"
    assert opts[OptionCode.PROVISIONING_URL] == MPP_URL
    assert opts[OptionCode.DOMAIN_NAME] == b"staging.example.net"
    assert opts[OptionCode.DNS_SERVERS] == opts[OptionCode.NTP_SERVERS] == SERVER.packed
    assert opts[161] == b"hello"  # raw option for class mpp


def test_vendor_class_with_trailing_nul_and_other_case_matches(wire: Wire) -> None:
    ack = FakeClient(wire, vendor_class=b"cp-7841-3pcc\x00").dora()
    assert ack.device_class == "mpp"
    assert reply_options(ack)[OptionCode.PROVISIONING_URL] == MPP_URL


def test_tr069_class_gets_option_43_and_no_mpp_options(wire: Wire) -> None:
    ack = FakeClient(wire, vendor_class=b"dslforum.org").dora()
    opts = reply_options(ack)
    assert ack.device_class == "tr069"
    assert decode_tlvs(opts[OptionCode.VENDOR_SPECIFIC]) == ((1, b"https://acs.example.net/cwmp"),)
    assert not PROVISIONING & set(opts) and 161 not in opts


def test_never_150_159_160_to_unclassified_even_from_defaults(tmp_path: Path) -> None:
    # Provisioning options configured for everyone, raw 160 for everyone: still never to unclassified.
    site = make_site(tmp_path, {"dhcp": {
        "options": {"dns_servers": ["198.18.0.1"], "cisco_tftp_servers": ["198.18.0.1"],
                    "provisioning_url": "http://x/"},
        "raw_options": [{"code": 162, "type": "string", "value": "all"}],
    }})  # fmt: skip
    wire = Wire(site)
    laptop = FakeClient(wire, mac="02:00:00:00:00:01", vendor_class=b"udhcp 1.36.1")
    ack = laptop.dora()
    opts = reply_options(ack)
    assert ack.device_class is None and ack.lease.device_class is None  # type: ignore[union-attr]
    assert not PROVISIONING & set(opts)
    assert opts[162] == b"all" and OptionCode.DNS_SERVERS in opts
    phone = reply_options(FakeClient(wire).dora())
    assert set(phone) >= PROVISIONING and phone[162] == b"all"


def test_unknown_devices_ignore_drops_unclassified_only(tmp_path: Path) -> None:
    wire = Wire(make_site(tmp_path, {"dhcp": {"unknown_devices": "ignore"}}))
    outcome = FakeClient(wire, mac="02:00:00:00:00:01", vendor_class=b"MSFT 5.0").discover()
    assert isinstance(outcome, Drop) and outcome.reason is DropReason.UNKNOWN_DEVICE
    none_sent = FakeClient(wire, mac="02:00:00:00:00:02", vendor_class=None).inform(IPv4Address("198.18.0.9"))
    assert isinstance(none_sent, Drop) and none_sent.reason is DropReason.UNKNOWN_DEVICE
    FakeClient(wire).dora()  # an MPP phone
    # A reserved device is known to the operator, whatever it sends.
    assert FakeClient(wire, mac="00:56:2b:04:36:15", vendor_class=b"x").dora().device_class == "mpp"


def test_subnet_options_over_defaults_and_class_over_subnet(tmp_path: Path) -> None:
    site = make_site(tmp_path, {"dhcp": {
        "options": {"dns_servers": ["198.18.0.1"], "tftp_server": "default.example"},
        "subnets": [{"prefix": "198.18.0.0/24", "pools": ["198.18.0.100-198.18.0.199"],
                     "options": {"dns_servers": ["198.18.0.53"], "tftp_server": "subnet.example"}}],
    }})  # fmt: skip
    wire = Wire(site)
    laptop = reply_options(FakeClient(wire, mac="02:00:00:00:00:01", vendor_class=None).dora())
    assert laptop[OptionCode.DNS_SERVERS] == IPv4Address("198.18.0.53").packed
    assert laptop[OptionCode.TFTP_SERVER_NAME] == b"subnet.example"
    assert OptionCode.ROUTER not in laptop  # the subnet has no router
    phone = reply_options(FakeClient(wire).dora())
    assert phone[OptionCode.TFTP_SERVER_NAME] == b"198.18.0.1"  # the class's own
    assert phone[OptionCode.DNS_SERVERS] == IPv4Address("198.18.0.53").packed


# -- order and size -------------------------------------------------------------------------------------------


def test_option_order_by_request_list_then_the_rest(wire: Wire) -> None:
    client = FakeClient(wire, request_list=(160, 66, 1, 6))
    codes = option_codes(client.dora())
    assert codes[:5] == [53, 54, 51, 58, 59]
    assert codes[5:9] == [160, 66, 1, 6]
    # Not requested, sent anyway (class options are always sent), ascending after the requested ones.
    assert codes[9:] == [3, 15, 42, 150, 159, 161]


def test_class_options_sent_without_request_list(wire: Wire) -> None:
    codes = option_codes(FakeClient(wire, request_list=()).dora())
    assert set(codes) >= PROVISIONING and codes[-1] == 161


def test_client_id_echoed_in_replies(wire: Wire) -> None:
    client = FakeClient(wire, client_id=b"\xffphone-1")
    offer = reply(client.discover(), MessageType.OFFER)
    assert reply_options(offer)[OptionCode.CLIENT_ID] == b"\xffphone-1"  # RFC 6842
    nak = reply(client.init_reboot(IPv4Address("198.18.2.100")), MessageType.NAK)
    assert reply_options(nak)[OptionCode.CLIENT_ID] == b"\xffphone-1"


def test_option_82_echoed_last_to_the_relay(wire: Wire) -> None:
    info = bytes.fromhex("010469643031") + bytes.fromhex("0206aabbccddeeff")  # circuit id, remote id
    client = FakeClient(wire, giaddr=RELAY, relay_info=info)
    for outcome in (client.discover(), client.dora(), client.init_reboot(IPv4Address("198.18.0.100"))):
        codes = option_codes(outcome)  # type: ignore[arg-type]
        assert codes[-1] == OptionCode.RELAY_AGENT_INFO
        assert reply_options(outcome)[OptionCode.RELAY_AGENT_INFO] == info  # type: ignore[arg-type]


def test_option_82_never_sent_to_a_client_directly(wire: Wire) -> None:
    client = FakeClient(wire, extra=((82, b"\x01\x02ab"),))  # a client forging relay info, no giaddr
    assert OptionCode.RELAY_AGENT_INFO not in reply_options(client.dora())


def _long_site(tmp_path: Path) -> Wire:
    raw = [{"code": code, "type": "string", "value": "x" * 200, "classes": ["mpp"]} for code in (200, 201)]
    site = make_site(tmp_path, {"dhcp": {"raw_options": raw}})
    return Wire(site)


def test_max_message_size_honoured_dropping_unrequested_first(tmp_path: Path) -> None:
    wire = _long_site(tmp_path)
    small = FakeClient(wire, max_message_size=576, request_list=(1, 3, 6, 15, 160))
    ack = small.dora()
    assert len(ack.wire) <= 576 - 28
    codes = option_codes(ack)
    assert {1, 3, 6, 15, 160} <= set(codes)  # requested: kept
    assert set(ack.dropped_options) & {200, 201}  # unrequested long ones: left out
    big = FakeClient(wire, mac="00:56:2b:00:00:02", max_message_size=1500).dora()
    assert {200, 201} <= set(option_codes(big)) and len(big.wire) > 576 - 28 and not big.dropped_options


def test_without_option_57_replies_fit_576_byte_datagrams(tmp_path: Path) -> None:
    ack = FakeClient(_long_site(tmp_path)).dora()
    assert len(ack.wire) <= 548 and ack.dropped_options


# -- destinations (RFC 2131 4.1) ----------------------------------------------------------------------------------


def test_offer_without_broadcast_flag_is_unicast_at_layer_2(wire: Wire) -> None:
    client = FakeClient(wire)
    offer = reply(client.discover(), MessageType.OFFER)
    dest = offer.destination
    assert dest.ip == offer.address and dest.port == 68
    assert dest.l2_unicast == client.chaddr and not dest.broadcast


def test_broadcast_flag_gets_broadcast_and_flag_is_copied(wire: Wire) -> None:
    client = FakeClient(wire, broadcast=True)
    offer = reply(client.discover(), MessageType.OFFER)
    assert offer.destination.broadcast and offer.destination.ip == IPv4Address("255.255.255.255")
    assert offer.destination.l2_unicast is None and parse(offer.wire).broadcast


def test_ports_follow_listen_dhcp_port(tmp_path: Path) -> None:
    wire = Wire(make_site(tmp_path, {"listen": {"dhcp_port": 6767}}))
    assert reply(FakeClient(wire).discover(), MessageType.OFFER).destination.port == 6768
    relayed = reply(FakeClient(wire, giaddr=RELAY).discover(), MessageType.OFFER)
    assert relayed.destination.port == 6767
