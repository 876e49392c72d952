"""The rogue DHCP guard: is another DHCP server answering on the interfaces we are about to serve?

Plugged into the wrong switch port, a staging server would hand out addresses and provisioning options on
an office LAN. So before the DHCP sockets open, and then every `dhcp.rogue_check_interval`, we send a
DHCPDISCOVER with the broadcast flag set (RFC 2131 4.1: the OFFER then comes back broadcast, so it reaches
us whatever chaddr says) and listen for `dhcp.rogue_check_wait` seconds for OFFERs from any server but us.

The probe is a raw Ethernet frame on an AF_PACKET socket: frames we send there are not looped back to our
own IP stack, so our own DHCP server never sees (nor answers, nor records) the probe, and reading at layer
2 tells us the other server's MAC. A classic BPF filter lets only UDP to the client port through. Needs
CAP_NET_RAW, which layer-2 unicast replies need anyway; without it the guard says it cannot check.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bootstrapd.config.model import Site
from bootstrapd.dhcp.codec import BROADCAST_FLAG, Message, MessageType, Op, build, parse
from bootstrapd.dhcp.options import OptionCode
from bootstrapd.errors import BootstrapdError, ParseError
from bootstrapd.observability.metrics import Metrics
from bootstrapd.transport.l2 import ETH_P_IP, interface_mac, udp_frame

SO_ATTACH_FILTER = 26
_ETH_HEADER = 14
_ANY = ipaddress.IPv4Address(0)
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
# Parameter request list of the probe: what any client asks for (RFC 2132 9.8). No vendor class: a server
# that answers every client must answer the probe.
_PARAMS = bytes((1, 3, 6, 15, 51, 54))


class ForeignServerError(BootstrapdError):
    """Another DHCP server answers on an interface we were to serve, and the site does not allow it."""


@dataclass(frozen=True, slots=True)
class ForeignOffer:
    """An OFFER seen on the wire from a server that is not us."""

    interface: str
    server: ipaddress.IPv4Address  # option 54 (RFC 2132 9.7), else the IP source
    ip_src: ipaddress.IPv4Address  # differs from `server` when a relay agent forwarded the OFFER
    mac: str  # Ethernet source: the server's (or the relay's) MAC
    offered: ipaddress.IPv4Address  # yiaddr
    to_probe: bool  # an answer to our probe (else an OFFER to some other client seen meanwhile)

    def describe(self) -> str:
        via = f" via {self.ip_src}" if self.ip_src != self.server else ""
        return f"{self.server}{via} (MAC {self.mac})"


def probe_chaddr(random_bytes: bytes) -> bytes:
    """A locally administered unicast MAC (IEEE 802: bit 1 of the first octet set, bit 0 clear)."""
    return bytes(((random_bytes[0] & 0xFC) | 0x02,)) + random_bytes[1:6]


def discover_message(chaddr: bytes, xid: int) -> Message:
    """The probe: a plain DHCPDISCOVER with the broadcast flag set (RFC 2131 4.4.1)."""
    return Message(
        op=Op.BOOTREQUEST, htype=1, hlen=6, xid=xid, flags=BROADCAST_FLAG, chaddr=chaddr,
        options=((OptionCode.MESSAGE_TYPE, bytes((MessageType.DISCOVER,))),
                 (OptionCode.PARAMETER_REQUEST_LIST, _PARAMS)),
    )


def classify(frame: bytes, interface: str, own: ipaddress.IPv4Address, probe_xid: int,
             server_port: int = 67, client_port: int = 68) -> ForeignOffer | None:
    """A received Ethernet frame -> a ForeignOffer when it is a DHCPOFFER from a server other than `own`.

    Anything else (not IPv4/UDP server_port -> client_port, not a parsable BOOTREPLY, not an OFFER, or our
    own OFFER: option 54, else the IP source, is `own`) is None.
    """
    if len(frame) < _ETH_HEADER + 28 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[_ETH_HEADER:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ihl < 20 or ip[9] != socket.IPPROTO_UDP or len(ip) < ihl + 8:
        return None
    if struct.unpack_from("!H", ip, 6)[0] & 0x1FFF:  # a fragment: not a whole UDP datagram
        return None
    sport, dport, length = struct.unpack_from("!HHH", ip, ihl)
    if sport != server_port or dport != client_port:
        return None
    try:
        msg = parse(ip[ihl + 8:ihl + max(length, 8)])
    except ParseError:
        return None
    if msg.op != Op.BOOTREPLY or msg.msg_type is not MessageType.OFFER:
        return None
    ip_src = ipaddress.IPv4Address(ip[12:16])
    server = msg.server_id or ip_src
    if server == own:
        return None
    mac = frame[6:12].hex(":")
    return ForeignOffer(interface, server, ip_src, mac, msg.yiaddr, msg.xid == probe_xid)


def foreign(offers: Iterable[ForeignOffer], partners: Iterable[ipaddress.IPv4Address]) -> list[ForeignOffer]:
    """The offers not made by a partner node (`store.partners`: it serves this floor from the same store)."""
    known = frozenset(partners)
    return [o for o in offers if o.server not in known]


def _udp_port_filter(port: int) -> bytes:
    """Classic BPF: accept IPv4, UDP, unfragmented, destination port `port`; drop the rest in the kernel."""
    insns = (
        (0x28, 0, 0, 12),  # ldh [12]             EtherType
        (0x15, 0, 8, 0x0800),  # jeq IPv4
        (0x30, 0, 0, 23),  # ldb [23]             IP protocol
        (0x15, 0, 6, socket.IPPROTO_UDP),
        (0x28, 0, 0, 20),  # ldh [20]             flags + fragment offset
        (0x45, 4, 0, 0x1FFF),  # jset: a fragment -> drop
        (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf)    X = IP header length
        (0x48, 0, 0, 16),  # ldh [x+16]           UDP destination port
        (0x15, 0, 1, port),
        (0x06, 0, 0, 0xFFFF),  # accept
        (0x06, 0, 0, 0),  # drop
    )
    return b"".join(struct.pack("HBBI", *i) for i in insns)


def _probe_socket(ifname: str, client_port: int) -> socket.socket:
    # Protocol 0 receives nothing until bind() names the interface and protocol: no frame from another
    # interface, nor one the filter would drop, gets queued in between.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        program = _udp_port_filter(client_port)
        buf = ctypes.create_string_buffer(program)
        fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buf))
        with contextlib.suppress(OSError):  # without the filter classify() still sorts every frame
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        sock.bind((ifname, ETH_P_IP))  # Python converts sll_protocol to network order itself
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def probe(ifname: str, own: ipaddress.IPv4Address, wait: float, *, server_port: int = 67,
                client_port: int = 68, random_bytes: Callable[[int], bytes] = os.urandom) -> list[ForeignOffer]:
    """Send a DISCOVER on `ifname` (again halfway through, in case one is lost) and return the foreign
    OFFERs seen within `wait` seconds, one per server. Raises OSError when no raw socket can be opened."""
    loop = asyncio.get_running_loop()
    xid = int.from_bytes(random_bytes(4), "big")
    payload = build(discover_message(probe_chaddr(random_bytes(6)), xid))
    frame = udp_frame(interface_mac(ifname), b"\xff" * 6, _ANY, _BROADCAST, client_port, server_port, payload)
    found: dict[tuple[ipaddress.IPv4Address, str], ForeignOffer] = {}

    def collect(data: bytes, addr: Any) -> None:
        if addr[2] == socket.PACKET_OUTGOING:  # our own frames, e.g. our server's OFFERs to phones
            return
        offer = classify(data, ifname, own, xid, server_port, client_port)
        if offer is not None and ((offer.server, offer.mac) not in found or offer.to_probe):
            found[(offer.server, offer.mac)] = offer

    with _probe_socket(ifname, client_port) as sock:
        sock.send(frame)
        resend = loop.time() + wait / 2
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0:
            if resend and loop.time() >= resend:
                sock.send(frame)
                resend = 0.0
            timeout = min(left, resend - loop.time()) if resend else left
            try:
                collect(*await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), max(timeout, 0)))
            except TimeoutError:
                continue
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:  # what queued up while the event loop was busy elsewhere (a DHCP burst) counts too
                collect(*sock.recvfrom(2048))
    return list(found.values())


class RogueGuard:
    """Probes every DHCP interface at start (`check`) and then periodically (`start`), counting and logging
    each foreign server found; `site` returns the running site, so reloads change interval and policy."""

    def __init__(self, site: Callable[[], Site], metrics: Metrics, log: Any) -> None:
        self._site = site
        self._metrics = metrics
        self._log = log
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> list[ForeignOffer]:
        """One probe round on every interface before serving. Raises ForeignServerError if a foreign server
        answered and `dhcp.allow_other_servers` is false."""
        site = self._site()
        if site.dhcp.rogue_check_wait <= 0:
            self._log.warning("dhcp.rogue_check_disabled", detail="dhcp.rogue_check_wait is 0")
            return []
        offers = await self._round(site)
        allowed = site.dhcp.allow_other_servers
        self._report(offers, self._log.warning if allowed else self._log.error, allowed)
        if offers and not allowed:
            named = "; ".join(f"{o.interface}: {o.describe()}" for o in offers)
            raise ForeignServerError(
                f"another DHCP server answers on this LAN ({named}); refusing to serve. "
                "Check the cabling, or set dhcp.allow_other_servers: true to serve beside it"
            )
        return offers

    async def _round(self, site: Site) -> list[ForeignOffer]:
        port = site.listen.dhcp_port
        wait = site.dhcp.rogue_check_wait
        jobs = [probe(ifname, site.listen.address, wait, server_port=port, client_port=port + 1)
                for ifname in site.listen.interfaces]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        offers: list[ForeignOffer] = []
        for ifname, result in zip(site.listen.interfaces, results, strict=True):
            if isinstance(result, OSError):
                self._log.warning("dhcp.rogue_check_failed", interface=ifname, error=str(result),
                                  detail="no raw socket (CAP_NET_RAW?): cannot look for other DHCP servers")
            elif isinstance(result, BaseException):
                raise result
            else:
                offers.extend(result)
        self._log.debug("dhcp.rogue_check", interfaces=list(site.listen.interfaces), wait=wait, found=len(offers))
        return foreign(offers, site.store.partners)

    def _report(self, offers: Iterable[ForeignOffer], level: Any, allowed: bool) -> None:
        for o in offers:
            self._metrics.rogue_offers.inc()
            level("dhcp.foreign_server", interface=o.interface, server=str(o.server), ip_src=str(o.ip_src),
                  mac=o.mac, offered=str(o.offered), to_probe=o.to_probe, allowed=allowed)

    def start(self) -> None:
        """Probe again every `dhcp.rogue_check_interval` (0: never) while serving; only counts and warns."""
        self._task = asyncio.create_task(self._periodic())

    async def _periodic(self) -> None:
        while True:
            interval = self._site().dhcp.rogue_check_interval
            await asyncio.sleep(interval if interval > 0 else 60)  # 0 now may be >0 after a reload
            site = self._site()
            if site.dhcp.rogue_check_interval <= 0 or site.dhcp.rogue_check_wait <= 0:
                continue
            try:
                offers = await self._round(site)
            except Exception as e:  # a bug here must not stop the periodic check for good
                self._log.error("dhcp.rogue_check_error", error=repr(e))
                continue
            self._report(offers, self._log.warning, site.dhcp.allow_other_servers)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
