"""An in-process DHCP client for engine tests (design.md convention 13): it builds its messages with our
codec, passes the bytes through parse() as the transport would, runs them through Engine.handle with a
clock the test moves, and parses the reply bytes back the way a client reads them.

A Wire is one engine and its lease store; a FakeClient is one device on it, walking the RFC 2131 client
states: INIT -> SELECTING -> REQUESTING -> BOUND -> RENEWING -> REBINDING, INIT-REBOOT, and DECLINE,
RELEASE, INFORM.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import yaml

from bootstrapd.config.loader import load_site
from bootstrapd.config.model import Site
from bootstrapd.dhcp.codec import BROADCAST_FLAG, Message, MessageType, build, parse
from bootstrapd.dhcp.engine import Drop, DropReason, Engine, Reply, Rx, Silent
from bootstrapd.dhcp.leases import LeaseStore
from bootstrapd.dhcp.options import OptionCode
from bootstrapd.dhcp.store_memory import MemoryLeaseStore

EPOCH = 1_700_000_000.0
ZERO = IPv4Address(0)
SERVER = IPv4Address("198.18.0.1")
RELAY = IPv4Address("198.18.2.1")

# The site every engine test starts from; tests change it with overrides (mappings merge, lists replace).
BASE_SITE: dict[str, Any] = {
    "site": "test-floor",
    "listen": {"interfaces": ["stg0"], "address": "198.18.0.1"},
    "domain": "staging.example.net",
    "state_dir": "/nonexistent",
    "dhcp": {
        "authoritative": True,
        "lease_time": "1h",
        "offer_hold": "30s",
        "decline_probation": "1h",
        "unknown_devices": "lease",
        "options": {"dns_servers": ["198.18.0.1"], "ntp_servers": ["198.18.0.1"]},
        "subnets": [
            {"prefix": "198.18.0.0/24", "pools": ["198.18.0.100-198.18.0.199"], "router": "198.18.0.1"},
            {"prefix": "198.18.2.0/24", "pools": ["198.18.2.100-198.18.2.102"], "router": "198.18.2.1"},
        ],
        "reservations": [
            {"mac": "00-56-2B-04-36-15", "address": "198.18.0.50", "hostname": "SEP00562B043615", "class": "mpp"}
        ],
        "classes": [
            {
                "name": "mpp",
                "match": {"vendor_class": ["CP-*-3PCC"]},
                "options": {
                    "tftp_server": "198.18.0.1",
                    "cisco_tftp_servers": ["198.18.0.1"],
                    "provisioning_server": "http://198.18.0.10",
                    "provisioning_url": "http://prov1.staging.example.net/$PSN.xml",
                },
            },
            {
                "name": "tr069",
                "match": {"vendor_class": ["dslforum.org"]},
                "options": {"acs": {"url": "https://acs.example.net/cwmp"}},
            },
        ],
        "raw_options": [{"code": 161, "type": "string", "value": "hello", "classes": ["mpp"]}],
    },
}


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_site(tmp_path: Path, overrides: dict[str, Any] | None = None, name: str = "site.yaml") -> Site:
    """BASE_SITE with overrides, written out and read by the real loader (so it passes `check`)."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump(merged(BASE_SITE, overrides or {}), sort_keys=False))
    return load_site(str(path))


Outcome = Reply | Silent | Drop


class Wire:
    """One engine, its store, and the clock. `local_address` is the server's address on the link the
    clients are on (what the transport puts in Rx.local_address)."""

    def __init__(self, site: Site, store: LeaseStore | None = None, local_address: IPv4Address = SERVER) -> None:
        self.store: LeaseStore = store if store is not None else MemoryLeaseStore()
        self.engine = Engine(site, self.store)
        self.local_address = local_address
        self.now = EPOCH

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def send(self, msg: Message, src_ip: IPv4Address = ZERO) -> Outcome:
        received = parse(build(msg, 1400))  # exactly what the transport would hand the engine
        outcome = self.engine.handle(received, Rx("stg0", self.local_address, src_ip, 68), self.now)
        if isinstance(outcome, Reply):
            assert parse(outcome.wire) == outcome.message, "the wire bytes are the reply message"
        return outcome


_xids = itertools.count(0x1000)


@dataclass
class FakeClient:
    wire: Wire
    mac: str = "00:56:2b:00:00:01"
    vendor_class: bytes | None = b"CP-8841-3PCC"
    hostname: bytes | None = None
    client_id: bytes | None = None
    request_list: tuple[int, ...] = (1, 3, 6, 15, 42, 66, 150, 159, 160)
    max_message_size: int | None = None
    broadcast: bool = False
    giaddr: IPv4Address = ZERO  # set: the client sits behind a relay with this address
    relay_info: bytes | None = None  # option 82 the relay adds
    extra: tuple[tuple[int, bytes], ...] = ()
    # What the client learnt.
    address: IPv4Address | None = None
    server_id: IPv4Address | None = None
    last: Message | None = field(default=None, repr=False)

    @property
    def chaddr(self) -> bytes:
        return bytes.fromhex(self.mac.replace(":", ""))

    def message(
        self,
        msg_type: MessageType,
        *,
        ciaddr: IPv4Address = ZERO,
        requested: IPv4Address | None = None,
        server_id: IPv4Address | None = None,
    ) -> Message:
        options: list[tuple[int, bytes]] = [(OptionCode.MESSAGE_TYPE, bytes((msg_type,)))]
        if self.client_id is not None:
            options.append((OptionCode.CLIENT_ID, self.client_id))
        if requested is not None:
            options.append((OptionCode.REQUESTED_IP, requested.packed))
        if server_id is not None:
            options.append((OptionCode.SERVER_ID, server_id.packed))
        if self.max_message_size is not None:
            options.append((OptionCode.MAX_MESSAGE_SIZE, self.max_message_size.to_bytes(2, "big")))
        if self.vendor_class is not None:
            options.append((OptionCode.VENDOR_CLASS, self.vendor_class))
        if self.hostname is not None:
            options.append((OptionCode.HOSTNAME, self.hostname))
        if self.request_list and msg_type in (MessageType.DISCOVER, MessageType.REQUEST, MessageType.INFORM):
            options.append((OptionCode.PARAMETER_REQUEST_LIST, bytes(self.request_list)))
        options.extend(self.extra)
        if self.relay_info is not None and self.giaddr != ZERO:
            options.append((OptionCode.RELAY_AGENT_INFO, self.relay_info))
        return Message(
            xid=next(_xids),
            flags=BROADCAST_FLAG if self.broadcast else 0,
            ciaddr=ciaddr,
            giaddr=self.giaddr,
            hops=1 if self.giaddr != ZERO else 0,
            chaddr=self.chaddr,
            options=tuple(options),
        )

    def _send(self, msg: Message, src_ip: IPv4Address = ZERO) -> Outcome:
        outcome = self.wire.send(msg, src_ip)
        if isinstance(outcome, Reply):
            self.last = parse(outcome.wire)
            assert self.last.xid == msg.xid and self.last.chaddr == msg.chaddr
        return outcome

    # -- RFC 2131 client states ------------------------------------------------------------------------

    def discover(self, requested: IPv4Address | None = None) -> Outcome:
        """INIT: broadcast a DISCOVER."""
        return self._send(self.message(MessageType.DISCOVER, requested=requested))

    def select(self, offer: Reply, server_id: IPv4Address | None = None) -> Outcome:
        """SELECTING -> REQUESTING: take `offer` (or name another server)."""
        chosen = server_id or offer.message.server_id
        msg = self.message(MessageType.REQUEST, requested=offer.message.yiaddr, server_id=chosen)
        return self._learn(self._send(msg))

    def dora(self) -> Reply:
        """INIT to BOUND; fails the test unless the server OFFERs and ACKs."""
        offer = self.discover()
        assert isinstance(offer, Reply) and offer.msg_type is MessageType.OFFER, offer
        ack = self.select(offer)
        assert isinstance(ack, Reply) and ack.msg_type is MessageType.ACK, ack
        return ack

    def init_reboot(self, address: IPv4Address | None = None) -> Outcome:
        """INIT-REBOOT: ask for the address remembered from before, no server id, ciaddr 0."""
        requested = address or self.address
        assert requested is not None
        return self._learn(self._send(self.message(MessageType.REQUEST, requested=requested)))

    def renew(self) -> Outcome:
        """RENEWING (T1): unicast to the server that leased the address, ciaddr = the address."""
        assert self.address is not None
        return self._learn(self._send(self.message(MessageType.REQUEST, ciaddr=self.address), self.address))

    def rebind(self) -> Outcome:
        """REBINDING (T2): broadcast to any server, ciaddr = the address."""
        assert self.address is not None
        return self._learn(self._send(self.message(MessageType.REQUEST, ciaddr=self.address), self.address))

    def decline(self) -> Outcome:
        """The offered/acknowledged address is in use on the wire (ARP answered)."""
        assert self.address is not None
        msg = self.message(MessageType.DECLINE, requested=self.address, server_id=self.server_id)
        outcome = self._send(msg)
        self.address = None
        return outcome

    def release(self) -> Outcome:
        assert self.address is not None
        msg = self.message(MessageType.RELEASE, ciaddr=self.address, server_id=self.server_id)
        return self._send(msg, self.address)

    def inform(self, ciaddr: IPv4Address) -> Outcome:
        """A client with a configured address asks for its other parameters."""
        return self._send(self.message(MessageType.INFORM, ciaddr=ciaddr), ciaddr)

    def _learn(self, outcome: Outcome) -> Outcome:
        if isinstance(outcome, Reply) and outcome.msg_type is MessageType.ACK:
            self.address = outcome.message.yiaddr
            self.server_id = outcome.message.server_id
        elif isinstance(outcome, Reply) and outcome.msg_type is MessageType.NAK:
            self.address = None  # back to INIT
        return outcome


def reply_options(reply: Reply) -> dict[int, bytes]:
    """The options a client reads from the reply's bytes."""
    return dict(parse(reply.wire).options)


def option_codes(reply: Reply) -> list[int]:
    """Option codes in wire order."""
    return [code for code, _ in parse(reply.wire).options]


def ip(text: str) -> IPv4Address:
    return IPv4Address(text)


def reply(outcome: object, msg_type: MessageType = MessageType.ACK) -> Reply:
    """The outcome, asserted to be a reply of this type."""
    assert isinstance(outcome, Reply), outcome
    assert outcome.msg_type is msg_type, outcome.msg_type
    return outcome


def dropped(outcome: object, reason: DropReason) -> Drop:
    """The outcome, asserted to be a drop for this reason."""
    assert isinstance(outcome, Drop), outcome
    assert outcome.reason is reason, outcome
    return outcome
