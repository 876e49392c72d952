"""The syslog parser never raises and always returns bounded, printable text, whatever the bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrapd.syslog import Kind, SyslogMessage, parse
from bootstrapd.syslog.parse import MAX_FIELD, MAX_MODEL, MAX_TEXT

PIECES = st.sampled_from([
    b"<13>", b"<191>", b"<999>", b"<", b">", b"1 ", b"- ", b"[a b=\"c\\]\"]", b"Dec  1 23:00:00 ", b"3d 01:02:03 ",
    b"CP-7841-3PCC ", b"00:56:2b:04:36:15 ", b"00562b043615 ", b"-- ", "–- ".encode(), "— ".encode(),
    b"Requesting resync ", b"Successful upgrade ", b"Resync failed: ", b"Upgrade failed:", b"http://a/b ",
    b"bootstrapd ", b"\x1b[31m", b"\x00", b"\n", b"\r", b"\xff", b"\xef\xbb\xbf", b"\xe2\x80\xae", b" ",
])


def check(msg: SyslogMessage) -> None:
    assert isinstance(msg.text, str) and len(msg.text) <= MAX_TEXT and msg.text.isprintable()
    for value, bound in ((msg.model, MAX_MODEL), (msg.url, MAX_FIELD), (msg.error, MAX_FIELD)):
        assert value is None or (value.isprintable() and 0 < len(value) <= bound)
    assert msg.mac is None or (len(msg.mac) == 17 and msg.mac == msg.mac.lower())
    assert isinstance(msg.kind, Kind)
    facility, severity = msg.facility, msg.severity
    assert (facility is None) == (severity is None)
    assert facility is None or (0 <= facility <= 23 and 0 <= severity <= 7)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes(data: bytes) -> None:
    check(parse(data))


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=24).map(b"".join))
def test_syslog_shaped_bytes(data: bytes) -> None:
    check(parse(data))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=2000))
def test_any_text(text: str) -> None:
    check(parse(text.encode("utf-8", "surrogatepass")))
