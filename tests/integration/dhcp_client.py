"""A raw DHCP client for the lab: scapy-built frames on eth0 of a client namespace, replies as JSON.

Two halves in one file:
- test side: `RawClient(host)` starts this file as a child process inside `host`'s namespace and drives it
  round by round (`exchange`, `dora`); `packet(...)` describes one message; replies come back as `Answer`.
- namespace side (`main`): one AF_PACKET socket on the interface, opened before the first send so that no
  reply is missed. Per round it reads one JSON line (packets + timeout) from stdin, sends every packet as a
  layer-2 frame, collects server replies (UDP 67 -> 68) for the round's xids until each packet that
  expects a reply has one or the timeout passes, and writes one JSON line back.

One process can be many clients: each packet carries its own chaddr and is sent with that Ether source,
so the LAN bridge learns it and the server's layer-2 unicast replies reach this interface.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import IO, TYPE_CHECKING, Any

from bootstrapd.sim.wire import scan_options

if TYPE_CHECKING:
    from bootstrapd.lab import Host

BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ETH_P_IP = 0x0800
SO_RCVBUFFORCE = 33


def mac(n: int) -> str:
    """A locally administered unicast MAC for simulated client n (outside the lab's 02:b5:... range)."""
    return "02:dc:" + ":".join(f"{b:02x}" for b in n.to_bytes(4, "big"))


def packet(kind: str, chaddr: str = "", *, expect: bool | None = None, **fields: Any) -> dict[str, Any]:
    """One message to send. kind: discover | request | decline | release | inform | raw.

    fields: ciaddr, giaddr, requested (option 50), server_id (54), client_id (hex, 61), vendor_class (60),
    broadcast (flag), params (55, list of codes), xid; raw: payload (hex, the UDP payload verbatim);
    l2: eth_dst, ip_src, ip_dst (default broadcast from 0.0.0.0). `expect`: wait for a reply to this
    packet (default: DISCOVER, REQUEST and INFORM do, the others do not).
    """
    if expect is None:
        expect = kind in ("discover", "request", "inform")
    return {"kind": kind, "chaddr": chaddr, "expect": expect, **fields}


@dataclass(frozen=True)
class Answer:
    """One reply frame the client interface saw."""

    xid: int
    type: str  # offer | ack | nak (option 53, lower case)
    chaddr: str
    yiaddr: str
    ciaddr: str
    flags: int
    eth_dst: str
    ip_src: str
    ip_dst: str
    dport: int
    options: dict[int, bytes]

    @property
    def server_id(self) -> str | None:
        value = self.options.get(54)
        return str(IPv4Address(value)) if value is not None and len(value) == 4 else None

    @property
    def message(self) -> str:
        return self.options.get(56, b"").decode(errors="replace")

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Answer:
        return cls(**{**d, "options": {int(k): bytes.fromhex(v) for k, v in d["options"].items()}})


class RawClient:
    """The namespace-side process, driven from the test. Lab.close() also stops it (by PID)."""

    _xids = itertools.count(int.from_bytes(os.urandom(3), "big") << 4)

    def __init__(self, host: Host, iface: str = "eth0") -> None:
        self.host = host
        self.proc = host.popen([sys.executable, os.path.abspath(__file__), iface], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = self._read(30.0)
        if ready.get("ready") is not True:
            raise RuntimeError(f"dhcp_client did not start: {ready}")

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def exchange(self, packets: list[dict[str, Any]], timeout: float = 2.0) -> list[Answer]:
        """Send the packets (a fresh xid each unless given); the replies to them, in arrival order."""
        packets = [p if "xid" in p else {**p, "xid": next(self._xids)} for p in packets]
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"packets": packets, "timeout": timeout}) + "\n")
        self.proc.stdin.flush()
        result = self._read(timeout + 30.0)
        if "error" in result:
            raise RuntimeError(f"dhcp_client: {result['error']}")
        return [Answer.from_json(d) for d in result["replies"]]

    def send(self, packets: list[dict[str, Any]]) -> None:
        """Send packets that get no reply (DECLINE, RELEASE, garbage)."""
        self.exchange([{**p, "expect": False} for p in packets], timeout=0.0)

    def dora(self, chaddrs: list[str], timeout: float = 5.0, **fields: Any) -> dict[str, Answer]:
        """DISCOVER, then REQUEST (SELECTING) each OFFER; the ACKs by chaddr (missing: no ACK)."""
        offers = self.exchange([packet("discover", c, **fields) for c in chaddrs], timeout)
        requests = [
            packet("request", o.chaddr, xid=o.xid, requested=o.yiaddr, server_id=o.server_id, **fields)
            for o in first_by_chaddr(offers, "offer").values()
        ]
        return first_by_chaddr(self.exchange(requests, timeout), "ack")

    def _read(self, timeout: float) -> dict[str, Any]:
        out = self.proc.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], timeout)
        line = out.readline() if ready else ""
        if not line:
            raise RuntimeError(f"dhcp_client gave no answer within {timeout}s (exit code {self.proc.poll()})")
        result: dict[str, Any] = json.loads(line)
        return result


def first_by_chaddr(answers: list[Answer], kind: str) -> dict[str, Answer]:
    """The first answer of `kind` per client hardware address."""
    out: dict[str, Answer] = {}
    for a in answers:
        if a.type == kind:
            out.setdefault(a.chaddr, a)
    return out


# -- namespace side ----------------------------------------------------------------------------------------

_TYPES = {"discover": 1, "request": 3, "decline": 4, "release": 7, "inform": 8}
_NAMES = {1: "discover", 2: "offer", 3: "request", 4: "decline", 5: "ack", 6: "nak", 7: "release", 8: "inform"}


def build_frame(p: dict[str, Any]) -> bytes:
    """The Ethernet frame for one packet description (scapy builds every layer)."""
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    chaddr = p.get("chaddr") or "02:dc:00:00:00:00"
    l2 = Ether(src=chaddr, dst=p.get("eth_dst", BROADCAST_MAC))
    l3 = IP(src=p.get("ip_src", "0.0.0.0"), dst=p.get("ip_dst", "255.255.255.255")) / UDP(sport=68, dport=67)
    if p["kind"] == "raw":
        return bytes(l2 / l3 / Raw(bytes.fromhex(p["payload"])))
    options: list[Any] = [("message-type", _TYPES[p["kind"]])]
    for key, name in (("requested", "requested_addr"), ("server_id", "server_id")):
        if p.get(key):
            options.append((name, p[key]))
    if p.get("client_id"):
        options.append(("client_id", bytes.fromhex(p["client_id"])))
    if p.get("vendor_class"):
        options.append(("vendor_class_id", p["vendor_class"].encode()))
    if p.get("params"):
        options.append(("param_req_list", list(p["params"])))
    options.append("end")
    bootp = BOOTP(op=1, xid=p["xid"], flags=0x8000 if p.get("broadcast") else 0, ciaddr=p.get("ciaddr", "0.0.0.0"),
                  giaddr=p.get("giaddr", "0.0.0.0"), chaddr=bytes.fromhex(chaddr.replace(":", "")))
    return bytes(l2 / l3 / bootp / DHCP(options=options))


def _options(raw: bytes) -> dict[str, str]:
    """The options field (after the magic cookie) as {code: hex}, for JSON."""
    return {str(code): value.hex() for code, value in scan_options(raw).items()}


def dissect(frame: bytes) -> dict[str, Any] | None:
    """A server reply (IPv4/UDP 67 -> 68 carrying DHCP) as a JSON-able dict; None for anything else."""
    from scapy.layers.dhcp import BOOTP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    pkt = Ether(frame)
    if BOOTP not in pkt or UDP not in pkt or pkt[UDP].sport != 67 or pkt[UDP].dport != 68:
        return None
    bootp = pkt[BOOTP]
    if bootp.op != 2 or bytes(bootp.options)[:4] != b"\x63\x82\x53\x63":
        return None
    options = _options(bytes(bootp.options)[4:] + bytes(bootp.payload))
    mtype = int(options.get("53", "00")[:2], 16)
    return {
        "xid": bootp.xid, "type": _NAMES.get(mtype, str(mtype)), "chaddr": bytes(bootp.chaddr)[:6].hex(":"),
        "yiaddr": bootp.yiaddr, "ciaddr": bootp.ciaddr, "flags": int(bootp.flags), "eth_dst": pkt[Ether].dst,
        "ip_src": pkt[IP].src, "ip_dst": pkt[IP].dst, "dport": pkt[UDP].dport, "options": options,
    }


def _is_server_reply(frame: bytes) -> bool:
    """Cheap pre-filter before scapy: IPv4, UDP, source port 67."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return False
    ihl = (frame[14] & 0x0F) * 4
    return frame[14 + ihl:16 + ihl] == b"\x00\x43"


def run_round(sock: socket.socket, packets: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    frames = [build_frame(p) for p in packets]  # built first: the sends go out back to back
    xids = {p["xid"] for p in packets}
    waiting = {p["xid"] for p in packets if p.get("expect")}
    for frame in frames:
        sock.send(frame)
    replies: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while waiting and (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        frame, (_, _, pkttype, _, _) = sock.recvfrom(65535)
        if pkttype == socket.PACKET_OUTGOING or not _is_server_reply(frame):
            continue
        reply = dissect(frame)
        if reply is not None and reply["xid"] in xids:
            replies.append(reply)
            waiting.discard(reply["xid"])
    return replies


def main(iface: str, stdin: IO[str] = sys.stdin, stdout: IO[str] = sys.stdout) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)  # a burst of replies must not overflow
    sock.bind((iface, 0))
    # Replies unicast to an address configured here (RENEWING) would draw ICMP port-unreachable from this
    # namespace's kernel without a socket on port 68; this one only absorbs them (AF_PACKET reads them all).
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sink.bind(("0.0.0.0", 68))
    build_frame(packet("discover", xid=0))  # pay scapy's import before the first timed round
    print(json.dumps({"ready": True}), file=stdout, flush=True)
    for line in stdin:
        try:
            job = json.loads(line)
            replies = run_round(sock, job["packets"], float(job["timeout"]))
            print(json.dumps({"replies": replies}), file=stdout, flush=True)
        except Exception as e:  # report to the test instead of dying silently
            print(json.dumps({"error": repr(e)}), file=stdout, flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "eth0")
