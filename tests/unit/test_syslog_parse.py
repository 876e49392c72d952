"""The syslog parser on the lines phones (and hostile senders) send: headers, templates, dash variants."""

from __future__ import annotations

import csv
import io

import pytest

from bootstrapd.syslog import OUR_TEMPLATES, Kind, normalise_mac, parse
from bootstrapd.syslog.parse import MAX_TEXT

MAC = "00:56:2b:04:36:15"
PROFILE = "tftp://198.18.0.1:69/CP-7841-3PCC.cfg"
FIRMWARE = "http://198.18.0.1:80/sip78xx.14-2-1MPP.loads"

# (datagram, kind, mac, model, url, error, facility, severity)
LINES = [
    # RFC 3164 header, default template
    (b"<134>Dec  1 23:00:00 198.18.0.120 CP-7841-3PCC 00:56:2b:04:36:15 -- Requesting resync " + PROFILE.encode(),
     Kind.RESYNC_REQUESTED, MAC, "CP-7841-3PCC", PROFILE, None, 16, 6),
    # no header at all; Cisco's own sample: en dash + hyphen, no port
    ("CP-78xx-3PCC 00:0e:08:ab:cd:ef –- Requesting resync tftp://192.168.1.200/basic.txt".encode(),
     Kind.RESYNC_REQUESTED, "00:0e:08:ab:cd:ef", "CP-78xx-3PCC", "tftp://192.168.1.200/basic.txt", None, None, None),
    # PRI without timestamp, bare upper-case MAC ($MAU), em dash
    ("<14>CP-8851-3PCC 00562B043615 — Successful resync http://198.18.0.1/x.xml".encode(),
     Kind.RESYNC_SUCCEEDED, MAC, "CP-8851-3PCC", "http://198.18.0.1/x.xml", None, 1, 6),
    # success with the appended " -- $ERR"
    (b"<14>Dec 11 08:15:02 CP-7841-3PCC 00:56:2b:04:36:15 -- Successful resync http://a/b.xml -- warning 3",
     Kind.RESYNC_SUCCEEDED, MAC, "CP-7841-3PCC", "http://a/b.xml", "warning 3", 1, 6),
    # RFC 5424 with structured data (escaped "]" inside a value) and a BOM
    (b'<11>1 2026-12-01T23:00:00.5Z sep00562b043615 - - - [x@1 a="b\\]c"] \xef\xbb\xbf'
     b"CP-7841-3PCC 00:56:2b:04:36:15 -- Resync failed: 404 Not Found",
     Kind.RESYNC_FAILED, MAC, "CP-7841-3PCC", None, "404 Not Found", 1, 3),
    # RFC 5424, all nil
    (b"<190>1 - - - - - - CP-7832-3PCC 00:56:2b:04:36:15 \xe2\x80\x93 Resync failed: timeout",
     Kind.RESYNC_FAILED, MAC, "CP-7832-3PCC", None, "timeout", 23, 6),
    # util-linux logger --rfc3164: host and tag in front
    (b"<13>Dec  1 23:00:00 asker root: CP-6841-3PCC 00:56:2b:04:36:15 -- Requesting upgrade " + FIRMWARE.encode(),
     Kind.UPGRADE_REQUESTED, MAC, "CP-6841-3PCC", FIRMWARE, None, 1, 5),
    (b"CP-7841-3PCC 00:56:2b:04:36:15 -- Successful upgrade " + FIRMWARE.encode() + b" -- ",
     Kind.UPGRADE_SUCCEEDED, MAC, "CP-7841-3PCC", FIRMWARE, None, None, None),
    (b"<11>CP-7841-3PCC 00-56-2B-04-36-15 - Upgrade failed: image is not for this model",
     Kind.UPGRADE_FAILED, MAC, "CP-7841-3PCC", None, "image is not for this model", 1, 3),
    # ATA time since reset instead of a timestamp, Cisco dotted MAC
    (b"<134>3d 01:02:03 ATA191-MPP 0056.2b04.3615 -- Resync failed: no server",
     Kind.RESYNC_FAILED, MAC, "ATA191-MPP", None, "no server", 16, 6),
    (b"<134>00:12:07 ATA192-3PCC 00562b043615 -- Requesting resync http://198.18.0.1/ata.cfg",
     Kind.RESYNC_REQUESTED, MAC, "ATA192-3PCC", "http://198.18.0.1/ata.cfg", None, 16, 6),
    # Syslog Identifier ($MA) after the timestamp
    (b"<134>Dec  1 23:00:00 00562b043615 CP-7841-3PCC 00:56:2b:04:36:15 -- Requesting resync " + PROFILE.encode(),
     Kind.RESYNC_REQUESTED, MAC, "CP-7841-3PCC", PROFILE, None, 16, 6),
    # Syslog Identifier ($SN) in front of an event line without $PN
    (b"<134>Dec  1 23:00:00 FCH2233ABCD 00:56:2b:04:36:15 -- Resync failed: bad XML",
     Kind.RESYNC_FAILED, MAC, "FCH2233ABCD", None, "bad XML", 16, 6),
    # a line without any MAC still says what happened
    (b"<134>Requesting resync http://198.18.0.1/x.cfg",
     Kind.RESYNC_REQUESTED, None, None, "http://198.18.0.1/x.cfg", None, 16, 6),
    # other phone chatter, naming its phone
    (b"<134>Dec  1 23:00:00 CP-7841-3PCC 00:56:2b:04:36:15 registered line 1",
     Kind.OTHER, MAC, "CP-7841-3PCC", None, None, 16, 6),
    (b"<134>Dec  1 23:00:00 00562b043615 SIP registration ok",
     Kind.OTHER, MAC, None, None, None, 16, 6),
    (b"<13>Dec  1 23:00:00 asker root: hello world", Kind.OTHER, None, None, None, None, 1, 5),
]


@pytest.mark.parametrize(("datagram", "kind", "mac", "model", "url", "error", "facility", "severity"), LINES)
def test_phone_lines(datagram: bytes, kind: Kind, mac: str | None, model: str | None, url: str | None,
                     error: str | None, facility: int | None, severity: int | None) -> None:
    msg = parse(datagram)
    assert (msg.kind, msg.mac, msg.model, msg.url, msg.error) == (kind, mac, model, url, error)
    assert (msg.facility, msg.severity) == (facility, severity)


def test_text_is_the_phones_line_without_header() -> None:
    line = "CP-7841-3PCC 00:56:2b:04:36:15 -- Requesting resync " + PROFILE
    assert parse(b"<13>Dec  1 23:00:00 asker root: " + line.encode()).text == line
    assert parse(b"<13>1 2026-12-01T23:00:00Z h a 1 m - " + line.encode()).text == line
    assert parse(b"<13>Dec  1 23:00:00 asker root: hello world").text == "hello world"


def expand(template: str, *, err: str = "") -> str:
    """What the phone sends for one of our templates (its macro expansion)."""
    values = {"$MA": "00562b043615", "$PN": "CP-7841-3PCC", "$SCHEME": "http", "$SERVIP": "198.18.0.1",
              "$PORT": "80", "$PATH": "/CP-7841-3PCC.cfg", "$ERR": err}
    for macro in sorted(values, key=len, reverse=True):
        template = template.replace(macro, values[macro])
    return template


@pytest.mark.parametrize(("param", "kind"), [
    ("Log_Request_Msg", Kind.RESYNC_REQUESTED), ("Log_Success_Msg", Kind.RESYNC_SUCCEEDED),
    ("Log_Failure_Msg", Kind.RESYNC_FAILED), ("Log_Upgrade_Request_Msg", Kind.UPGRADE_REQUESTED),
    ("Log_Upgrade_Success_Msg", Kind.UPGRADE_SUCCEEDED), ("Log_Upgrade_Failure_Msg", Kind.UPGRADE_FAILED),
])
def test_our_templates_parse_exactly(param: str, kind: Kind) -> None:
    template = OUR_TEMPLATES[param]
    assert "$MA " in template and "$PN" in template
    for err in ("", "HTTP 404"):
        line = expand(template, err=err)
        msg = parse(b"<134>Dec  1 23:00:00 198.18.0.120 " + line.encode())
        assert (msg.kind, msg.mac, msg.model) == (kind, MAC, "CP-7841-3PCC")
        assert msg.text == line.strip()
        if "$SCHEME" in template:
            assert msg.url == "http://198.18.0.1:80/CP-7841-3PCC.cfg"
        else:
            assert msg.url is None
        assert msg.error == (err or None) if "$ERR" in template else msg.error is None


def test_all_six_templates_are_defined() -> None:
    assert set(OUR_TEMPLATES) == {"Log_Request_Msg", "Log_Success_Msg", "Log_Failure_Msg",
                                  "Log_Upgrade_Request_Msg", "Log_Upgrade_Success_Msg", "Log_Upgrade_Failure_Msg"}
    assert len({parse(expand(t).encode()).kind for t in OUR_TEMPLATES.values()}) == 6


@pytest.mark.parametrize("dash", ["--", "–-", "-–", "—", "–", "-", "\u2212"])
def test_dash_variants(dash: str) -> None:
    msg = parse(f"CP-7841-3PCC 00:56:2b:04:36:15 {dash} Resync failed: x".encode())
    assert (msg.kind, msg.mac, msg.error) == (Kind.RESYNC_FAILED, MAC, "x")


def test_cp1252_dash_is_still_a_dash() -> None:
    msg = parse(b"CP-7841-3PCC 00:56:2b:04:36:15 \x96- Requesting resync http://a/b")
    assert (msg.kind, msg.mac, msg.url) == (Kind.RESYNC_REQUESTED, MAC, "http://a/b")


@pytest.mark.parametrize("pri", [b"<999>", b"<-1>", b"<>", b"<192>", b"<1a>", b"<1234>"])
def test_invalid_pri_is_part_of_the_message(pri: bytes) -> None:
    msg = parse(pri + b"CP-7841-3PCC 00:56:2b:04:36:15 -- Resync failed: x")
    assert (msg.facility, msg.severity) == (None, None)
    assert (msg.kind, msg.mac) == (Kind.RESYNC_FAILED, MAC)  # the line is still understood


@pytest.mark.parametrize(("pri", "facility", "severity"), [(b"<0>", 0, 0), (b"<191>", 23, 7), (b"<013>", 1, 5)])
def test_pri_bounds(pri: bytes, facility: int, severity: int) -> None:
    msg = parse(pri + b"hello")
    assert (msg.facility, msg.severity, msg.text) == (facility, severity, "hello")


HOSTILE = [
    b"",
    b"A" * 65_507,
    b"\x00" * 1000,
    b"\xff\xfe\xc3\x28\xa0\xa1" * 100,
    b"<13>hello\x00world",
    b"<13>ok\nDec  1 23:00:00 forged: CP-7841-3PCC 00:56:2b:04:36:16 -- Requesting resync http://evil",
    b'<13>a,"b\r\n00:56:2b:04:36:16,leased,"',
    b"<13>\x1b[2J\x1b[31mred\x1b[0m \x1b]0;title\x07 \x1b[999;999H",
    "<13>\u202eevil\u2066 \ud800".encode("utf-8", "surrogatepass"),
    b"<13>1 " + b"x" * 5000,
    b"<13>1 - - - - - [unterminated sd",
    b"[" * 10_000,
]


@pytest.mark.parametrize("datagram", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_datagrams(datagram: bytes) -> None:
    msg = parse(datagram)
    assert len(msg.text) <= MAX_TEXT
    assert msg.text.isprintable()
    for value in (msg.model, msg.url, msg.error):
        assert value is None or (value.isprintable() and len(value) <= MAX_TEXT)
    assert "\x1b" not in msg.text and "\n" not in msg.text and "\r" not in msg.text


def test_newlines_cannot_forge_a_second_line_or_csv_row() -> None:
    msg = parse(b"<13>ok\nCP-7841-3PCC 00:56:2b:04:36:16 -- Resync failed: forged\r\nx")
    assert len(msg.text.splitlines()) == 1
    out = io.StringIO()
    csv.writer(out).writerow([msg.mac, msg.kind.value, msg.text])
    assert len(list(csv.reader(io.StringIO(out.getvalue())))) == 1


def test_ansi_sequences_are_removed_whole() -> None:
    assert parse(b"<13>\x1b[31mred\x1b[0m text").text == "red text"


@pytest.mark.parametrize(("token", "mac"), [
    ("00:56:2B:04:36:15", MAC), ("00562b043615", MAC), ("00-56-2b-04-36-15", MAC), ("0056.2b04.3615", MAC),
    ("00562b04361", None), ("00562b04361g", None),
])
def test_normalise_mac(token: str, mac: str | None) -> None:
    assert normalise_mac(token) == mac


def test_event_after_letters_that_lowercase_longer() -> None:
    """'İ'.lower() is two characters: the event is still found where it is."""
    msg = parse(("İ" * 100 + " CP-7841-3PCC 00:56:2b:04:36:15 -- Resync failed: x").encode())
    assert (msg.kind, msg.mac, msg.error) == (Kind.RESYNC_FAILED, MAC, "x")


def test_the_example_bootstrap_template_sets_our_exact_log_forms() -> None:
    # The funnel reads resyncs exactly when phones log in OUR_TEMPLATES' form; the shipped template sets it.
    import re
    from pathlib import Path

    from bootstrapd.syslog import OUR_TEMPLATES

    text = (Path(__file__).resolve().parents[2] / "config" / "templates" / "bootstrap.xml.j2").read_text()
    found = dict(re.findall(r'<(Log_\w+) ua="na">([^<]*)</\1>', text))
    assert found == OUR_TEMPLATES
    assert "<Syslog_Server" in text
