"""Profile names in the phone's macros, and who is asking (path MAC, User-Agent, lease)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from bootstrapd.files.identify import LeaseInfo, identify, parse_user_agent
from bootstrapd.files.names import NameMatch, PatternError, compile_name
from bootstrapd.files.outcome import IdentifiedBy

MAC = "00:56:2b:04:36:15"

NAMES = [
    # pattern, requested name, expected (model, mac) or None for no match
    ("$PSN.xml", "/7841-3PCC.xml", ("7841", None)),
    ("$PSN.xml", "7841-3pcc.XML", ("7841", None)),
    ("$PSN.xml", "/CP-7841-3PCC.xml", ("7841", None)),  # the examples disagree on $PSN's CP- prefix
    ("$PN.cfg", "/CP-7841-3PCC.cfg", ("7841", None)),
    ("$PN.cfg", "cp-6841-3pcc.cfg", ("6841", None)),
    ("/$PN.cfg", "CP-8832NR-3PCC.cfg", ("8832NR", None)),
    ("$PN.cfg", "/CP-7841-3PCC.xml", None),
    ("$PN.cfg", "/CP-7841.cfg", None),
    ("$PN.cfg", "/x/CP-7841-3PCC.cfg", None),
    ("$MA.cfg", "/00562b043615.cfg", (None, MAC)),
    ("$MA.cfg", "00562B043615.CFG", (None, MAC)),
    ("$MAU.cfg", "00562b043615.cfg", (None, MAC)),
    ("$MA.cfg", "00562b04361.cfg", None),
    ("$MA.cfg", "00562b0436150.cfg", None),
    ("$MA.cfg", "00562b04361g.cfg", None),
    ("Cisco/$MA.cfg", "/cisco/00562b043615.cfg", (None, MAC)),
    ("Cisco/$MA.cfg", "/00562b043615.cfg", None),
    ("$MAC.xml", "00:56:2B:04:36:15.xml", (None, MAC)),  # longest macro: $MAC, not $MA + "C"
    ("$(MA)C.xml", "00562b043615C.xml", (None, MAC)),
    ("spa$PSN-$MA.xml", "SPA7841-3PCC-00562b043615.xml", ("7841", MAC)),
    ("$MA/$MAC.cfg", "00562b043615/00:56:2b:04:36:15.cfg", (None, MAC)),
    ("$MA/$MAC.cfg", "00562b043615/00:56:2b:04:36:16.cfg", None),  # two MACs: nobody's name
    ("a$$b.xml", "a$b.xml", (None, None)),
    ("init.cfg", "/INIT.cfg", (None, None)),
    ("init.cfg", "init_cfg", None),  # the dot is literal
]


@pytest.mark.parametrize(("pattern", "name", "expected"), NAMES)
def test_name_patterns(pattern: str, name: str, expected: tuple[str | None, str | None] | None) -> None:
    got = compile_name(pattern).match(name)
    assert got == (None if expected is None else NameMatch(*expected))


def test_a_match_knows_the_product_name() -> None:
    got = compile_name("$PSN.xml").match("7841-3pcc.xml")
    assert got is not None and got.pn == "CP-7841-3PCC"


@pytest.mark.parametrize(("pattern", "message"), [
    ("$SN.xml", "unknown macro $SN in '$SN.xml'"),
    ("$(FOO).xml", "unknown macro $(FOO) in '$(FOO).xml'"),
    ("/", "empty name pattern '/'"),
])
def test_bad_patterns_say_why(pattern: str, message: str) -> None:
    with pytest.raises(PatternError, match="^" + message.replace("$", r"\$").replace("(", r"\(").replace(")", r"\)")):
        compile_name(pattern)


@pytest.mark.parametrize(("ua", "model", "firmware", "mac"), [
    ("Cisco-CP-7832-3PCC/11.0.1 (00562b043615)", "CP-7832-3PCC", "11.0.1", MAC),
    ("Cisco-CP-8841-3PCC/11.0 (00562B043615)", "CP-8841-3PCC", "11.0", MAC),
    ("Cisco-CP-6841-3PCC/12.0.1 (00:56:2b:04:36:15) extra", "CP-6841-3PCC", "12.0.1", MAC),
    ("Cisco-CP-7841-3PCC (00562b043615)", "CP-7841-3PCC", None, MAC),
    ("MyPhone/1.0", None, None, None),
    ("Cisco-CP-7841-3PCC/11.3.7", "CP-7841-3PCC", "11.3.7", None),
    ("(00562b04361)", None, None, None),
    ("Cisco-CP-7841-3PCC/1 (00:56-2b0436:15)", "CP-7841-3PCC", "1", None),
    ("Cisco-CP-7841-3PCC/11.0<script> (00562b043615)", "CP-7841-3PCC", "11.0", MAC),
    ("", None, None, None),
    ("x" * 600 + " (00562b043615)", None, None, None),  # over the bound: not parsed
])
def test_user_agents_parse_tolerantly(ua: str, model: str | None, firmware: str | None, mac: str | None) -> None:
    got = parse_user_agent(ua)
    assert (got.model, got.firmware, got.mac) == (model, firmware, mac)


OTHER = "00:56:2b:00:00:01"
UA = "Cisco-CP-7832-3PCC/11.0.1 (00562b043615)"
UA_OTHER = "Cisco-CP-7832-3PCC/11.0.1 (00562b000001)"
PATH = NameMatch(None, MAC)
PATH_MODEL = NameMatch("7841", None)

IDENTIFY = [
    # path, user agent, lease, -> mac, identified by, model, conflicts
    (PATH, UA, LeaseInfo(MAC, "CP-7832-3PCC"), MAC, IdentifiedBy.PATH, "CP-7832-3PCC", ()),
    (PATH, UA_OTHER, None, MAC, IdentifiedBy.PATH, "CP-7832-3PCC", (f"path={MAC}", f"user_agent={OTHER}")),
    (PATH, None, (OTHER, None), MAC, IdentifiedBy.PATH, None, (f"path={MAC}", f"lease={OTHER}")),
    (None, UA, (OTHER, "CP-7832-3PCC"), MAC, IdentifiedBy.USER_AGENT, "CP-7832-3PCC",
     (f"user_agent={MAC}", f"lease={OTHER}")),
    (None, None, LeaseInfo(OTHER, "CP-7841-3PCC\0", "mpp"), OTHER, IdentifiedBy.LEASE, "CP-7841-3PCC", ()),
    (None, "curl/8.0", None, None, IdentifiedBy.NONE, None, ()),
    (PATH_MODEL, UA, None, MAC, IdentifiedBy.USER_AGENT, "CP-7841-3PCC",
     ("path_model=CP-7841-3PCC", "user_agent_model=CP-7832-3PCC")),
    (PATH_MODEL, None, (MAC, "CP-7841-3PCC"), MAC, IdentifiedBy.LEASE, "CP-7841-3PCC", ()),
    (PATH, UA_OTHER, (OTHER, "CP-8841-3PCC"), MAC, IdentifiedBy.PATH, "CP-7832-3PCC",
     (f"path={MAC}", f"user_agent={OTHER}", f"lease={OTHER}", "user_agent_model=CP-7832-3PCC",
      "lease_model=CP-8841-3PCC")),
]


@pytest.mark.parametrize(("path", "ua", "lease", "mac", "by", "model", "conflicts"), IDENTIFY)
def test_identification_precedence_and_conflicts(path, ua, lease, mac, by, model, conflicts) -> None:
    client = IPv4Address("198.18.0.50")
    asked: list[IPv4Address] = []

    def lease_of(addr: IPv4Address):
        asked.append(addr)
        return lease

    device, _ = identify(path, ua, client, lease_of)
    assert (device.mac, device.identified_by, device.model, device.conflicts) == (mac, by, model, conflicts)
    assert asked == [client]


def test_the_lease_class_counts_only_for_the_identified_device() -> None:
    client = IPv4Address("198.18.0.50")
    _, cls = identify(None, None, client, lambda a: LeaseInfo(MAC, None, "mpp"))
    assert cls == "mpp"
    _, cls = identify(NameMatch(None, OTHER), None, client, lambda a: LeaseInfo(MAC, None, "mpp"))
    assert cls is None
