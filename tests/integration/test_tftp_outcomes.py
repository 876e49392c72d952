"""What the TFTP shell hands on: one Fetched/Refused per transfer to `on_fetch`, the metrics, one
`files.fetch` log event. The server runs in the test's event loop on 127.0.0.1 (no lab needed)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

from bootstrapd.files.outcome import Fetched, IdentifiedBy, Refused, Rendered, Static
from bootstrapd.observability.metrics import Metrics
from bootstrapd.tftp import packet
from bootstrapd.tftp.packet import Opcode, Request
from bootstrapd.tftp.session import Timing
from bootstrapd.transport.tftp import TftpServer
from tests.integration.tftp_harness import make_resolver


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))

    debug = warning = error = info


async def get(name: str, port: int, options: tuple[tuple[str, str], ...] = ()) -> tuple[bytes, int | None]:
    """Lock-step download on 127.0.0.1; (data, ERROR code or None)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    try:
        await loop.sock_sendto(sock, packet.encode_request(Request(Opcode.RRQ, name, "octet", options)),
                               ("127.0.0.1", port))
        data = bytearray()
        while True:
            raw, addr = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), 5)
            pkt = packet.parse(raw)
            if isinstance(pkt, packet.Error):
                return bytes(data), pkt.code
            if isinstance(pkt, packet.Oack):
                await loop.sock_sendto(sock, packet.encode_ack(0), addr)
                continue
            assert isinstance(pkt, packet.Data)
            data += pkt.payload
            await loop.sock_sendto(sock, packet.encode_ack(pkt.block), addr)
            if len(pkt.payload) < 512:
                return bytes(data), None
    finally:
        sock.close()


def test_outcomes_metrics_and_log(tmp_path: Path) -> None:
    body = os.urandom(3000)
    (tmp_path / "fw.bin").write_bytes(body)
    outcomes: list[Fetched | Refused] = []
    metrics, log = Metrics(), Log()
    resolve = make_resolver(str(tmp_path), {"CP-7841-3PCC.cfg": b"<rendered/>"})

    async def scenario() -> None:
        server = TftpServer("127.0.0.1", 0, resolve, outcomes.append, metrics, log, timing=Timing(0.2, 2, 1))
        await server.start()
        try:
            assert await get("fw.bin", server.port, (("tsize", "0"),)) == (body, None)
            assert await get("cp-7841-3pcc.CFG", server.port) == (b"<rendered/>", None)
            assert await get("../x", server.port) == (b"", 2)
            assert await get("missing", server.port) == (b"", 1)
            await asyncio.sleep(0.05)
        finally:
            await server.stop()

    asyncio.run(scenario())
    fetched, rendered, traversal, missing = outcomes
    assert isinstance(fetched, Fetched) and isinstance(fetched.resolution, Static)
    assert fetched.request.name == "fw.bin" and fetched.bytes_sent == 3000 and fetched.status == 0
    assert fetched.request.client.exploded == "127.0.0.1" and fetched.seconds >= 0
    assert isinstance(rendered, Fetched) and isinstance(rendered.resolution, Rendered)
    assert isinstance(traversal, Refused) and (traversal.reason, traversal.status) == ("traversal", 2)
    assert isinstance(missing, Refused) and (missing.reason, missing.status) == ("not_found", 1)
    sample = metrics.registry.get_sample_value
    assert sample("bootstrapd_files_fetches_total", {"protocol": "tftp", "result": "ok"}) == 2
    assert sample("bootstrapd_files_fetches_total", {"protocol": "tftp", "result": "traversal"}) == 1
    assert sample("bootstrapd_files_bytes_sent_total", {"protocol": "tftp"}) == 3000 + len(b"<rendered/>")
    assert sample("bootstrapd_tftp_sessions") == 0
    fetch_events = [kw for event, kw in log.events if event == "files.fetch"]
    assert len(fetch_events) == 4
    first = fetch_events[0]
    assert first["requested"] == "fw.bin" and first["resolved"] == os.path.realpath(tmp_path / "fw.bin")
    assert first["result"] == "ok" and first["bytes"] == 3000 and first["identified_by"] == IdentifiedBy.NONE.value
    assert fetch_events[3]["result"] == "not_found" and fetch_events[3]["status"] == 1
