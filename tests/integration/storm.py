"""A storm of DHCP clients for the duplicate-address proof, and the checker over what they saw.

Namespace side (`main`): one AF_PACKET socket, `clients` simulated clients (scapy-built frames, each with its
own MAC) for `duration` seconds, beginning with a rush (`Storm.rush`). Each client gets an address (DISCOVER, first OFFER, REQUEST), then does one
of: renew at T1 (unicast to the server that granted it), rebind (broadcast REQUEST with ciaddr), release
after a while, vanish (silent; back later with a new DISCOVER), or reboot (stops using the address, then
INIT-REBOOT: a broadcast REQUEST for it). It prints one JSON list of what it saw:
    ["ack", mac, address, t_request, t_ack, lease_seconds]  ["release" | "reboot", mac, address, t]
    ["nak", mac, t]

Test side (`holdings`, `duplicates`): when each client held which address, by RFC 2131 4.4.1's client-side
rule (the lease runs from when the REQUEST was sent), starting at the ACK's arrival; and the addresses two
clients held at overlapping times.
"""

from __future__ import annotations

import json
import random
import select
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from tests.integration.dhcp_client import ETH_P_IP, SO_RCVBUFFORCE, _is_server_reply, build_frame, dissect, mac

Event = list[Any]
ACTIONS = ("renew", "rebind", "release", "vanish", "reboot")
WEIGHTS = (4, 2, 2, 2, 2)


@dataclass
class Client:
    mac: str
    state: str = "init"  # init | selecting | requesting | bound | renewing | idle
    xid: int = 0
    address: str = ""
    server: str = ""
    t_request: float = 0.0
    expires: float = 0.0
    next_at: float = 0.0
    action: str = ""
    offer: dict[str, Any] = field(default_factory=dict)


class Storm:
    def __init__(self, sock: socket.socket, n: int, servers: dict[str, str], seed: int) -> None:
        self.sock, self.servers, self.rng = sock, servers, random.Random(seed)
        self.clients = [Client(mac(0x5700 + i), next_at=time.time() + self.rng.uniform(0, 0.2)) for i in range(n)]
        self.by_xid: dict[int, Client] = {}
        self.events: list[Event] = []

    def send(self, c: Client, kind: str, **fields: Any) -> None:
        if kind in ("discover", "request") and not fields.pop("keep_xid", False):
            self.by_xid.pop(c.xid, None)
            c.xid = self.rng.getrandbits(32)
            self.by_xid[c.xid] = c
        self.sock.send(build_frame({"kind": kind, "chaddr": c.mac, "xid": c.xid, **fields}))

    def rush(self, now: float) -> None:
        """The floor powers up: every client's first DISCOVER at once. The two servers hear them in opposite
        orders (layer-2 frames to each server's MAC, in turn), as links of different latency may deliver
        them: the nodes' first choices then cross, and only the store decides who gets an address."""
        for c in self.clients:
            c.state, c.xid, c.next_at = "selecting", self.rng.getrandbits(32), now + self.rng.uniform(1.0, 1.5)
            self.by_xid[c.xid] = c
        for n, server_mac in enumerate(self.servers.values()):
            for c in self.clients[:: 1 if n % 2 == 0 else -1]:
                self.sock.send(build_frame({"kind": "discover", "chaddr": c.mac, "xid": c.xid, "eth_dst": server_mac}))

    def tick(self, now: float) -> None:
        for c in self.clients:
            if now >= c.next_at:
                self.due(c, now)

    def due(self, c: Client, now: float) -> None:
        if c.state in ("bound", "renewing") and now < c.expires:
            self.do_action(c, now)  # a renewal or rebind retries until the lease ends (RFC 2131 4.4.5)
            return
        c.state = "selecting"
        self.send(c, "discover")
        c.next_at = now + self.rng.uniform(0.8, 1.5)

    def do_action(self, c: Client, now: float) -> None:
        c.t_request = now
        if c.action == "renew":
            c.state = "renewing"
            mac_dst = self.servers.get(c.server, "ff:ff:ff:ff:ff:ff")
            self.send(c, "request", ciaddr=c.address, ip_src=c.address, ip_dst=c.server, eth_dst=mac_dst)
        elif c.action == "rebind":
            c.state = "renewing"
            self.send(c, "request", ciaddr=c.address, ip_src=c.address)
        elif c.action == "reboot":  # RFC 2131 4.3.2 INIT-REBOOT: no server id, no ciaddr
            self.events.append(["reboot", c.mac, c.address, now])
            c.state, c.expires = "requesting", 0.0
            self.send(c, "request", requested=c.address)
            c.next_at = now + 1.5
            return
        elif c.action == "release":
            self.send(c, "release", ciaddr=c.address, server_id=c.server, ip_src=c.address, ip_dst=c.server,
                      eth_dst=self.servers.get(c.server, "ff:ff:ff:ff:ff:ff"))
            self.events.append(["release", c.mac, c.address, now])
            c.state, c.next_at = "idle", now + self.rng.uniform(1, 4)
            return
        else:  # vanish: the address stays the client's until the lease ends; back later as a new client
            c.state, c.next_at = "idle", now + self.rng.uniform(3, 20)
            return
        c.next_at = now + 1.0

    def receive(self, reply: dict[str, Any], now: float) -> None:
        c = self.by_xid.get(reply["xid"])
        if c is None or reply["chaddr"] != c.mac:
            return
        kind, sid = reply["type"], _server_id(reply)
        if kind == "offer" and c.state == "selecting":  # the first OFFER wins, as MPP phones do
            c.state, c.offer, c.t_request = "requesting", reply, now
            self.send(c, "request", keep_xid=True, requested=reply["yiaddr"], server_id=sid)
            c.next_at = now + 1.5
        elif kind == "ack" and c.state in ("requesting", "renewing"):
            lease = int(reply["options"].get("51", "0"), 16)
            self.events.append(["ack", c.mac, reply["yiaddr"], c.t_request, now, lease])
            c.state, c.address, c.server = "bound", reply["yiaddr"], sid
            c.expires = c.t_request + lease
            c.action = self.rng.choices(ACTIONS, WEIGHTS)[0]
            c.next_at = c.t_request + lease * (0.5 if c.action == "renew" else self.rng.uniform(0.1, 0.6))
            self.by_xid.pop(c.xid, None)
        elif kind == "nak" and c.state in ("requesting", "renewing"):
            self.events.append(["nak", c.mac, now])
            c.state, c.next_at = "init", now + self.rng.uniform(0.2, 1)
            self.by_xid.pop(c.xid, None)


def _server_id(reply: dict[str, Any]) -> str:
    raw = bytes.fromhex(reply["options"].get("54", "00000000"))
    return ".".join(str(b) for b in raw[:4])


def main(iface: str, clients: int, duration: float, servers: str, seed: int) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
    sock.bind((iface, 0))
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # absorbs unicast replies (no ICMP unreachable)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sink.bind(("0.0.0.0", 68))
    storm = Storm(sock, clients, json.loads(servers), seed)
    print(json.dumps({"ready": True}), flush=True)
    end = time.time() + duration
    while (now := time.time()) < end:
        storm.tick(now)
        while select.select([sock], [], [], 0.02)[0]:
            frame, (_, _, pkttype, _, _) = sock.recvfrom(65535)
            if pkttype != socket.PACKET_OUTGOING and _is_server_reply(frame):
                reply = dissect(frame)
                if reply is not None:
                    storm.receive(reply, time.time())
    print(json.dumps(storm.events), flush=True)


# -- test side -----------------------------------------------------------------------------------------------
Holding = tuple[str, str, float, float]  # (client, address, from, until)


def holdings(events: list[Event]) -> list[Holding]:
    """Each client's tenure of each address: from the first ACK's arrival to the latest lease end (the
    REQUEST's send time + lease), cut short by a RELEASE, a NAK or an ACK of another address."""
    out: list[Holding] = []
    current: dict[str, list[Any]] = {}  # mac -> [address, from, until]
    for ev in sorted(events, key=lambda e: e[4] if e[0] == "ack" else e[-1]):
        kind, who = ev[0], ev[1]
        held = current.get(who)
        if kind == "ack":
            _, _, address, t_req, t_ack, lease = ev
            if held is not None and held[0] == address and held[2] > t_ack:
                held[2] = max(held[2], t_req + lease)
                continue
            if held is not None:
                out.append((who, held[0], held[1], min(held[2], t_ack)))
            current[who] = [address, t_ack, t_req + lease]
        elif held is not None:
            out.append((who, held[0], held[1], min(held[2], ev[-1])))
            del current[who]
    out.extend((who, h[0], h[1], h[2]) for who, h in current.items())
    return out


def duplicates(events: list[Event]) -> list[tuple[Holding, Holding]]:
    """Pairs of holdings of one address by two clients at overlapping times."""
    by_address: dict[str, list[Holding]] = {}
    for h in holdings(events):
        by_address.setdefault(h[1], []).append(h)
    found = []
    for hs in by_address.values():
        hs.sort(key=lambda h: h[2])
        for i, a in enumerate(hs):
            for b in hs[i + 1:]:
                if b[2] >= a[3]:
                    break
                if b[0] != a[0]:
                    found.append((a, b))
    return found


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
