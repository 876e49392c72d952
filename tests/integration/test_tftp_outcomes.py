"""What the TFTP shell hands on: one Fetched/Refused per transfer to `on_fetch`, the metrics, one
`files.fetch` log event. The server runs in the test's event loop on 127.0.0.1 (no lab needed)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from bootstrapd.files.outcome import Fetched, IdentifiedBy, Refused, Rendered, Static
from bootstrapd.observability.metrics import Metrics
from bootstrapd.tftp import packet
from bootstrapd.tftp.packet import Opcode, Request
from bootstrapd.tftp.session import Timing
from bootstrapd.transport.files_cache import SNAPSHOT_MAX
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
        data, blksize, expected = bytearray(), 512, 1
        while True:
            raw, addr = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), 5)
            pkt = packet.parse(raw)
            if isinstance(pkt, packet.Error):
                return bytes(data), pkt.code
            if isinstance(pkt, packet.Oack):
                blksize = int(dict(pkt.options).get("blksize", 512))
                await loop.sock_sendto(sock, packet.encode_ack(0), addr)
                continue
            assert isinstance(pkt, packet.Data)
            if pkt.block == expected & 0xFFFF:  # a block sent again (a late ACK) is only acknowledged again
                data += pkt.payload
                expected += 1
            await loop.sock_sendto(sock, packet.encode_ack(pkt.block), addr)
            if len(pkt.payload) < blksize:
                return bytes(data), None
    finally:
        sock.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_outcomes_metrics_and_log(tmp_path: Path, workers: int) -> None:
    """The same outcomes whether a big file's transfer stays in the loop or goes to a worker process."""
    body = os.urandom(3000)
    (tmp_path / "fw.bin").write_bytes(body)
    big = os.urandom(SNAPSHOT_MAX + 5000)
    (tmp_path / "fw.loads").write_bytes(big)
    outcomes: list[Fetched | Refused] = []
    metrics, log = Metrics(), Log()
    resolve = make_resolver(str(tmp_path), {"CP-7841-3PCC.cfg": b"<rendered/>"})

    async def scenario() -> None:
        server = TftpServer("127.0.0.1", 0, resolve, outcomes.append, metrics, log, timing=Timing(0.5, 4, 5),
                            workers=workers)
        await server.start()
        try:
            assert await get("fw.bin", server.port, (("tsize", "0"),)) == (body, None)
            assert await get("fw.loads", server.port, (("blksize", "1468"),)) == (big, None)
            assert await get("cp-7841-3pcc.CFG", server.port) == (b"<rendered/>", None)
            assert await get("../x", server.port) == (b"", 2)
            assert await get("missing", server.port) == (b"", 1)
            await asyncio.sleep(0.05)
        finally:
            await server.stop()

    asyncio.run(scenario())
    # A worker's transfer is reported when its report comes back, which may be after the next fetch ended.
    by_name = {o.request.name: o for o in outcomes if o.request is not None}
    assert len(by_name) == len(outcomes) == 5
    fetched, loads, rendered, traversal, missing = (by_name[n] for n in ("fw.bin", "fw.loads", "cp-7841-3pcc.CFG",
                                                                        "../x", "missing"))
    assert isinstance(loads, Fetched) and loads.bytes_sent == len(big) and loads.request.name == "fw.loads"
    assert isinstance(fetched, Fetched) and isinstance(fetched.resolution, Static)
    assert fetched.request.name == "fw.bin" and fetched.bytes_sent == 3000 and fetched.status == 0
    assert fetched.request.client.exploded == "127.0.0.1" and fetched.seconds >= 0
    assert isinstance(rendered, Fetched) and isinstance(rendered.resolution, Rendered)
    assert isinstance(traversal, Refused) and (traversal.reason, traversal.status) == ("traversal", 2)
    assert isinstance(missing, Refused) and (missing.reason, missing.status) == ("not_found", 1)
    sample = metrics.registry.get_sample_value
    assert sample("bootstrapd_files_fetches_total", {"protocol": "tftp", "result": "ok"}) == 3
    assert sample("bootstrapd_tftp_worker_transfers_total") == (1 if workers else 0)
    assert sample("bootstrapd_files_fetches_total", {"protocol": "tftp", "result": "traversal"}) == 1
    sent = 3000 + len(big) + len(b"<rendered/>")
    assert sample("bootstrapd_files_bytes_sent_total", {"protocol": "tftp"}) >= sent  # retransmissions too
    assert sample("bootstrapd_tftp_sessions") == 0
    fetch_events = [kw for event, kw in log.events if event == "files.fetch"]
    assert len(fetch_events) == 5
    events = {e["requested"]: e for e in fetch_events}
    first, second = events["fw.bin"], events["fw.loads"]
    assert (second["result"], second["bytes"], second["blksize"], second["windowsize"]) == ("ok", len(big), 1468, 1)
    assert second["resolved"] == os.path.realpath(tmp_path / "fw.loads")
    assert first["requested"] == "fw.bin" and first["resolved"] == os.path.realpath(tmp_path / "fw.bin")
    assert first["result"] == "ok" and first["bytes"] == 3000 and first["identified_by"] == IdentifiedBy.NONE.value
    assert events["missing"]["result"] == "not_found" and events["missing"]["status"] == 1
