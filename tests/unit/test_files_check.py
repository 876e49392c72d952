"""`bootstrapd check` on the `files:` section: each kind of problem, exactly located."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from files_site import BOOTSTRAP, INVENTORY, SITE_HEAD, make_site

from bootstrapd.config import check_site

ONE_PROFILE = """\
files:
  root: srv
  tftp: {}
  inventory: inventory.csv
  variables: {remote_profile_rule: "https://prov.stg.test/$MA.xml", syslog: 198.18.0.1}
  profiles:
    - names: ["$PSN.xml"]
      template: templates/bootstrap.xml.j2
"""
T = "templates/bootstrap.xml.j2"


def remove(rel: str) -> Callable[[Path], None]:
    def act(d: Path) -> None:
        p = d / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()

    return act


def write(rel: str, text: str) -> Callable[[Path], None]:
    def act(d: Path) -> None:
        (d / rel).write_text(text)

    return act


def files(text: str, head: str = SITE_HEAD) -> Callable[[Path], None]:
    return write("site.yaml", head + text)


CASES = [
    ("missing root", remove("srv"), ["{d}/site.yaml:6: files.root: no such directory: {d}/srv"]),
    ("root is a file", lambda d: (shutil.rmtree(d / "srv"), (d / "srv").write_text("x")),
     ["{d}/site.yaml:6: files.root: not a directory: {d}/srv"]),
    ("missing template", remove(T), [f"{{d}}/site.yaml:15: files.profiles[0].template: no such file: {{d}}/{T}"]),
    ("missing inventory", remove("inventory.csv"), ["{d}/site.yaml:9: files.inventory: no such file: {d}/inventory.csv"]),
    ("template syntax error", write(T, "<flat-profile>\n<a/>\n{{ device.MA ) }}\n</flat-profile>\n"),
     [f"{{d}}/{T}:3: files.profiles[0].template: template syntax error: unexpected ')'"]),
    ("undefined variable in every row and for an unknown device",
     lambda d: (files(ONE_PROFILE)(d), write(T, BOOTSTRAP.replace("{{ label }}", "{{ lable }}"))(d)),
     [f"{{d}}/inventory.csv:2: files.profiles[0].template: {T} for 00:56:2b:04:36:15: {{d}}/{T}:4: 'lable' is "
      "undefined (and 1 more row)",
      f"{{d}}/site.yaml:12: files.profiles[0].template: {T} for an unknown device: {{d}}/{T}:4: 'lable' is undefined"]),
    ("undefined in one row only",
     lambda d: (files(ONE_PROFILE)(d), write(T, BOOTSTRAP.replace(
         "{{ label }}", "{% if serial == 'FCH2301ABCE' %}{{ device.nope }}{% endif %}"))(d)),
     [f"{{d}}/inventory.csv:3: files.profiles[0].template: {T} for 00:56:2b:04:36:16: {{d}}/{T}:4: 'dict object' "
      "has no attribute 'nope'"]),
    ("not well-formed XML", lambda d: (files(ONE_PROFILE)(d), write(T, "<flat-profile><a></flat-profile>\n")(d)),
     [f"{{d}}/inventory.csv:2: files.profiles[0].template: {T} for 00:56:2b:04:36:15: renders XML that is not "
      "well-formed: mismatched tag: line 1, column 19 (and 1 more row)",
      f"{{d}}/site.yaml:12: files.profiles[0].template: {T} for an unknown device: renders XML that is not "
      "well-formed: mismatched tag: line 1, column 19"]),
    ("a value that breaks XML unescaped is escaped", write(T, "<a b='{{ label }}'>{{ label }}</a>"), []),
    ("row without a key where encryption is asked",
     write("inventory.csv", INVENTORY + "00562b043617,FCH3,,No key\n"),
     [f"{{d}}/inventory.csv:4: files.profiles[1].encrypt: {T} for 00:56:2b:04:36:17: encrypt: aes-256-cbc needs "
      "the row's `key`; it has none",
      f"{{d}}/inventory.csv:4: files.profiles[2].encrypt: {T} for 00:56:2b:04:36:17: encrypt: aes128gcm needs the "
      "row's `key`; it has none"]),
    ("duplicate and malformed MACs", write("inventory.csv", INVENTORY + "00562b043615,X,k,dup\nzz:56,Y,k,bad\n"),
     ["{d}/inventory.csv:4: files.inventory: duplicate MAC 00:56:2b:04:36:15 (first at line 2)",
      "{d}/inventory.csv:5: files.inventory: not a valid MAC address: 'zz:56'"]),
    ("inventory without a mac column: no row is rendered", write("inventory.csv", "serial,key\nX,k\n"),
     ["{d}/inventory.csv:1: files.inventory: no `mac` column in the header (serial, key)"]),
    ("encryption for any device", files(ONE_PROFILE + "      encrypt: aes-256-cbc-md5\n"),
     ["{d}/site.yaml:13: files.profiles[0].encrypt: encrypt: aes-256-cbc-md5 needs each device's inventory `key`, "
      "but devices: any also serves unknown devices; use devices: inventory"]),
    ("devices: inventory without an inventory",
     files(ONE_PROFILE.replace("  inventory: inventory.csv\n", "").replace("{{ key }}", "")
           + "      devices: inventory\n"),
     ["{d}/site.yaml:12: files.profiles[0].devices: needs files.inventory (the rows, and their `key` for encryption)"]),
    ("unknown macro in a name", files(ONE_PROFILE.replace('["$PSN.xml"]', '["$PSN.xml", "$SN.cfg"]')),
     ["{d}/site.yaml:11: files.profiles[0].names[1]: unknown macro $SN in '$SN.cfg' (known: PN, PSN, MA, MAU, MAC; "
      "`$$` is a literal $)"]),
    ("variable hidden by a column", files(ONE_PROFILE.replace("syslog: 198.18.0.1", "syslog: 198.18.0.1, label: x")),
     ["{d}/site.yaml:9: files.variables: warning: inventory column 'label' hides files.variables.label for every row"]),
    ("bad variable name", files(ONE_PROFILE.replace("syslog: 198.18.0.1", "syslog: 198.18.0.1, device: x")),
     ["{d}/site.yaml:9: files.variables: variable 'device' must be an identifier (letters, digits, _) and not "
      "'device'"]),
    ("no server", files(ONE_PROFILE.replace("  tftp: {}\n", "")),
     ["{d}/site.yaml:5: files: warning: no server enabled (tftp, http or https): nothing will be served"]),
    ("port clashes", files(ONE_PROFILE.replace("  tftp: {}\n", "  tftp: {port: 53}\n  http: {port: 8080}\n"
                                                "  https: {port: 8080, cert: c, key: k}\n")),
     ["{d}/site.yaml:7: files.tftp.port: UDP port 53 is already DNS's or DHCP's",
      "{d}/site.yaml:9: files.https.cert: no such file: {d}/c",
      "{d}/site.yaml:9: files.https.key: no such file: {d}/k",
      "{d}/site.yaml:9: files.https.port: TCP port 8080 is already files.http's"]),
    ("password file missing", files(ONE_PROFILE + "  auth: {user: staging, password_file: http.pass}\n"),
     ["{d}/site.yaml:13: files.auth.password_file: no such file: {d}/http.pass"]),
]


@pytest.mark.parametrize(("case", "break_it", "expected"), CASES, ids=[c[0] for c in CASES])
def test_check_reports_each_files_problem_located(tmp_path: Path, case: str, break_it, expected: list[str]) -> None:
    make_site(tmp_path)
    break_it(tmp_path)
    result = check_site(str(tmp_path / "site.yaml"))
    assert [str(x) for x in result.diagnostics] == [e.format(d=tmp_path) for e in expected]


def test_the_good_site_checks_clean_from_any_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = make_site(tmp_path)
    monkeypatch.chdir("/")
    result = check_site(os.path.relpath(site, "/"))
    assert result.diagnostics == ()
    assert result.site is not None and result.site.files is not None
    assert result.site.files.profiles[0].template == str(tmp_path / T)


def test_paths_are_relative_to_the_file_that_wrote_them(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    make_site(tmp_path / "site")
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "inv.csv").write_text(INVENTORY)
    (tmp_path / "base" / "base.yaml").write_text(
        SITE_HEAD + "files:\n  root: nowhere\n  inventory: inv.csv\n"
        "  variables: {remote_profile_rule: x, syslog: y}\n")
    (tmp_path / "site" / "site.yaml").write_text(
        "extends: ../base/base.yaml\nfiles:\n  root: srv\n  tftp: {}\n"
        "  profiles:\n    - names: [\"$PSN.xml\"]\n      template: templates/bootstrap.xml.j2\n")
    result = check_site(str(tmp_path / "site" / "site.yaml"))
    assert [str(x) for x in result.diagnostics] == []
    assert result.site is not None and result.site.files is not None
    assert result.site.files.root == str(tmp_path / "site" / "srv")  # written in site.yaml
    assert result.site.files.inventory == str(tmp_path / "base" / "inv.csv")  # written in base.yaml


def certificate(d: Path, names: list[str], ips: list[str] = ()) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "x")])
    now = datetime.datetime.now(datetime.UTC)
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False).sign(key, hashes.SHA256()))
    (d / "floor.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "floor.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))


HTTPS_SITE = ONE_PROFILE + """\
  https: {port: 443, cert: floor.crt, key: floor.key}
dns:
  records:
    - {name: prov, type: A, value: 198.18.0.1}
    - {name: elsewhere, type: A, value: 198.18.0.77}
  srv:
    - service: _ciscoprov-https._tls
      targets: [{target: prov, port: 443}, {target: elsewhere, port: 443}]
"""


@pytest.mark.parametrize(("names", "ips", "options", "expected"), [
    (["prov.stg.test"], [], "", []),
    (["*.stg.test"], [], "", []),
    (["other.stg.test"], [], "", ["{d}/site.yaml:13: files.https.cert: warning: the certificate does not cover "
                                  "prov.stg.test (phones use it: dns.srv[0].targets[0].target); it covers "
                                  "other.stg.test"]),
    (["prov.stg.test"], [], "https://198.18.0.1/$PSN.xml",
     ["{d}/site.yaml:13: files.https.cert: warning: the certificate does not cover 198.18.0.1 (phones use it: "
      "dhcp.options.provisioning_url); it covers prov.stg.test"]),
    (["prov.stg.test"], ["198.18.0.1"], "https://198.18.0.1/$PSN.xml", []),
    (["prov.stg.test"], [], "http://198.18.0.1/$PSN.xml", []),  # not HTTPS: the certificate is not asked
])
def test_certificate_must_cover_the_names_phones_use(tmp_path: Path, names, ips, options, expected) -> None:
    make_site(tmp_path)
    certificate(tmp_path, names, ips)
    head = SITE_HEAD.replace("]}]}", f"]}}], options: {{provisioning_url: '{options}'}}}}") if options else SITE_HEAD
    files(HTTPS_SITE, head)(tmp_path)
    result = check_site(str(tmp_path / "site.yaml"))
    assert [str(x) for x in result.diagnostics] == [e.format(d=tmp_path) for e in expected]


def test_missing_certificate_and_key(tmp_path: Path) -> None:
    make_site(tmp_path)
    files(HTTPS_SITE)(tmp_path)
    result = check_site(str(tmp_path / "site.yaml"))
    assert [str(x) for x in result.diagnostics] == [
        f"{tmp_path}/site.yaml:13: files.https.cert: no such file: {tmp_path}/floor.crt",
        f"{tmp_path}/site.yaml:13: files.https.key: no such file: {tmp_path}/floor.key",
    ]


EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "site.example.yaml"


def test_the_shipped_example_checks_clean_from_another_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = check_site(os.path.relpath(EXAMPLE, tmp_path))
    assert [str(x) for x in result.diagnostics] == []
    assert result.site is not None and result.site.files is not None
    f = result.site.files
    assert f.root == str(EXAMPLE.parent / "files") and os.path.isdir(f.root)
    assert f.inventory == str(EXAMPLE.parent / "inventory.csv")
    assert f.https is not None and f.https.cert == str(EXAMPLE.parent / "tls" / "floor.crt")
    assert f.auth is not None and f.auth.password_file == str(EXAMPLE.parent / "http.pass")
    assert [p.template for p in f.profiles] == [str(EXAMPLE.parent / "templates" / n)
                                               for n in ("bootstrap.xml.j2", "device.xml.j2")]
