"""Reading a fetched profile as a phone does (mpp-bootstrap.md section 6): `<flat-profile>` (maybe inside
`<device>`), last duplicate wins, gzip detected by its magic, hostile XML refused."""

from __future__ import annotations

import gzip
import zlib

import pytest

from bootstrapd.sim.profile import MAX_INFLATED, ProfileError, compress, number, parse_profile

PROFILE = b"""<?xml version="1.0" encoding="UTF-8"?>
<flat-profile>
  <!-- a comment is no parameter -->
  <Profile_Rule ua="na">--key s3cret https://prov.example.net/$MA.xml</Profile_Rule>
  <Syslog_Server ua="na">198.18.0.1:5514</Syslog_Server>
  <Resync_Periodic ua="na">3600</Resync_Periodic>
  <Resync_Periodic ua="na">600</Resync_Periodic>
  <No_Such_Parameter>kept, and harmless</No_Such_Parameter>
  <Empty_One ua="rw"/>
</flat-profile>
"""


def test_parameters_last_duplicate_wins() -> None:
    params = parse_profile(PROFILE)
    assert params["Profile_Rule"] == "--key s3cret https://prov.example.net/$MA.xml"
    assert params["Syslog_Server"] == "198.18.0.1:5514"
    assert params["Resync_Periodic"] == "600"
    assert params["Empty_One"] == ""
    assert number(params, "Resync_Periodic", 3600) == 600


def test_flat_profile_inside_device() -> None:
    assert parse_profile(b"<device><flat-profile><A>1</A></flat-profile></device>") == {"A": "1"}


def test_gzip_is_detected_by_its_magic() -> None:
    assert parse_profile(gzip.compress(PROFILE)) == parse_profile(PROFILE)
    assert parse_profile(compress(PROFILE)) == parse_profile(PROFILE)


def test_gzip_bomb_is_bounded() -> None:
    bomb = gzip.compress(b"<flat-profile>" + b" " * (MAX_INFLATED + 10) + b"</flat-profile>")
    with pytest.raises(ProfileError, match="inflates to more than"):
        parse_profile(bomb)


LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<flat-profile><Station_Name>&lol3;</Station_Name></flat-profile>"""
EXTERNAL = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<flat-profile><Station_Name>&e;</Station_Name></flat-profile>"""


@pytest.mark.parametrize(("data", "why"), [
    (LAUGHS, "DTD or entity"),
    (EXTERNAL, "DTD or entity"),
    (b"<!-- " + b"x" * 8000 + b" --><!DOCTYPE a><flat-profile/>", "DTD or entity"),
    (LAUGHS.decode().encode("utf-16"), "not UTF-8"),  # another encoding cannot hide a declaration
    (b"<flat-profile><A>&undefined;</A></flat-profile>", "not XML"),
    (b"<flat-profile><A>1</flat-profile>", "not XML"),
    (b"Profile_Rule = http://x/y;", "not XML"),
    (b"<device><other/></device>", "without a <flat-profile>"),
    (b"<html><body>404</body></html>", "is not a <flat-profile>"),
    (b"\x1f\x8bnot really gzip", "bad gzip"),
    (zlib.compress(PROFILE), "not UTF-8"),  # zlib framing is not gzip
])
def test_hostile_or_broken_profiles_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(ProfileError, match=why):
        parse_profile(data)


def test_number_falls_back_to_the_default() -> None:
    assert number({"D": "x"}, "D", 60) == 60
    assert number({"D": "-5"}, "D", 60) == 60
    assert number({}, "D", 60) == 60
    assert number({"D": " 2.5 "}, "D", 60) == 2.5
