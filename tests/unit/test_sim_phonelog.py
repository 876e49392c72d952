"""The phone's syslog lines (mpp-bootstrap.md section 9): the firmware's default templates and ours, the
RFC 3164 header or none, and bootstrapd's own parser understands every one of them."""

from __future__ import annotations

import time

import pytest

from bootstrapd.sim.phone import Phone
from bootstrapd.sim.phonelog import (
    DEFAULT_TEMPLATES,
    OUR_TEMPLATES,
    Event,
    Header,
    datagram,
    log_line,
    syslog_target,
)
from bootstrapd.syslog import OUR_TEMPLATES as RECEIVER_TEMPLATES
from bootstrapd.syslog import Kind, parse

PHONE = Phone("00:56:2b:04:36:15", "CP-8841-3PCC")
IP = "198.18.0.7"
WHERE = {"scheme": "https", "servip": "198.18.0.10", "port": 443, "path": "/remote/00562b043615.xml"}


def test_our_templates_are_the_receivers() -> None:
    assert OUR_TEMPLATES == RECEIVER_TEMPLATES


@pytest.mark.parametrize(("event", "fields", "line"), [
    (Event.RESYNC_REQUEST, WHERE,
     "CP-8841-3PCC 00:56:2b:04:36:15 -- Requesting resync https://198.18.0.10:443/remote/00562b043615.xml"),
    (Event.RESYNC_SUCCESS, WHERE,
     "CP-8841-3PCC 00:56:2b:04:36:15 -- Successful resync https://198.18.0.10:443/remote/00562b043615.xml"),
    (Event.RESYNC_FAILURE, {"err": "decryption failed"}, "CP-8841-3PCC 00:56:2b:04:36:15 -- Resync failed: decryption failed"),
    (Event.UPGRADE_REQUEST, {**WHERE, "path": "/sip88xx.loads"},
     "CP-8841-3PCC 00:56:2b:04:36:15 -- Requesting upgrade https://198.18.0.10:443/sip88xx.loads"),
    (Event.UPGRADE_FAILURE, {"err": "404 file not found"}, "CP-8841-3PCC 00:56:2b:04:36:15 -- Upgrade failed: 404 file not found"),
])
def test_default_templates(event: Event, fields: dict, line: str) -> None:
    assert log_line(event, {}, PHONE, IP, **fields) == line
    assert log_line(event, {event.value: ""}, PHONE, IP, **fields) == line  # empty: the default applies


@pytest.mark.parametrize(("event", "fields", "line"), [
    (Event.RESYNC_REQUEST, WHERE,
     "bootstrapd 00562b043615 CP-8841-3PCC -- Requesting resync https://198.18.0.10:443/remote/00562b043615.xml"),
    (Event.RESYNC_SUCCESS, WHERE,
     "bootstrapd 00562b043615 CP-8841-3PCC -- Successful resync https://198.18.0.10:443/remote/00562b043615.xml -- "),
    (Event.RESYNC_FAILURE, {"err": "decryption failed"}, "bootstrapd 00562b043615 CP-8841-3PCC -- Resync failed: decryption failed"),
    (Event.UPGRADE_SUCCESS, {**WHERE, "path": "/sip88xx.loads"},
     "bootstrapd 00562b043615 CP-8841-3PCC -- Successful upgrade https://198.18.0.10:443/sip88xx.loads -- "),
])
def test_our_templates(event: Event, fields: dict, line: str) -> None:
    assert log_line(event, OUR_TEMPLATES, PHONE, IP, **fields) == line


KINDS = {Event.RESYNC_REQUEST: Kind.RESYNC_REQUESTED, Event.RESYNC_SUCCESS: Kind.RESYNC_SUCCEEDED,
         Event.RESYNC_FAILURE: Kind.RESYNC_FAILED, Event.UPGRADE_REQUEST: Kind.UPGRADE_REQUESTED,
         Event.UPGRADE_SUCCESS: Kind.UPGRADE_SUCCEEDED, Event.UPGRADE_FAILURE: Kind.UPGRADE_FAILED}


@pytest.mark.parametrize("templates", [DEFAULT_TEMPLATES, OUR_TEMPLATES], ids=["default", "ours"])
@pytest.mark.parametrize("header", list(Header))
@pytest.mark.parametrize("event", list(Event))
def test_bootstrapds_parser_reads_every_line(templates: dict, header: Header, event: Event) -> None:
    err = "404 file not found" if event in (Event.RESYNC_FAILURE, Event.UPGRADE_FAILURE) else ""
    line = log_line(event, templates, PHONE, IP, **WHERE, err=err)
    msg = parse(datagram(line, header, "SEP00562B043615", time.time()))
    assert (msg.kind, msg.mac, msg.model) == (KINDS[event], PHONE.mac, PHONE.model)
    if err:
        assert msg.error == err
    else:
        assert msg.url == "https://198.18.0.10:443/remote/00562b043615.xml"
    assert (msg.facility, msg.severity) == ((16, 6) if header is Header.RFC3164 else (None, None))


def test_rfc3164_header_shape() -> None:
    now = time.mktime((2026, 3, 5, 7, 8, 9, 0, 0, -1))
    assert datagram("hello", Header.RFC3164, "SEP00562B043615", now) == b"<134>Mar  5 07:08:09 SEP00562B043615 prov: hello"
    assert datagram("hello", Header.BARE, "SEP00562B043615", now) == b"hello"
    assert len(datagram("x" * 5000, Header.BARE, "h", now)) == 1024  # RFC 3164 section 4.1


@pytest.mark.parametrize(("value", "target"), [
    ("198.18.0.1", ("198.18.0.1", 514)),
    (" 198.18.0.1:5514 ", ("198.18.0.1", 5514)),
    ("syslog.staging.example.net", ("syslog.staging.example.net", 514)),
    ("", None), ("host:0", None), ("host:99999", None), ("host:x", None), ("a b", None), (":514", None),
])
def test_syslog_server_parameter(value: str, target: tuple[str, int] | None) -> None:
    assert syslog_target(value) == target
