"""Profile rendering: Jinja2 templates, per device, XML-escaped, then gzip and encryption (site-yaml.md `files`).

Templates are compiled once, when the resolver is built (a reload builds a new one). StrictUndefined turns a
misspelt variable into an error, which `check` reports for every inventory row before the file is served;
autoescape XML-escapes every substituted value, so an inventory field holding `<&"']]>` cannot break the
profile. Output is ASCII (the phones read nothing else): other characters become character references.
`$MA`-style macros in values pass through untouched for the phone to expand.
"""

from __future__ import annotations

import gzip as gzip_
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from types import TracebackType
from typing import Any

import jinja2
import markupsafe

from bootstrapd.config.model import Encrypt, Profile
from bootstrapd.files import crypto
from bootstrapd.files.inventory import Row
from bootstrapd.files.outcome import Device

RandomBytes = Callable[[int], bytes]
# Characters XML 1.0 forbids even as character references (section 2.2): dropped from substituted values.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_chars(value: Any) -> Any:
    """Jinja2 `finalize`: every substituted value without the characters no XML document may hold."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return NOT_XML.sub("", value)
    return value


@dataclass(frozen=True, slots=True)
class DeviceVars:
    """`device` in a template (site-yaml.md's comment); every field is text, empty when unknown."""

    mac: str
    MA: str
    MAU: str
    PN: str
    PSN: str
    model: str
    address: str
    class_: str
    firmware: str
    serial: str

    def as_dict(self) -> dict[str, str]:
        return {"mac": self.mac, "MA": self.MA, "MAU": self.MAU, "PN": self.PN, "PSN": self.PSN,
                "model": self.model, "address": self.address, "class": self.class_,
                "firmware": self.firmware, "serial": self.serial}


def device_vars(device: Device, client: IPv4Address | None, device_class: str | None, row: Row | None) -> DeviceVars:
    ma = device.mac.replace(":", "") if device.mac else ""
    pn = device.model or ""
    psn = pn[3:] if pn.startswith("CP-") else pn
    model = psn[: -len("-3PCC")] if psn.endswith("-3PCC") else psn
    return DeviceVars(device.mac or "", ma, ma.upper(), pn, psn, model, str(client) if client else "",
                      device_class or "", device.firmware or "", row.serial if row else "")


def context(dev: DeviceVars, row: Row | None, columns: tuple[str, ...], variables: Mapping[str, str]) -> dict[str, Any]:
    """Template variables: site variables, under the inventory columns (empty for an unknown device), under
    `device`."""
    ctx: dict[str, Any] = dict(variables)
    if row is not None:
        ctx.update(row.columns)
    else:
        ctx.update(dict.fromkeys(columns, ""))
    ctx["device"] = dev.as_dict()
    return ctx


class Templates:
    """Every profile's template, compiled once; one Environment per directory so includes resolve there."""

    def __init__(self) -> None:
        self._envs: dict[str, jinja2.Environment] = {}
        self._templates: dict[str, jinja2.Template] = {}

    def load(self, path: str) -> jinja2.Template:
        """The compiled template; jinja2.TemplateError (syntax, missing file) as raised."""
        found = self._templates.get(path)
        if found is None:
            found = self._env(os.path.dirname(path)).get_template(os.path.basename(path))
            self._templates[path] = found
        return found

    def _env(self, directory: str) -> jinja2.Environment:
        env = self._envs.get(directory)
        if env is None:
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(directory),
                autoescape=True,  # XML escaping of every substituted value (& < > " ' are the same in XML)
                undefined=jinja2.StrictUndefined,
                auto_reload=False,  # loaded once; a reload builds a new resolver
                keep_trailing_newline=True,
                cache_size=-1,
                finalize=_xml_chars,
            )
            self._envs[directory] = env
        return env


def render_xml(template: jinja2.Template, ctx: Mapping[str, Any]) -> bytes:
    """The profile text as ASCII bytes; jinja2 errors (undefined variables) propagate."""
    return template.render(ctx).encode("ascii", "xmlcharrefreplace")


def compress(data: bytes, enabled: bool) -> bytes:
    # mtime=0: the same profile compresses to the same bytes (cacheable, comparable).
    return gzip_.compress(data, compresslevel=6, mtime=0) if enabled else data


def seal(data: bytes, profile: Profile, key: str, random_bytes: RandomBytes) -> tuple[bytes, str | None]:
    """Encrypt as the profile asks: (body, HTTP Content-Encoding or None). CryptoError without a key."""
    enc = profile.encrypt
    if enc is Encrypt.NONE:
        return data, None
    if not key:
        raise crypto.CryptoError("encryption asked but the device has no inventory `key`")
    if enc is Encrypt.AES128GCM:
        return crypto.aes128gcm_encrypt(data, key.encode("utf-8"), random_bytes(crypto.RFC8188_SALT)), "aes128gcm"
    digest = "md5" if enc is Encrypt.AES_256_CBC_MD5 else "sha256"
    return crypto.openssl_encrypt(data, key, random_bytes(crypto.OPENSSL_SALT), digest), None


def template_line(exc: BaseException, filename: str) -> int | None:
    """The template line an exception was raised at (Jinja2 rewrites tracebacks to template lines)."""
    line = getattr(exc, "lineno", None)
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line if isinstance(line, int) else None
