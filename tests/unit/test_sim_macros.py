"""Profile-rule macros as a phone expands them (mpp-bootstrap.md section 4)."""

from __future__ import annotations

import pytest

from bootstrapd.sim.macros import expand, resync_values
from bootstrapd.sim.phone import Phone, assign_quirks, make_phones

PHONE = Phone("00:56:2b:04:36:15", "CP-8841-3PCC", serial="FCH1234ABCD")


@pytest.mark.parametrize(("template", "expected"), [
    ("/$PSN.xml", "/8841-3PCC.xml"),
    ("/$PN.cfg", "/CP-8841-3PCC.cfg"),
    ("$PN.cfg", "CP-8841-3PCC.cfg"),
    ("/Cisco/$MA.cfg", "/Cisco/00562b043615.cfg"),
    ("/$MAU.xml", "/00562B043615.xml"),
    ("/$MAC.xml", "/00:56:2b:04:36:15.xml"),
    ("/$(MA)x.cfg", "/00562b043615x.cfg"),          # $(NAME) ends the name explicitly
    ("/$(PN)-$(SN).cfg", "/CP-8841-3PCC-FCH1234ABCD.cfg"),
    ("/price$$5/$MA", "/price$5/00562b043615"),      # $$ is a literal $
    ("/$$MA", "/$MA"),
    ("http://h/$IP/$SWVER", "http://h/198.18.0.7/12.0.1"),
    ("/$NOPE.cfg", "/$NOPE.cfg"),                    # unknown macros stay as written
    ("/$(NOPE).cfg", "/$(NOPE).cfg"),
    ("/end$", "/end$"),
    ("no macros", "no macros"),
])
def test_expand(template: str, expected: str) -> None:
    assert expand(template, PHONE.macros("198.18.0.7")) == expected


def test_user_agent_names_model_firmware_and_mac() -> None:
    assert PHONE.user_agent == "Cisco-CP-8841-3PCC/12.0.1 (00562b043615)"


def test_factory_default_rule_by_series() -> None:
    assert Phone("00:56:2b:00:00:01", "CP-6841-3PCC").default_rule == "$PN.cfg"   # 6800 admin guide
    assert Phone("00:56:2b:00:00:01", "CP-7832-3PCC").default_rule == "/$PSN.xml"  # parameter reference


def test_phones_have_distinct_macs_models_and_ouis_in_turn() -> None:
    phones = make_phones(2000, seed=3, models=["CP-6841-3PCC", "CP-8841-3PCC"], ouis=["00:56:2b", "2c:31:24"])
    assert len({p.mac for p in phones}) == 2000
    assert [p.model for p in phones[:3]] == ["CP-6841-3PCC", "CP-8841-3PCC", "CP-6841-3PCC"]
    assert [p.mac[:8] for p in phones[:3]] == ["00:56:2b", "2c:31:24", "00:56:2b"]
    assert make_phones(5, seed=3) == make_phones(5, seed=3)
    later = make_phones(5, seed=3, start=5)
    assert not {p.mac for p in later} & {p.mac for p in make_phones(5, seed=3)}


@pytest.mark.parametrize(("mac", "model"), [("00:56:2B:04:36:15", "CP-8841-3PCC"), ("00562b043615", "CP-8841-3PCC"),
                                            ("00:56:2b:04:36:15", "SPA-504G")])
def test_phone_rejects_bad_identity(mac: str, model: str) -> None:
    with pytest.raises(ValueError):
        Phone(mac, model)


def test_misbehaving_phones_are_chosen_by_seed_and_distinct() -> None:
    phones = make_phones(20, seed=3)
    quirky = assign_quirks(phones, 3, silent=2, fail_resync=3, wrong_key=1)
    assert assign_quirks(phones, 3, silent=2, fail_resync=3, wrong_key=1) == quirky  # deterministic
    assert [p.mac for p in quirky] == [p.mac for p in phones]
    flags = [(p.silent, p.fail_resync, p.wrong_key) for p in quirky]
    assert (sum(f[0] for f in flags), sum(f[1] for f in flags), sum(f[2] for f in flags)) == (2, 3, 1)
    assert all(sum(f) <= 1 for f in flags)
    assert assign_quirks(phones, 4, silent=2, fail_resync=3, wrong_key=1) != quirky
    with pytest.raises(ValueError, match="21 misbehaving phones"):
        assign_quirks(phones, 3, silent=21)


def test_both_syslog_header_forms_on_every_floor() -> None:
    assert {p.syslog_header for p in make_phones(2)} == {"rfc3164", "bare"}


def test_resync_macros() -> None:
    values = {**PHONE.macros("198.18.0.7"), **resync_values("tftp", "198.18.0.10", 69, "/basic.txt", "x")}
    assert expand("$PN $MAC -- Requesting resync $SCHEME://$SERVIP:$PORT$PATH ($ERR)", values) == (
        "CP-8841-3PCC 00:56:2b:04:36:15 -- Requesting resync tftp://198.18.0.10:69/basic.txt (x)")
