"""The site file contract: defaults, spellings, extends chains, warnings, and the JSON Schema."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from bootstrapd.config import check_site, load_site
from bootstrapd.config.model import UnknownDevices
from bootstrapd.config.schema import json_schema
from bootstrapd.errors import ConfigError

CONFIG = Path(__file__).resolve().parents[2] / "config"
MINIMAL = """\
site: t
listen: {interfaces: [stg0], address: 198.18.0.1}
domain: Stg.Test.
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_minimal_file_gets_documented_defaults(tmp_path: Path) -> None:
    site = load_site(write(tmp_path, "s.yaml", MINIMAL + "dhcp: {subnets: [{prefix: 198.18.0.0/24}]}\n"))
    assert site.domain == "stg.test"
    assert (site.listen.dns_port, site.listen.dhcp_port) == (53, 67)
    assert site.state_dir == "/var/lib/bootstrapd"
    assert (site.dhcp.lease_time, site.dhcp.offer_hold) == (3600, 30)
    assert site.dhcp.authoritative is True
    assert site.dhcp.unknown_devices is UnknownDevices.IGNORE
    assert site.dns.ttl == 300 and site.dns.ns == ("ns1",)
    assert (site.dns.soa.refresh, site.dns.soa.retry, site.dns.soa.expire, site.dns.soa.minimum) == (
        3600, 600, 86400, 60)
    assert site.metrics.listen is None


@pytest.mark.parametrize("spelling", ["00:56:2b:04:36:15", "00-56-2B-04-36-15", "00562b043615"])
def test_mac_spellings_are_equivalent(tmp_path: Path, spelling: str) -> None:
    text = MINIMAL + f"dhcp:\n  subnets: [{{prefix: 198.18.0.0/24}}]\n  reservations:\n" \
        f"    - {{mac: '{spelling}', address: 198.18.0.5}}\n"
    site = load_site(write(tmp_path, "s.yaml", text))
    assert site.dhcp.reservations[0].mac == "00:56:2b:04:36:15"


@pytest.mark.parametrize(("raw", "seconds"), [("90s", 90), ("10m", 600), ("1h", 3600), ("1d", 86400), (45, 45)])
def test_duration_spellings(tmp_path: Path, raw: object, seconds: int) -> None:
    site = load_site(write(tmp_path, "s.yaml", MINIMAL + f"dhcp: {{lease_time: {raw}}}\n"))
    assert site.dhcp.lease_time == seconds


def test_extends_chain_merges_mappings_and_replaces_lists(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL + "dhcp:\n  lease_time: 2h\n  options: {dns_servers: [198.18.0.1]}\n"
          "  subnets: [{prefix: 198.18.0.0/24}, {prefix: 198.18.1.0/24}]\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\ndhcp:\n  options: {ntp_servers: [198.18.0.2]}\n")
    top = write(tmp_path, "c.yaml", "extends: b.yaml\nsite: c\ndhcp:\n  subnets: [{prefix: 198.18.0.0/24}]\n")
    site = load_site(top)
    assert site.site == "c"
    assert site.dhcp.lease_time == 7200
    assert site.dhcp.options.dns_servers == (ipaddress.IPv4Address("198.18.0.1"),)
    assert site.dhcp.options.ntp_servers == (ipaddress.IPv4Address("198.18.0.2"),)
    assert [str(s.prefix) for s in site.dhcp.subnets] == ["198.18.0.0/24"]


def test_error_in_a_base_file_names_the_base_file(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", MINIMAL + "dhcp: {offer_hold: soon}\n")
    top = write(tmp_path, "top.yaml", "extends: base.yaml\nsite: top\n")
    assert [str(d) for d in check_site(top).errors] == [
        f"{base}:4: dhcp.offer_hold: expected a duration like 90s, 10m, 1h, 1d, got 'soon'"]


def test_extends_cycle_is_an_error(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "extends: b.yaml\n" + MINIMAL)
    b = write(tmp_path, "b.yaml", "extends: a.yaml\n")
    assert [str(d) for d in check_site(a).errors] == [
        f"{b}:1: extends: extends cycle: a.yaml -> b.yaml -> a.yaml"]


def test_extends_missing_file_is_an_error(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", MINIMAL + "extends: nowhere.yaml\n")
    assert [str(d) for d in check_site(a).errors] == [
        f"{a}:4: extends: file not found: {tmp_path}/nowhere.yaml"]


def test_load_site_raises_config_error_with_every_message(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", "site: t\n")
    with pytest.raises(ConfigError) as exc:
        load_site(path)
    assert len(exc.value.diagnostics) == 2


def test_warnings_do_not_invalidate(tmp_path: Path) -> None:
    text = MINIMAL + ("dhcp: {subnets: [{prefix: 198.18.0.0/24}]}\ndns:\n  records:\n"
                      "    - {name: a, type: A, value: 198.18.0.9}\n    - {name: b, type: A, value: 198.18.0.8}\n"
                      "  srv:\n    - service: _sip._udp\n      targets:\n"
                      "        - {target: a, port: 80, priority: 10, weight: 60}\n"
                      "        - {target: b, port: 80, priority: 10, weight: 20}\n")
    path = write(tmp_path, "s.yaml", text)
    result = check_site(path)
    assert result.site is not None
    assert [str(d) for d in result.warnings] == [
        f"{path}:10: dns.srv[0].service: warning: '_sip._udp' is not one the phones query "
        "(_ciscoprov-https._tls or _ciscoprov-http._tcp)",
        f"{path}:11: dns.srv[0].targets: warning: priority 10 holds targets of different weights [20, 60]; "
        "phones may read weights either way (RFC 2782 vs Cisco's table)",
    ]


def test_digest_changes_with_content(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", MINIMAL)
    first = check_site(path).digest
    Path(path).write_text(MINIMAL + "# comment\n")
    assert check_site(path).digest != first


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG.glob("*.yaml")))
def test_shipped_configs_validate_against_generated_schema(name: str) -> None:
    doc = yaml.safe_load((CONFIG / name).read_text())
    jsonschema.validate(doc, json_schema())


def test_schema_rejects_unknown_keys() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"site": "x", "listen": {"interfaces": [], "address": "1.2.3.4"},
                             "domain": "d", "dchp": {}}, json_schema())


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bootstrapd", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG.glob("*.yaml")))
def test_cli_check_strict_accepts_shipped_configs(name: str) -> None:
    r = run_cli("check", "--strict", str(CONFIG / name))
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_check_reports_three_errors_with_lines_and_exits_1(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", MINIMAL + "dhcp:\n  lease_time: 1w\n  offer_hold: 30s\n  authoritativ: true\n"
                 "  unknown_devices: everyone\n")
    r = run_cli("check", path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"{path}:4: dhcp.subnets: warning: no subnets: the DHCP service will lease nothing",  # checked too
        f"{path}:5: dhcp.lease_time: expected a duration like 90s, 10m, 1h, 1d, got '1w'",
        f"{path}:7: dhcp.authoritativ: unknown key (did you mean 'authoritative'?)",
        f"{path}:8: dhcp.unknown_devices: expected one of ignore | lease, got 'everyone'",
    ]
    assert "3 error(s), 1 warning(s)" in r.stdout


def test_cli_check_strict_makes_warnings_fatal(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", MINIMAL)  # no subnets: a warning
    assert run_cli("check", path).returncode == 0
    r = run_cli("check", "--strict", path)
    assert r.returncode == 1
    assert "warning: no subnets" in r.stderr


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run_cli("check").returncode == 2
    assert run_cli("check", str(tmp_path / "missing.yaml")).returncode == 2
    assert run_cli("frobnicate").returncode == 2
    assert run_cli().returncode == 2


def test_cli_schema_and_version() -> None:
    r = run_cli("schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    site = schema["$defs"]["Site"]
    assert site["properties"]["dhcp"] == {"$ref": "#/$defs/Dhcp", "description": "DHCPv4 service"}
    assert "extends" in site["properties"]
    assert site["required"] == ["site", "listen", "domain"]
    assert "required" not in schema["$defs"]["SitePartial"]
    assert run_cli("--version").stdout.startswith("bootstrapd ")
