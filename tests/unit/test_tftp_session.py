"""The session machine with bytes and a passed-in clock: lock-step, windows, duplicate ACKs, back-off,
block-number wrap, the OACK abort, a file changing underneath."""

from __future__ import annotations

import pytest

from bootstrapd.tftp.options import Negotiated
from bootstrapd.tftp.packet import Data, Error, ErrorCode, Oack, encode_ack, encode_error, parse
from bootstrapd.tftp.session import End, Session, SourceChanged, Step, Timing, netascii
from bootstrapd.transport.files_cache import BytesSource as Bytes


class Sparse:
    """A big file of zeros without the memory."""

    def __init__(self, size: int) -> None:
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        return bytes(max(0, min(length, self.size - offset)))


def blocks(step: Step) -> list[int]:
    out = []
    for raw in step.send:
        pkt = parse(raw)
        assert isinstance(pkt, Data)
        out.append(pkt.block)
    return out


def payload(step: Step) -> bytes:
    return b"".join(raw[4:] for raw in step.send)


def test_lock_step_transfer_ends_ok_on_the_last_ack() -> None:
    data = bytes(range(256)) * 5  # 1280 bytes: blocks of 512, 512, 256
    s = Session(Bytes(data), Negotiated())
    got = [s.start(0.0)]
    for n in (1, 2):
        got.append(s.receive(encode_ack(n), 0.1))
    assert [blocks(g) for g in got] == [[1], [2], [3]]
    assert b"".join(payload(g) for g in got) == data
    end = s.receive(encode_ack(3), 0.2)
    assert end.closed is not None and end.closed.end is End.OK and end.send == ()


def test_exact_multiple_of_blksize_ends_with_an_empty_block() -> None:
    s = Session(Bytes(b"x" * 1024), Negotiated())
    s.start(0)
    s.receive(encode_ack(1), 0)
    last = s.receive(encode_ack(2), 0)
    assert blocks(last) == [3] and payload(last) == b""
    assert s.receive(encode_ack(3), 0).closed is not None


def test_oack_first_then_data_on_ack_zero() -> None:
    s = Session(Bytes(b"abc"), Negotiated(oack=(("tsize", "3"),)))
    first = s.start(0)
    assert parse(first.send[0]) == Oack((("tsize", "3"),))
    assert blocks(s.receive(encode_ack(0), 0.1)) == [1]


def test_error_8_after_the_oack_is_the_tsize_probe() -> None:
    s = Session(Bytes(b"abc"), Negotiated(oack=(("tsize", "3"),)))
    s.start(0)
    step = s.receive(encode_error(ErrorCode.OPTION_REFUSED, "tsize only"), 0.1)
    assert step.closed is not None and step.closed.end is End.OPTIONS_REFUSED and step.send == ()


def test_duplicate_ack_sends_nothing() -> None:
    """RFC 1123 4.2.3.1: an ACK repeated (a delayed or replayed one) never triggers a retransmission."""
    s = Session(Bytes(b"y" * 5000), Negotiated())
    s.start(0)
    assert blocks(s.receive(encode_ack(1), 0.1)) == [2]
    for _ in range(5):
        assert s.receive(encode_ack(1), 0.2).send == ()
    assert blocks(s.receive(encode_ack(2), 0.3)) == [3]


def test_window_slides_on_the_acked_block() -> None:
    s = Session(Bytes(b"z" * 512 * 40), Negotiated(windowsize=8))
    assert blocks(s.start(0)) == list(range(1, 9))
    assert blocks(s.receive(encode_ack(8), 0.1)) == list(range(9, 17))
    # the client missed 12..16: it acknowledges 11 and gets the window from 12
    assert blocks(s.receive(encode_ack(11), 0.2)) == list(range(12, 20))
    assert s.receive(encode_ack(11), 0.3).send == ()  # duplicate
    assert s.receive(encode_ack(5), 0.3).send == ()  # stale, before the window


def test_retransmission_backs_off_and_gives_up_within_max_wait() -> None:
    s = Session(Bytes(b"q" * 100), Negotiated(), Timing(timeout=1.0, retries=5, max_wait=30.0))
    step = s.start(0.0)
    times = []
    while step.closed is None:
        assert step.deadline is not None
        now = step.deadline
        step = s.expire(now)
        if step.send:
            assert blocks(step) == [1]
            times.append(now)
    assert times == [1.0, 3.0, 7.0, 15.0]
    assert step.closed.end is End.TIMEOUT and now <= 30.0


def test_retries_bound_the_attempts_too() -> None:
    s = Session(Bytes(b"q"), Negotiated(), Timing(timeout=0.1, retries=2, max_wait=30.0))
    step = s.start(0.0)
    sent = 0
    while step.closed is None:
        step = s.expire(step.deadline or 0)
        sent += len(step.send)
    assert sent == 2


def test_early_expire_is_ignored_and_progress_resets_the_back_off() -> None:
    s = Session(Bytes(b"q" * 2000), Negotiated(), Timing(timeout=1.0))
    s.start(0.0)
    assert s.expire(0.5).send == ()
    assert blocks(s.expire(1.0)) == [1]
    s.receive(encode_ack(1), 2.0)
    assert s.deadline == 3.0


def test_client_timeout_option_sets_the_interval() -> None:
    s = Session(Bytes(b"q"), Negotiated(timeout=5, oack=(("timeout", "5"),)))
    assert s.start(10.0).deadline == 15.0


def test_block_numbers_wrap_past_65535() -> None:
    size = 512 * 70000 + 3  # 35.8 MB at blksize 512
    s = Session(Sparse(size), Negotiated(windowsize=4))
    step = s.start(0)
    wire = blocks(step)
    while step.closed is None:
        step = s.receive(encode_ack(wire[-1]), 0)  # the wire number of the window's last block
        wire += blocks(step)
    assert step.closed.end is End.OK
    assert len(wire) == 70001
    assert wire[65534:65538] == [65535, 0, 1, 2]
    assert s.acked == 70001


def test_lock_step_wraps_past_65535_too() -> None:
    """Lock-step has its own fast path in `receive`: the same wrap, the same bytes, the same end."""
    size = 8 * 70000 + 5
    s = Session(Sparse(size), Negotiated(blksize=8))
    step = s.start(0)
    wire, sent = blocks(step), len(payload(step))
    while step.closed is None:
        step = s.receive(encode_ack(wire[-1]), 0)
        assert s.receive(encode_ack(wire[-1]), 0).send == ()  # the same ACK again: nothing
        wire += blocks(step)
        sent += len(payload(step))
    assert step.closed.end is End.OK and sent == size == s.payload_sent
    assert wire[65534:65538] == [65535, 0, 1, 2] and len(wire) == 70001


def test_packets_other_than_ack_or_error_end_with_error_4() -> None:
    s = Session(Bytes(b"q"), Negotiated())
    s.start(0)
    step = s.receive(b"\x00\x03\x00\x01data", 0.1)
    assert step.closed is not None and step.closed.end is End.ILLEGAL_OPERATION
    assert parse(step.send[0]) == Error(4, "only ACK or ERROR expected")


def test_garbage_from_the_client_is_ignored_and_client_error_aborts() -> None:
    s = Session(Bytes(b"q" * 600), Negotiated())
    s.start(0)
    assert s.receive(b"\x01", 0).closed is None
    step = s.receive(encode_error(ErrorCode.NOT_DEFINED, "user cancelled"), 0.1)
    assert step.closed is not None and step.closed.end is End.ABORTED


def test_a_changed_source_ends_with_error_0() -> None:
    class Changing(Bytes):
        def read(self, offset: int, length: int) -> bytes:
            if offset:
                raise SourceChanged("size 1024 -> 9")
            return super().read(offset, length)

    s = Session(Changing(b"a" * 1024), Negotiated())
    s.start(0)
    step = s.receive(encode_ack(1), 0)
    assert step.closed is not None and step.closed.end is End.FILE_CHANGED
    assert parse(step.send[0]) == Error(0, "file changed during transfer")


def test_a_resumed_session_continues_where_the_first_stopped() -> None:
    """The shell hands big transfers to a worker process: a session rebuilt there from `progress()` sends
    the same blocks, keeps the back-off it had and counts on from the same totals."""
    data = bytes(range(256)) * 20  # 5120 bytes: 10 blocks of 512 and an empty one
    first = Session(Bytes(data), Negotiated(windowsize=2, oack=(("windowsize", "2"),)), Timing(timeout=1.0))
    first.start(0.0)
    assert first.progress().oack_pending
    first.receive(encode_ack(0), 0.1)  # blocks 1, 2 out
    first.expire(1.1)  # retransmitted once: the next wait is 2 s
    p = first.progress()
    assert (p.oack_pending, p.base, p.sent_upto, p.retries, p.retransmits) == (False, 1, 2, 1, 1)
    second = Session(Bytes(data), Negotiated(windowsize=2, oack=(("windowsize", "2"),)), Timing(timeout=1.0))
    second.resume(p)
    assert second.deadline == first.deadline == 3.1
    assert second.expire(2.0).send == ()
    step = second.receive(encode_ack(2), 2.5)
    assert blocks(step) == [3, 4]
    got = payload(step)
    while step.closed is None:
        step = second.receive(encode_ack(blocks(step)[-1]), 2.7)
        got += payload(step)
    assert got == data[1024:] and step.closed.end is End.OK
    assert second.retransmits == 1 and second.payload_sent == p.payload_sent + len(data) - 1024


def test_a_session_resumed_before_ack_zero_still_waits_for_it() -> None:
    s = Session(Bytes(b"abc"), Negotiated(oack=(("tsize", "3"),)))
    s.start(0.0)
    t = Session(Bytes(b"abc"), Negotiated(oack=(("tsize", "3"),)))
    t.resume(s.progress())
    assert parse(t.expire(1.0).send[0]) == Oack((("tsize", "3"),))
    assert blocks(t.receive(encode_ack(0), 1.1)) == [1]


@pytest.mark.parametrize(("text", "wire"), [
    (b"a\nb", b"a\r\nb"), (b"a\rb", b"a\r\x00b"), (b"a\r\nb", b"a\r\x00\r\nb"), (b"", b""),
])
def test_netascii(text: bytes, wire: bytes) -> None:
    assert netascii(text) == wire
