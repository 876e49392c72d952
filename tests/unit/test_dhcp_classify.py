"""Device classes (site-yaml.md `dhcp.classes`): first match wins, every given key must match."""

from __future__ import annotations

import pytest

from bootstrapd.config.model import DeviceClass, Match
from bootstrapd.dhcp.classify import Classifier, classify

MPP = DeviceClass("mpp", Match(vendor_class=("CP-*-3PCC",)))
TR069 = DeviceClass("tr069", Match(vendor_class=("dslforum.org",)))
CISCO_OUI = DeviceClass("cisco-oui", Match(mac_prefix=("00:56:2b", "f8:a5:c5:1a")))
SEP = DeviceClass("sep", Match(hostname=("SEP*", "cp-????")))
STRICT = DeviceClass("strict", Match(vendor_class=("CP-8841-*",), mac_prefix=("00:56:2b",), hostname=("SEP00562B*",)))
CLASSES = (STRICT, MPP, TR069, CISCO_OUI, SEP)

PHONE_MAC = "00:56:2b:04:36:15"
OTHER_MAC = "52:54:00:12:34:56"


@pytest.mark.parametrize(
    ("vendor_class", "mac", "hostname", "expected"),
    [
        # option 60 glob, case-insensitive, trailing NUL ignored
        ("CP-7841-3PCC", OTHER_MAC, None, MPP),
        ("cp-7841-3pcc", OTHER_MAC, None, MPP),
        ("CP-7841-3PCC\x00", OTHER_MAC, None, MPP),
        ("CP-7841-3PCC-extra", OTHER_MAC, None, None),
        ("XCP-7841-3PCC", OTHER_MAC, None, None),
        ("DSLForum.org", OTHER_MAC, None, TR069),
        ("dslforum.org.evil", OTHER_MAC, None, None),
        # MAC prefix: OUI or longer, on the canonical form
        (None, PHONE_MAC, None, CISCO_OUI),
        (None, "F8:A5:C5:1A:00:01", None, CISCO_OUI),
        (None, "f8:a5:c5:1b:00:01", None, None),
        ("udhcp 1.36", OTHER_MAC, None, None),
        # hostname glob; any pattern of a key may match
        (None, OTHER_MAC, "SEP00562B043615", SEP),
        (None, OTHER_MAC, "sep-lobby", SEP),
        (None, OTHER_MAC, "CP-1234\x00", SEP),
        (None, OTHER_MAC, "CP-12345", None),
        # all keys of a class must match; classes are tried in order
        ("CP-8841-3PCC", PHONE_MAC, "SEP00562B043615", STRICT),
        ("CP-8841-3PCC", PHONE_MAC, "desk-12", MPP),
        ("CP-8841-3PCC", PHONE_MAC, None, MPP),
        (None, OTHER_MAC, None, None),
    ],
)
def test_first_matching_class_wins(
    vendor_class: str | None, mac: str, hostname: str | None, expected: DeviceClass | None
) -> None:
    assert Classifier(CLASSES).classify(vendor_class, mac, hostname) is expected
    assert classify(CLASSES, vendor_class, mac, hostname) is expected


def test_glob_metacharacters_are_not_regex() -> None:
    dotted = DeviceClass("dotted", Match(vendor_class=("a.c", "[xy]z")))
    classifier = Classifier((dotted,))
    assert classifier.classify("a.c", OTHER_MAC, None) is dotted
    assert classifier.classify("abc", OTHER_MAC, None) is None
    assert classifier.classify("YZ", OTHER_MAC, None) is dotted


def test_full_mac_as_prefix_matches_only_that_device() -> None:
    one = DeviceClass("one", Match(mac_prefix=(PHONE_MAC,)))
    assert classify((one,), None, PHONE_MAC, None) is one
    assert classify((one,), None, "00:56:2b:04:36:16", None) is None


def test_class_without_match_keys_matches_nobody() -> None:
    # The loader rejects it; if one slipped through it must not hand provisioning options to everyone.
    assert classify((DeviceClass("empty"),), "CP-8841-3PCC", PHONE_MAC, "SEP1") is None


def test_no_classes_means_no_class() -> None:
    assert classify((), "CP-8841-3PCC", PHONE_MAC, None) is None


def test_by_name_finds_reservation_classes() -> None:
    classifier = Classifier(CLASSES)
    assert classifier.by_name("tr069") is TR069
    assert classifier.by_name("missing") is None
