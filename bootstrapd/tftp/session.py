"""One read transfer (RFC 1350, windowed per RFC 7440) as a state machine without I/O.

Events: `start(now)`, `receive(datagram, now)` (from the client's TID; the shell answers other TIDs),
`expire(now)` (the deadline it was given passed). Each returns a `Step`: datagrams to send, the next
deadline, and `closed` when the transfer is over. The file is read through a `Source` (the shell's
`pread` over a shared descriptor, or bytes); a `SourceChanged` from it ends the transfer with ERROR 0.

Rules that matter:
- A window of `windowsize` blocks is sent; an ACK of block n inside it slides the window to n+1 and the
  next window goes out at once (RFC 7440 section 4: an ACK of an earlier block means the client missed
  the rest). With windowsize 1 that is RFC 1350's lock-step.
- A duplicate ACK (of the block already acknowledged) is ignored: only the timer retransmits, so one lost
  DATA never doubles every later packet (the Sorcerer's Apprentice, RFC 1123 section 4.2.3.1).
- Retransmission backs off exponentially from the initial timeout (the client's RFC 2349 timeout, else
  ours) and gives up after `retries` retransmissions or `max_wait` seconds without progress.
- Block numbers are 16-bit on the wire and roll over from 65535 to 0 (as tftp-hpa, curl and atftp do);
  the session counts blocks in absolute numbers and maps ACKs back within the window.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from bootstrapd.errors import BootstrapdError
from bootstrapd.tftp import packet
from bootstrapd.tftp.options import Negotiated
from bootstrapd.tftp.packet import Ack, ErrorCode, TftpParseError


class Source(Protocol):
    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


class SourceChanged(BootstrapdError):
    """The file changed under a transfer; sending on would mix two versions."""


class End(enum.Enum):
    """How a transfer ended; the value is the log field and (except ok) the refusal reason."""

    OK = "ok"  # the last block was acknowledged
    TIMEOUT = "timeout"  # no progress within the retry budget
    OPTIONS_REFUSED = "options_refused"  # ERROR 8 in reply to our OACK (RFC 2347; curl's tsize probe)
    ABORTED = "aborted"  # the client sent another ERROR
    FILE_CHANGED = "file_changed"  # in-place rewrite detected; ERROR 0 sent
    ILLEGAL_OPERATION = "illegal_operation"  # a packet other than ACK/ERROR; ERROR 4 sent


@dataclass(frozen=True, slots=True)
class Timing:
    timeout: float = 1.0  # first retransmission after this many seconds (unless the client set one)
    retries: int = 5
    max_wait: float = 30.0  # seconds without progress before giving up, whatever the back-off


@dataclass(frozen=True, slots=True)
class Closed:
    end: End
    error_sent: int = -1  # the ERROR code we sent, -1 for none
    detail: str = ""


class Step(NamedTuple):
    """What to do after an event (a NamedTuple: built for every ACK, and cheaper than a frozen dataclass)."""

    send: tuple[bytes, ...] = ()
    deadline: float | None = None
    closed: Closed | None = None


_OACK, _TRANSFER, _DONE = 0, 1, 2
_ACK = b"\x00\x04"  # opcode 4 (RFC 1350 section 5)
_DATA_HEAD = struct.Struct("!HH")  # opcode 3, block


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a running session stands: enough to continue it elsewhere (the shell's transfer workers)."""

    oack_pending: bool  # the OACK is out, its ACK 0 not yet in
    base: int  # first block not yet acknowledged
    sent_upto: int
    retries: int
    since: float  # clock of the last progress
    deadline: float
    payload_sent: int
    retransmits: int


class Session:
    __slots__ = (
        "_base",
        "_oack",
        "_retries",
        "_sent_upto",
        "_since",
        "_state",
        "blksize",
        "deadline",
        "interval",
        "nblocks",
        "payload_sent",
        "retransmits",
        "source",
        "timing",
        "windowsize",
    )

    def __init__(self, source: Source, negotiated: Negotiated, timing: Timing = Timing()) -> None:
        self.source = source
        self.blksize = negotiated.blksize
        self.windowsize = negotiated.windowsize
        self.nblocks = source.size // self.blksize + 1  # the last block is short, possibly empty
        self.timing = timing
        self.interval = float(negotiated.timeout) if negotiated.timeout else timing.timeout
        self._oack = packet.encode_oack(negotiated.oack) if negotiated.oack else b""
        self.deadline = 0.0
        self.payload_sent = 0  # DATA payload bytes, retransmissions included
        self.retransmits = 0
        self._state = _OACK if self._oack else _TRANSFER
        self._base = 1  # first block not yet acknowledged
        self._sent_upto = 0  # highest block sent
        self._retries = 0
        self._since = 0.0  # when the last progress was made

    def progress(self) -> Progress:
        return Progress(self._state == _OACK, self._base, self._sent_upto, self._retries, self._since,
                        self.deadline, self.payload_sent, self.retransmits)

    def resume(self, p: Progress) -> None:
        """Continue from `p` (taken from a session of the same file and negotiation, not yet closed)."""
        self._state = _OACK if p.oack_pending else _TRANSFER
        self._base, self._sent_upto, self._retries, self._since = p.base, p.sent_upto, p.retries, p.since
        self.deadline, self.payload_sent, self.retransmits = p.deadline, p.payload_sent, p.retransmits

    @property
    def acked(self) -> int:
        """Blocks acknowledged so far (absolute count)."""
        return self._base - 1

    def start(self, now: float) -> Step:
        self._since = now
        self.deadline = now + self.interval
        if self._state == _OACK:
            return Step((self._oack,), self.deadline)
        return self._window(now)

    def receive(self, data: bytes, now: float) -> Step:
        if self.windowsize == 1 and self._state == _TRANSFER and len(data) == 4 and data[:2] == _ACK:
            base = self._base
            if ((data[2] << 8 | data[3]) - base) & 0xFFFF == 0 and base < self.nblocks:
                return self._next(base + 1, now)  # lock-step's common case: the ACK of the block out
        block = packet.ack_block(data)
        if block is None:
            other = self._other(data)
            if isinstance(other, Step):
                return other
            block = other
        if self._state == _TRANSFER:
            return self._ack(block, now)
        if self._state == _OACK and block == 0:
            self._state = _TRANSFER
            return self._progress(now)
        return Step(deadline=self.deadline)

    def expire(self, now: float) -> Step:
        if self._state == _DONE:
            return Step()
        if now < self.deadline:
            return Step(deadline=self.deadline)
        self._retries += 1
        if self._retries > self.timing.retries or now - self._since >= self.timing.max_wait:
            return self._close(Closed(End.TIMEOUT, detail=f"block {self._base} unacknowledged"))
        self.retransmits += 1
        wait = self.interval * (2 ** self._retries)
        self.deadline = min(now + wait, self._since + self.timing.max_wait)
        if self._state == _OACK:
            return Step((self._oack,), self.deadline)
        try:
            return Step(self._blocks(self._base, self._sent_upto), self.deadline)
        except SourceChanged as exc:
            return self._fail(str(exc))

    def _ack(self, block: int, now: float) -> Step:
        delta = (block - self._base + 1) & 0xFFFF
        if delta == 0 or delta > self._sent_upto - self._base + 1:
            return Step(deadline=self.deadline)  # duplicate or stale: the timer retransmits, not the ACK
        self._base += delta
        if self._base > self.nblocks:
            return self._close(Closed(End.OK))
        return self._progress(now)

    def _next(self, base: int, now: float) -> Step:
        """Lock-step: block `base - 1` acknowledged, `base` (not the end) goes out; what `_ack` does, inlined."""
        self._base = self._sent_upto = base
        self._retries = 0
        self._since = now
        deadline = self.deadline = now + self.interval
        size = self.blksize
        try:
            chunk = self.source.read((base - 1) * size, size)
        except SourceChanged as exc:
            return self._fail(str(exc))
        self.payload_sent += len(chunk)
        return Step((_DATA_HEAD.pack(3, base & 0xFFFF) + chunk,), deadline)

    def _progress(self, now: float) -> Step:
        self._retries = 0
        self._since = now
        self.deadline = now + self.interval
        return self._window(now)

    def _window(self, now: float) -> Step:
        last = min(self._base + self.windowsize - 1, self.nblocks)
        try:
            out = self._blocks(self._base, last)
        except SourceChanged as exc:
            return self._fail(str(exc))
        self._sent_upto = max(self._sent_upto, last)
        return Step(out, self.deadline)

    def _blocks(self, first: int, last: int) -> tuple[bytes, ...]:
        size = self.blksize
        offset = (first - 1) * size
        chunk = self.source.read(offset, (last - first + 1) * size)
        self.payload_sent += len(chunk)
        encode = packet.encode_data
        if first == last:  # lock-step: most transfers
            return (encode(first, chunk),)
        return tuple(encode(n, chunk[(n - first) * size:(n - first + 1) * size]) for n in range(first, last + 1))

    def _other(self, data: bytes) -> Step | int:
        """A datagram that is not a plain 4-byte ACK: the block of a padded ACK, else the Step."""
        try:
            pkt = packet.parse(data)
        except TftpParseError:
            return Step(deadline=self.deadline)  # garbage from the client's TID: ignored, counted by no one
        if isinstance(pkt, packet.Error):
            if self._state == _OACK and pkt.code == ErrorCode.OPTION_REFUSED:
                return self._close(Closed(End.OPTIONS_REFUSED, detail=pkt.message))
            return self._close(Closed(End.ABORTED, detail=f"client error {pkt.code}: {pkt.message}"))
        if isinstance(pkt, Ack):
            return pkt.block
        error = packet.encode_error(ErrorCode.ILLEGAL_OPERATION, "only ACK or ERROR expected")
        return self._close(Closed(End.ILLEGAL_OPERATION, ErrorCode.ILLEGAL_OPERATION), (error,))

    def _fail(self, detail: str) -> Step:
        error = packet.encode_error(ErrorCode.NOT_DEFINED, "file changed during transfer")
        return self._close(Closed(End.FILE_CHANGED, ErrorCode.NOT_DEFINED, detail), (error,))

    def _close(self, closed: Closed, send: tuple[bytes, ...] = ()) -> Step:
        self._state = _DONE
        return Step(send, None, closed)


def netascii(data: bytes) -> bytes:
    """RFC 1350 / RFC 764 netascii from local text: CR -> CR NUL first, then LF -> CR LF."""
    return data.replace(b"\r", b"\r\x00").replace(b"\n", b"\r\n")
