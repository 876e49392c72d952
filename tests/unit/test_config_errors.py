"""Bad site files: each one must produce exactly the located messages an operator reads.

Every case is a whole file; the expected lines are `line: path: message` (the file name is prefixed here).
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrapd.config import check_site

HEAD = """\
site: t
listen: {interfaces: [stg0], address: 198.18.0.1}
domain: stg.test
"""
SUBNET = """\
dhcp:
  subnets:
    - prefix: 198.18.0.0/24
      pools: ["198.18.0.100-198.18.0.200"]
"""
SRV_PROV1 = "  srv:\n    - service: _ciscoprov-http._tcp\n      targets:\n        - {target: prov1, port: 80}\n"

CASES: list[tuple[str, str, list[str]]] = [
    ("yaml_syntax", "site: t\nlisten: [stg0\n", ["3: <top>: YAML syntax error: expected ',' or ']', but got '<stream end>'"]),
    ("top_not_mapping", "- a\n- b\n", ["1: <top>: the site file must be a mapping of keys"]),
    ("missing_required", "site: t\n", ["1: domain: required key is missing", "1: listen: required key is missing"]),
    ("unknown_top_key", HEAD + "dchp: {}\n", ["4: dchp: unknown key (did you mean 'dhcp'?)"]),
    ("unknown_nested_key", HEAD + "dhcp: {lease_tme: 1h}\n",
     ["4: dhcp.lease_tme: unknown key (did you mean 'lease_time'?)"]),
    ("unknown_key_no_hint", HEAD + "zzz: 1\n", ["4: zzz: unknown key"]),
    ("duplicate_key", HEAD + "site: u\n", ["4: site: duplicate key (each key may appear once)"]),
    ("wrong_type_list", "site: t\nlisten: {interfaces: stg0, address: 198.18.0.1}\ndomain: stg.test\n",
     ["2: listen.interfaces: expected a list, got 'stg0'"]),
    ("wrong_type_mapping", HEAD + "dhcp: [1]\n", ["4: dhcp: expected a mapping, got a list"]),
    ("wrong_type_bool", HEAD + "dhcp: {authoritative: maybe}\n",
     ["4: dhcp.authoritative: expected true or false, got 'maybe'"]),
    ("wrong_type_string", "site: 42\nlisten: {interfaces: [stg0], address: 198.18.0.1}\ndomain: stg.test\n",
     ["1: site: expected string, got number 42"]),
    ("bad_address", "site: t\nlisten: {interfaces: [stg0], address: 198.18.0.300}\ndomain: stg.test\n",
     ["2: listen.address: not a valid IPv4 address: '198.18.0.300'"]),
    ("bad_port", "site: t\nlisten: {interfaces: [stg0], address: 198.18.0.1, dns_port: 70000}\ndomain: stg.test\n",
     ["2: listen.dns_port: must be between 1 and 65535, got 70000"]),
    ("bad_duration", HEAD + "dhcp: {lease_time: 1w}\n",
     ["4: dhcp.lease_time: expected a duration like 90s, 10m, 1h, 1d, got '1w'"]),
    ("bad_enum", HEAD + "dhcp: {unknown_devices: leese}\n",
     ["4: dhcp.unknown_devices: expected one of ignore | lease, got 'leese' (did you mean 'lease'?)"]),
    ("bad_mac", HEAD + SUBNET + "  reservations:\n    - {mac: 00:56:2b:04:36, address: 198.18.0.50}\n",
     ["9: dhcp.reservations[0].mac: not a valid MAC address: '00:56:2b:04:36' (5 octets)"]),
    ("bad_prefix", HEAD + "dhcp:\n  subnets:\n    - prefix: 198.18.0.1/24\n",
     ["6: dhcp.subnets[0].prefix: not a valid IPv4 prefix: '198.18.0.1/24' "
      "(198.18.0.1/24 has host bits set)"]),
    ("bad_range", HEAD + "dhcp:\n  subnets:\n    - prefix: 198.18.0.0/24\n      pools: ['198.18.0.9-198.18.0.2']\n",
     ["7: dhcp.subnets[0].pools[0]: range ends before it starts: '198.18.0.9-198.18.0.2'"]),
    ("pool_outside_subnet", HEAD + "dhcp:\n  subnets:\n    - prefix: 198.18.0.0/24\n"
     "      pools: ['198.18.1.10-198.18.1.20']\n",
     ["7: dhcp.subnets[0].pools[0]: pool 198.18.1.10-198.18.1.20 is outside its subnet 198.18.0.0/24"]),
    ("pools_overlap", HEAD + "dhcp:\n  subnets:\n    - prefix: 198.18.0.0/24\n"
     "      pools: ['198.18.0.10-198.18.0.20', '198.18.0.15-198.18.0.30']\n",
     ["7: dhcp.subnets[0].pools[1]: pool 198.18.0.15-198.18.0.30 overlaps pool 198.18.0.10-198.18.0.20 "
      "(dhcp.subnets[0].pools[0])"]),
    ("subnets_overlap", HEAD + "dhcp:\n  subnets:\n    - prefix: 198.18.0.0/23\n    - prefix: 198.18.1.0/24\n",
     ["7: dhcp.subnets[1].prefix: 198.18.1.0/24 overlaps subnet [0] 198.18.0.0/23"]),
    ("pool_has_broadcast", HEAD + "dhcp:\n  subnets:\n    - prefix: 198.18.0.0/24\n"
     "      pools: ['198.18.0.200-198.18.0.255']\n",
     ["7: dhcp.subnets[0].pools[0]: pool 198.18.0.200-198.18.0.255 includes the network or broadcast "
      "address of 198.18.0.0/24"]),
    ("server_in_pool", HEAD + "dhcp:\n  subnets:\n    - prefix: 198.18.0.0/24\n"
     "      pools: ['198.18.0.1-198.18.0.20']\n",
     ["7: dhcp.subnets[0].pools[0]: pool 198.18.0.1-198.18.0.20 contains this server's own address 198.18.0.1"]),
    ("router_outside", HEAD + "dhcp:\n  subnets:\n    - prefix: 198.18.0.0/24\n      router: 198.18.5.1\n",
     ["7: dhcp.subnets[0].router: router 198.18.5.1 is outside 198.18.0.0/24"]),
    ("reservation_outside", HEAD + SUBNET + "  reservations:\n    - {mac: 00562b043615, address: 198.19.0.5}\n",
     ["9: dhcp.reservations[0].address: address 198.19.0.5 is outside every subnet"]),
    ("reservation_in_pool", HEAD + SUBNET + "  reservations:\n    - {mac: 00562b043615, address: 198.18.0.150}\n",
     ["9: dhcp.reservations[0].address: address 198.18.0.150 is inside a dynamic pool, where it could be "
      "leased to another device; reserve an address outside the pools"]),
    ("reservation_dup_mac", HEAD + SUBNET + "  reservations:\n    - {mac: 00562b043615, address: 198.18.0.5}\n"
     "    - {mac: 00-56-2B-04-36-15, address: 198.18.0.6}\n",
     ["10: dhcp.reservations[1].mac: MAC 00:56:2b:04:36:15 is already reserved in reservations[0]"]),
    ("reservation_dup_address", HEAD + SUBNET + "  reservations:\n    - {mac: 00562b043615, address: 198.18.0.5}\n"
     "    - {mac: 00562b043616, address: 198.18.0.5}\n",
     ["10: dhcp.reservations[1].address: address 198.18.0.5 is already reserved in reservations[0]"]),
    ("reservation_unknown_class", HEAD + SUBNET + "  reservations:\n"
     "    - {mac: 00562b043615, address: 198.18.0.5, class: mpq}\n",
     ["9: dhcp.reservations[0].class: no class named 'mpq'"]),
    ("class_without_match", HEAD + SUBNET + "  classes:\n    - name: mpp\n",
     ["9: dhcp.classes[0].match: a class needs at least one match key (vendor_class, mac_prefix or hostname)"]),
    ("class_duplicate_name", HEAD + SUBNET + "  classes:\n    - {name: mpp, match: {hostname: [SEP*]}}\n"
     "    - {name: mpp, match: {vendor_class: [CP-*]}}\n",
     ["10: dhcp.classes[1].name: duplicate class name 'mpp' (first in classes[0])"]),
    ("option_too_long", HEAD + SUBNET + "  options:\n    provisioning_url: http://x/" + "a" * 250 + "\n",
     ["9: dhcp.options.provisioning_url: option 160 encodes to 259 bytes; a DHCP option holds at most 255"]),
    ("raw_option_managed", HEAD + SUBNET + "  raw_options:\n    - {code: 54, type: ip, value: 198.18.0.9}\n",
     ["9: dhcp.raw_options[0].code: option 54 (server id) is set by bootstrapd itself and cannot be a raw option"]),
    ("raw_option_bad_type", HEAD + SUBNET + "  raw_options:\n    - {code: 200, type: float, value: 1}\n",
     ["9: dhcp.raw_options[0].type: expected one of string | ip | ips | u8 | u16 | u32 | bool | hex, "
      "got 'float'"]),
    ("bad_dns_name", HEAD + "dns:\n  records:\n    - {name: 'bad_name!', type: A, value: 198.18.0.9}\n",
     ["6: dns.records[0].name: not a valid DNS name: 'bad_name!'"]),
    ("bad_a_value", HEAD + "dns:\n  records:\n    - {name: prov1, type: A, value: prov2}\n",
     ["6: dns.records[0].value: not a valid IPv4 address: 'prov2'"]),
    ("cname_and_other", HEAD + "dns:\n  records:\n    - {name: www, type: A, value: 198.18.0.9}\n"
     "    - {name: www, type: CNAME, value: prov1}\n",
     ["7: dns.records[1].name: www.stg.test. has a CNAME and other records (RFC 1034 section 3.6.2)"]),
    ("srv_target_no_a", HEAD + "dns:\n  srv:\n    - service: _ciscoprov-http._tcp\n      targets:\n"
     "        - {target: prov9, port: 80}\n",
     ["8: dns.srv[0].targets[0].target: SRV target prov9.stg.test. has no A record in the zone"]),
    ("srv_target_cname", HEAD + "dns:\n  records:\n    - {name: p, type: CNAME, value: q}\n"
     "    - {name: q, type: A, value: 198.18.0.9}\n  srv:\n    - service: _ciscoprov-http._tcp\n"
     "      targets:\n        - {target: p, port: 80}\n",
     ["11: dns.srv[0].targets[0].target: SRV target p.stg.test. is a CNAME (RFC 2782 forbids it)"]),
    ("srv_missing_port", HEAD + "dns:\n  srv:\n    - service: _ciscoprov-http._tcp\n      targets:\n"
     "        - {target: ns1}\n",
     ["8: dns.srv[0].targets[0].port: required key is missing"]),
    ("metrics_listen", HEAD + "metrics: {listen: 9267}\n",
     ["4: metrics.listen: expected host:port like 127.0.0.1:9267, got 9267"]),
    # Structural and semantic errors together: the checks skip only what failed to build.
    ("left_out_item_keeps_its_index", HEAD + "dns:\n  records:\n    - {name: a, type: B, value: x}\n"
     "    - {name: b, type: A, value: prov2}\n",
     ["6: dns.records[0].type: expected one of A | AAAA | CNAME | TXT | PTR, got 'B'",
      "7: dns.records[1].value: not a valid IPv4 address: 'prov2'"]),
    ("srv_target_whose_record_failed", HEAD + "dns:\n  records:\n    - {name: prov1, type: AA, value: 198.18.0.9}\n"
     + SRV_PROV1,
     ["6: dns.records[0].type: expected one of A | AAAA | CNAME | TXT | PTR, got 'AA' (did you mean 'AAAA'?)"]),
    ("srv_target_whose_record_name_failed", HEAD + "dns:\n  records:\n    - {name: 'prov 1', type: A, value: 198.18.0.9}\n"
     + SRV_PROV1,
     ["6: dns.records[0].name: not a valid DNS name: 'prov 1'"]),
    ("srv_target_whose_a_value_is_bad", HEAD + "dns:\n  records:\n    - {name: prov1, type: A, value: 198.18.0.256}\n"
     + SRV_PROV1,
     ["6: dns.records[0].value: not a valid IPv4 address: '198.18.0.256'"]),
    ("class_whose_match_failed", HEAD + SUBNET + "  reservations:\n    - {mac: 00562b043615, address: 198.18.0.5, class: mpp}\n"
     "  classes:\n    - {name: mpp, match: {vendor_class: CP-*}}\n",
     ["11: dhcp.classes[0].match.vendor_class: expected a list, got 'CP-*'"]),
    ("class_whose_name_failed", HEAD + SUBNET + "  reservations:\n    - {mac: 00562b043615, address: 198.18.0.5, class: mpp}\n"
     "  classes:\n    - {name: [mpp], match: {hostname: [SEP*]}}\n",
     ["11: dhcp.classes[0].name: expected string, got a list"]),
    ("bad_listen_address_and_pool_outside", "site: t\nlisten: {interfaces: [stg0], address: 198.18.0.300}\n"
     "domain: stg.test\ndhcp:\n  subnets:\n    - prefix: 198.18.0.0/24\n      pools: ['198.18.1.1-198.18.1.9']\n",
     ["2: listen.address: not a valid IPv4 address: '198.18.0.300'",
      "7: dhcp.subnets[0].pools[0]: pool 198.18.1.1-198.18.1.9 is outside its subnet 198.18.0.0/24"]),
    ("bad_domain_skips_zone_checks", "site: t\nlisten: {interfaces: [stg0], address: 198.18.0.1}\ndomain: 'stg test'\n"
     "dns:\n  records:\n    - {name: prov2, type: A, value: 198.18.0.9}\n" + SRV_PROV1,
     ["3: domain: not a valid DNS name: 'stg test'"]),
    ("misspelt_records_key", HEAD + "dns:\n  recrods:\n    - {name: prov1, type: A, value: 198.18.0.9}\n" + SRV_PROV1,
     ["5: dns.recrods: unknown key (did you mean 'records'?)"]),
    ("misspelt_match_key", HEAD + SUBNET + "  classes:\n    - {name: mpp, mach: {vendor_class: [CP-*]}}\n",
     ["9: dhcp.classes[0].mach: unknown key (did you mean 'match'?)"]),
    ("bad_subnet_and_reservation", HEAD + "dhcp:\n  subnets:\n    - prefix: 198.18.0.1/24\n    - prefix: 198.18.1.0/24\n"
     "      pools: ['198.18.2.1-198.18.2.9']\n  reservations:\n    - {mac: 00562b043615, address: 198.18.0.5}\n",
     ["6: dhcp.subnets[0].prefix: not a valid IPv4 prefix: '198.18.0.1/24' (198.18.0.1/24 has host bits set)",
      "8: dhcp.subnets[1].pools[0]: pool 198.18.2.1-198.18.2.9 is outside its subnet 198.18.1.0/24"]),

    ("syslog_rate_zero", HEAD + SUBNET + "syslog: {rate_limit: 0}\n",
     ["8: syslog.rate_limit: must be between 1 and 100000, got 0"]),
    ("syslog_port_is_dns_port", HEAD + SUBNET + "syslog: {port: 53}\n",
     ["8: syslog.port: 53 is also listen.dns_port (both UDP on listen.address)"]),
    ("store_bad_backend", HEAD + "store: {backend: postgres}\n",
     ["4: store.backend: expected one of sqlite | postgresql, got 'postgres' (did you mean 'postgresql'?)"]),
    ("store_postgresql_without_dsn", HEAD + "store: {backend: postgresql}\n",
     ["4: store: backend postgresql needs exactly one of dsn and dsn_file"]),
    ("store_postgresql_dsn_and_file", HEAD + "store: {backend: postgresql, dsn: 'host=db', dsn_file: db.dsn}\n",
     ["4: store: backend postgresql needs exactly one of dsn and dsn_file"]),
    ("store_partner_is_self", HEAD + "store: {backend: postgresql, dsn: 'host=db', partners: [198.18.0.1]}\n",
     ["4: store.partners: 198.18.0.1 is this node's own address"]),
    ("store_bad_partner", HEAD + "store: {partners: [198.18.0.256]}\n",
     ["4: store.partners[0]: not a valid IPv4 address: '198.18.0.256'"]),
    ("central_without_dsn", HEAD + "central: {}\n", ["4: central: central needs exactly one of dsn and dsn_file"]),
    ("central_dsn_and_file", HEAD + "central: {dsn: 'host=db', dsn_file: c.dsn}\n",
     ["4: central: central needs exactly one of dsn and dsn_file"]),
    ("central_dsn_file_missing", HEAD + "central:\n  dsn_file: nope.dsn\n",
     ["5: central.dsn_file: cannot read {dir}/nope.dsn: No such file or directory"]),
    ("central_bad_key", HEAD + "central: {dsnn: 'host=db'}\n",
     ["4: central.dsnn: unknown key (did you mean 'dsn'?)"]),
]


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_site_file_reports_located_errors(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = _write(tmp_path, text)
    result = check_site(path)
    assert result.site is None
    got = [str(d) for d in result.errors]
    assert got == [f"{path}:{line.format(dir=tmp_path)}" for line in expected]


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 30


def test_all_errors_of_a_file_are_reported_at_once(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        site: t
        listen: {interfaces: [stg0], address: 198.18.0.1}
        domain: stg.test
        dhcp:
          lease_time: forever
          offer_hold: 30s
          subnet: []
          reservations:
            - {mac: not-a-mac, address: 198.18.0.5}
        """)
    path = _write(tmp_path, text)
    lines = [str(d) for d in check_site(path).errors]
    assert lines == [
        f"{path}:5: dhcp.lease_time: expected a duration like 90s, 10m, 1h, 1d, got 'forever'",
        f"{path}:7: dhcp.subnet: unknown key (did you mean 'subnets'?)",
        f"{path}:9: dhcp.reservations[0].mac: not a valid MAC address: 'not-a-mac'",
    ]


def test_semantic_errors_are_all_reported(tmp_path: Path) -> None:
    text = HEAD + SUBNET + (
        "  reservations:\n"
        "    - {mac: 00562b043615, address: 198.19.0.5}\n"
        "    - {mac: 00562b043615, address: 198.18.0.6, class: nope}\n"
    )
    path = _write(tmp_path, text)
    msgs = [d.message for d in check_site(path).errors]
    assert msgs == [
        "address 198.19.0.5 is outside every subnet",
        "no class named 'nope'",
        "MAC 00:56:2b:04:36:15 is already reserved in reservations[0]",
    ]


MIXED = """\
site: t
listen: {interfaces: [stg0], address: 198.18.0.1}
domain: stg.test
dhcp:
  lease_tme: 1h
  authoritative: maybe
  subnets:
    - prefix: 198.18.0.0/24
      pools: ["198.18.1.10-198.18.1.20"]
dns:
  records:
    - {name: prov1, type: A, value: 198.18.0.300}
  srv:
    - service: _ciscoprov-http._tcp
      targets:
        - {target: prov1, port: 80}
        - {target: prov9, port: 80}
"""


def test_cli_check_reports_structural_type_and_semantic_errors_in_one_run(tmp_path: Path) -> None:
    # prov1's A record has a bad value but is still an A record: no "prov1 has no A record" on line 16.
    path = _write(tmp_path, MIXED)
    r = subprocess.run([sys.executable, "-m", "bootstrapd", "check", path], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"{path}:5: dhcp.lease_tme: unknown key (did you mean 'lease_time'?)",
        f"{path}:6: dhcp.authoritative: expected true or false, got 'maybe'",
        f"{path}:9: dhcp.subnets[0].pools[0]: pool 198.18.1.10-198.18.1.20 is outside its subnet 198.18.0.0/24",
        f"{path}:12: dns.records[0].value: not a valid IPv4 address: '198.18.0.300'",
        f"{path}:17: dns.srv[0].targets[1].target: SRV target prov9.stg.test. has no A record in the zone",
    ]
    assert "5 error(s)" in r.stdout


EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "site.example.yaml"


def _nodes(node: object, path: str) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [(path, node)] if path else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _nodes(v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _nodes(v, f"{path}[{i}]")
    return out


def _mutated(doc: object, path: str, misspell: bool) -> object:
    """A copy of `doc` with the value at `path` replaced by a mapping no typed key accepts, or (misspell)
    with the last key of `path` misspelt."""
    doc = copy.deepcopy(doc)
    parent: Any = doc
    toks = [int(t[1:-1]) if t.startswith("[") else t for t in re.findall(r"[^.\[\]]+|\[\d+\]", path)]
    for tok in toks[:-1]:
        parent = parent[tok]
    last = toks[-1]
    if misspell:
        assert isinstance(last, str)
        parent[_misspelt(last)] = parent.pop(last)
    else:
        parent[last] = {"zz": 1}
    return doc


def _consequence(changed: str, error: str) -> bool:
    """A real error that the change causes elsewhere: a template uses the site variable that was changed away."""
    return changed.startswith("files.variables") and error.startswith("files.profiles[")


def _misspelt(key: str) -> str:
    return key[:-1] + ("x" if key[-1] != "x" else "y")


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith((b + ".", b + "[")) or b.startswith((a + ".", a + "["))


@pytest.mark.parametrize("misspell", [False, True], ids=["bad_value", "misspelt_key"])
def test_what_fails_to_build_causes_no_error_elsewhere(tmp_path: Path, misspell: bool) -> None:
    # Every value of the (valid) example in turn becomes a mapping of an unknown key, which no typed key
    # accepts, or every key in turn is misspelt: each variant's errors must all be at, above or below that
    # value, never follow-on noise elsewhere (an SRV target "without" the A record that failed, a
    # reservation "outside" a failed subnet, a class "missing" whose entry failed...); and never a crash.
    doc = yaml.safe_load(EXAMPLE.read_text())
    shutil.copytree(EXAMPLE.parent, tmp_path / "config")  # the templates, inventory, certificate it names
    site = tmp_path / "config" / "mutated.yaml"
    variants = 0
    for path, _ in _nodes(doc, ""):
        if misspell and path.endswith("]"):
            continue  # a list item has no key
        site.write_text(yaml.safe_dump(_mutated(doc, path, misspell)))
        errors = check_site(str(site)).errors
        assert errors, path
        wrong = path[: path.rfind(".") + 1] + _misspelt(path.rsplit(".", 1)[-1]) if misspell else path
        for e in errors:
            assert (_related(e.path, path) or _related(e.path, wrong)
                    or _consequence(path, e.path)), f"{path}: {e}"
        variants += 1
    assert variants > 120


def test_syslog_without_subnets_is_a_warning(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + "syslog: {}\n")
    result = check_site(path)
    assert result.site is not None and result.site.syslog is not None
    assert f"{path}:4: syslog: warning: no dhcp.subnets: the sink hears only senders inside them, so none" in [
        str(d) for d in result.diagnostics]

