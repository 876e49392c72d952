"""The phone's stub resolver: SRV and A queries over UDP to its option-6 servers (TCP when truncated).

Sockets are bound to the phone's leased address, so the DNS server sees each phone as itself.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
from dataclasses import dataclass, field

import dnslib

from bootstrapd.sim.srv import SrvTarget


class ResolveError(Exception):
    """No usable answer: every server timed out, or the answer was not NOERROR."""


@dataclass(frozen=True)
class SrvAnswer:
    rcode: str
    records: tuple[SrvTarget, ...]
    addresses: dict[str, list[str]] = field(default_factory=dict)  # A records of the additional section


def _name(label: object) -> str:
    return str(label).rstrip(".").lower()


class Resolver:
    def __init__(self, servers: tuple[str, ...], source_ip: str, rng: random.Random, timeout: float = 1.0,
                 tries: int = 2, port: int = 53) -> None:
        if not servers:
            raise ValueError("a resolver needs at least one DNS server")
        self.servers = servers
        self.source_ip = source_ip
        self.rng = rng
        self.timeout = timeout
        self.tries = tries
        self.port = port

    def srv(self, name: str) -> SrvAnswer:
        reply = self._query(name, "SRV")
        rcode = dnslib.RCODE[reply.header.rcode]
        records = tuple(SrvTarget(rr.rdata.priority, rr.rdata.weight, rr.rdata.port, _name(rr.rdata.target))
                        for rr in reply.rr if rr.rtype == dnslib.QTYPE.SRV)
        addresses: dict[str, list[str]] = {}
        for rr in reply.ar:
            if rr.rtype == dnslib.QTYPE.A:
                addresses.setdefault(_name(rr.rname), []).append(str(rr.rdata))
        return SrvAnswer(rcode, records, addresses)

    def address(self, host: str) -> str:
        """An IPv4 literal as is; a name through an A query (first address)."""
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            pass
        reply = self._query(host, "A")
        found = [str(rr.rdata) for rr in reply.rr if rr.rtype == dnslib.QTYPE.A]
        if not found:
            raise ResolveError(f"{host}: {dnslib.RCODE[reply.header.rcode]}, no A record")
        return found[0]

    def _query(self, name: str, qtype: str) -> dnslib.DNSRecord:
        last = "no server"
        for _ in range(self.tries):
            for server in self.servers:
                query = dnslib.DNSRecord.question(name, qtype)
                query.header.id = self.rng.getrandbits(16)
                try:
                    reply = self._udp(server, query)
                    if reply.header.tc:
                        reply = self._tcp(server, query)
                    return reply
                except (OSError, dnslib.DNSError, ResolveError) as e:
                    last = f"{server}: {e or type(e).__name__}"
        raise ResolveError(f"{name} {qtype}: no answer ({last})")

    def _udp(self, server: str, query: dnslib.DNSRecord) -> dnslib.DNSRecord:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((self.source_ip, 0))
            s.settimeout(self.timeout)
            s.sendto(query.pack(), (server, self.port))
            while True:  # ignore stray datagrams that are not the answer to this query
                data, peer = s.recvfrom(4096)
                reply = dnslib.DNSRecord.parse(data)
                if peer[0] == server and reply.header.id == query.header.id:
                    return reply

    def _tcp(self, server: str, query: dnslib.DNSRecord) -> dnslib.DNSRecord:
        with socket.create_connection((server, self.port), self.timeout, (self.source_ip, 0)) as s:
            data = query.pack()
            s.sendall(struct.pack("!H", len(data)) + data)
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
                chunk = s.recv(65535)
                if not chunk:
                    raise ResolveError(f"{server}: TCP connection closed mid-answer")
                buf += chunk
            return dnslib.DNSRecord.parse(buf[2:])
