"""`bootstrapd check` for the `files:` section (site-yaml.md, "What `bootstrapd check` must catch").

Files are checked where they are: a missing root, template, inventory, password file, certificate or key; a
template syntax error at the template's own file:line; then every profile is rendered with the resolver's
own renderer for every inventory row (a problem is located at the row's CSV file:line) and, where
`devices: any`, for an unknown device (located at the profile). A rendered profile must be well-formed XML,
and a profile that encrypts needs every row's `key`. Problems shared by many rows are reported once, at the
first row, with how many more rows share it.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import jinja2

from bootstrapd.config.model import Encrypt, Files, Profile, ProfileDevices, Site
from bootstrapd.config.yamlnodes import Diagnostic, Loc
from bootstrapd.files.certs import certificate_names, covers, https_names
from bootstrapd.files.inventory import Inventory, Row, read_inventory
from bootstrapd.files.names import NamePattern, PatternError, compile_name
from bootstrapd.files.outcome import Device, IdentifiedBy
from bootstrapd.files.render import Templates, context, device_vars, render_xml, template_line
from bootstrapd.files.resolve import profile_label

SAMPLE_PN = "CP-7841-3PCC"  # the model an unknown device is checked with when a name pattern captures one
SAMPLE_ADDRESS = IPv4Address("198.18.0.100")  # a client address, when listen.address itself is in error


@dataclass
class _Report:
    at: Callable[[str], Loc]
    out: list[Diagnostic] = field(default_factory=list)

    def error(self, path: str, message: str, warning: bool = False) -> None:
        loc = self.at(path)
        self.out.append(Diagnostic(loc.file, loc.line, path, message, warning))

    def located(self, file: str, line: int, path: str, message: str) -> None:
        self.out.append(Diagnostic(file, line, path, message))


def check_files(site: Site, at: Callable[[str], Loc],
                indices: Mapping[str, tuple[int, ...]] | None = None,
                bad: Callable[[str], bool] = lambda path: False) -> list[Diagnostic]:
    """Every problem of `site.files`; `at(path)` locates a config path (its YAML file and line). `indices`:
    for a list some of whose items failed to build (and were left out), the file's index of each kept item.
    `bad(path)`: something at, above or below `path` failed to build, so checks that read it are skipped."""
    files = site.files
    if files is None:
        return []
    rep = _Report(at)
    if not bad("listen"):
        _servers(site, files, rep)
    if not os.path.isdir(files.root):
        rep.error("files.root", f"{'not a directory' if os.path.exists(files.root) else 'no such directory'}: "
                  f"{files.root}")
    inventory = _inventory(files, rep)
    # Without the inventory's columns every row variable would be "undefined": render only with them.
    render = ((files.inventory is None and not bad("files.inventory")) or inventory is not None) \
        and not bad("files.variables")
    checked = _Profiles(Templates(), set(), render, bad("files.inventory"), bad)
    where = (indices or {}).get("files.profiles") or range(len(files.profiles))
    for i, profile in zip(where, files.profiles, strict=True):
        _profile(site, files, i, profile, inventory, checked, rep)
    return rep.out


@dataclass
class _Profiles:
    templates: Templates
    broken: set[str]  # template files already reported: once each, not once per profile using them
    render: bool
    inventory_failed: bool = False  # files.inventory failed to build: "needs an inventory" would be noise
    bad: Callable[[str], bool] = lambda path: False  # a path failed to build: skip the checks that read it


def _servers(site: Site, files: Files, rep: _Report) -> None:
    if files.tftp is None and files.http is None and files.https is None:
        rep.error("files", "no server enabled (tftp, http or https): nothing will be served", warning=True)
    if files.tftp is not None and files.tftp.port in (site.listen.dns_port, site.listen.dhcp_port):
        rep.error("files.tftp.port", f"UDP port {files.tftp.port} is already DNS's or DHCP's")
    tcp = {site.listen.dns_port: "DNS's"}
    for name, server in (("http", files.http), ("https", files.https)):
        if server is not None:
            if server.port in tcp:
                rep.error(f"files.{name}.port", f"TCP port {server.port} is already {tcp[server.port]}")
            tcp.setdefault(server.port, f"files.{name}'s")
    if files.auth is not None:
        _password(files.auth.password_file, rep)
    if files.https is not None:
        _https(site, files.https.cert, files.https.key, rep)


def _read(path: str, key: str, rep: _Report) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20)
    except FileNotFoundError:
        rep.error(key, f"no such file: {path}")
    except OSError as e:
        rep.error(key, f"cannot read {path}: {e.strerror or e}")
    return None


def _password(path: str, rep: _Report) -> None:
    data = _read(path, "files.auth.password_file", rep)
    if data is not None and not data.decode("utf-8", "replace").strip():
        rep.error("files.auth.password_file", f"{path} holds no password")


def _https(site: Site, cert_path: str, key_path: str, rep: _Report) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = _read(key_path, "files.https.key", rep)
    if key is not None:
        try:
            load_pem_private_key(key, None)
        except (ValueError, TypeError) as e:
            rep.error("files.https.key", f"{key_path} is not an unencrypted PEM private key ({e})")
    cert = _read(cert_path, "files.https.cert", rep)
    if cert is None:
        return
    try:
        names, ips = certificate_names(cert)
    except ValueError as e:
        rep.error("files.https.cert", f"{cert_path} holds no PEM certificate ({e})")
        return
    if not isinstance(site.domain, str) or not isinstance(site.listen.address, IPv4Address):
        return  # the names cannot be told (those keys are in error themselves)
    for path, host in https_names(site):
        if not covers(names, ips, host):
            shown = ", ".join(sorted(names | {str(i) for i in ips})) or "no names"
            rep.error("files.https.cert", f"the certificate does not cover {host} (phones use it: {path}); "
                      f"it covers {shown}", warning=True)


def _inventory(files: Files, rep: _Report) -> Inventory | None:
    if files.inventory is None:
        return None
    if not os.path.isfile(files.inventory):
        rep.error("files.inventory", f"no such file: {files.inventory}")
        return None
    inventory, diags = read_inventory(files.inventory)
    rep.out.extend(diags)  # malformed and duplicate MACs, bad headers: each at its CSV line
    if any(d.line == 1 for d in diags):
        return None  # no usable header
    for column in inventory.columns:
        if column in files.variables:
            rep.error("files.variables", f"inventory column {column!r} hides files.variables.{column} for "
                      "every row", warning=True)
    return inventory


def _profile(site: Site, files: Files, i: int, profile: Profile, inventory: Inventory | None,
             checked: _Profiles, rep: _Report) -> None:
    path = f"files.profiles[{i}]"
    patterns: list[NamePattern] = []
    for j, text in enumerate(profile.names):
        try:
            patterns.append(compile_name(text))
        except PatternError as e:
            rep.error(f"{path}.names[{j}]", str(e))
    if not profile.names:
        rep.error(f"{path}.names", "at least one name is required")
    needs_rows = profile.devices is ProfileDevices.INVENTORY or profile.encrypt is not Encrypt.NONE
    if needs_rows and files.inventory is None and not checked.inventory_failed:
        rep.error(f"{path}.devices" if profile.encrypt is Encrypt.NONE else f"{path}.encrypt",
                  "needs files.inventory (the rows, and their `key` for encryption)")
    if profile.encrypt is not Encrypt.NONE and profile.devices is ProfileDevices.ANY \
            and not checked.bad(f"{path}.devices"):
        rep.error(f"{path}.encrypt", f"encrypt: {profile.encrypt.value} needs each device's inventory `key`, "
                  "but devices: any also serves unknown devices; use devices: inventory")
    template = _template(profile.template, f"{path}.template", checked, rep)
    if template is None or not checked.render:
        return
    _render_all(site, files, i, profile, template, patterns, inventory, rep)


def _template(file: str, path: str, checked: _Profiles, rep: _Report) -> jinja2.Template | None:
    if file in checked.broken:
        return None
    if not os.path.isfile(file):
        checked.broken.add(file)
        rep.error(path, f"no such file: {file}")
        return None
    try:
        return checked.templates.load(file)
    except jinja2.TemplateSyntaxError as e:
        checked.broken.add(file)
        rep.located(e.filename or file, e.lineno or 1, path, f"template syntax error: {e.message}")
    except (jinja2.TemplateError, OSError, UnicodeDecodeError) as e:
        checked.broken.add(file)
        rep.error(path, f"cannot load {file}: {type(e).__name__}: {e}")
    return None


def _render_all(site: Site, files: Files, i: int, profile: Profile, template: jinja2.Template,
                patterns: list[NamePattern], inventory: Inventory | None, rep: _Report) -> None:
    path = f"files.profiles[{i}]"
    label = profile_label(profile.template)
    with_model = any(kind == "model" for p in patterns for _, kind in p.kinds)
    rows: list[Row | None] = list(inventory.rows) if inventory else []
    if profile.devices is ProfileDevices.ANY:
        rows.append(None)  # an unknown device
    found: dict[tuple[str, str, bool], list[Row | None]] = {}
    for row in rows:
        for key, message in _render_one(site, files, profile, template, row, inventory, with_model):
            found.setdefault((key, message, row is None), []).append(row)
    for (key, message, _), bad in found.items():
        first = bad[0]
        more = f" (and {len(bad) - 1} more row{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        who = f"for {first.mac}" if first else "for an unknown device"
        text = f"{label} {who}: {message}{more}"
        if first is None:
            rep.error(f"{path}{key}", text)
        else:
            rep.located(inventory.file if inventory else "", first.line, f"{path}{key}", text)


def _render_one(site: Site, files: Files, profile: Profile, template: jinja2.Template, row: Row | None,
                inventory: Inventory | None, with_model: bool) -> list[tuple[str, str]]:
    """(path suffix, message) of each problem rendering `profile` for `row` (None: an unknown device)."""
    problems: list[tuple[str, str]] = []
    if row is not None and profile.encrypt is not Encrypt.NONE and not row.key:
        problems.append((".encrypt", f"encrypt: {profile.encrypt.value} needs the row's `key`; it has none"))
    device = Device(row.mac if row else None, IdentifiedBy.PATH if row else IdentifiedBy.NONE,
                    SAMPLE_PN if with_model else None)
    address = getattr(site.listen, "address", None)  # listen (or its address) may have failed to build
    address = address if isinstance(address, IPv4Address) else None
    dev = device_vars(device, address or SAMPLE_ADDRESS, None, row)
    ctx = context(dev, row, inventory.columns if inventory else (), files.variables)
    try:
        xml = render_xml(template, ctx)
    except Exception as e:  # UndefinedError, a filter's TypeError...: all the template's fault
        line = template_line(e, template.filename or profile.template)
        where = f"{template.filename}:{line}: " if line else ""
        kind = "" if isinstance(e, jinja2.UndefinedError) else f"{type(e).__name__}: "
        problems.append((".template", f"{where}{kind}{e}"))
        return problems
    try:
        ET.fromstring(xml)
    except ET.ParseError as e:
        problems.append((".template", f"renders XML that is not well-formed: {e}"))
    return problems
