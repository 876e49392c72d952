"""How a phone turns its DHCP options into the first profile URL (mpp-bootstrap.md sections 3 and 4).

The phone reads `DHCP_Option_To_Use` left to right (default 66,160,159,150,60,43,125) and the first usable
option wins; no later option is consulted, even if fetching from the first one fails. Without any, it
looks up the provisioning SRV records of its option-15 domain through its option-6 servers, and without a
domain it is stuck (on a real floor it would go on to Cisco's cloud activation, unreachable there).
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bootstrapd.sim.macros import expand
from bootstrapd.sim.phone import Phone

OPTION_ORDER = (66, 160, 159, 150, 60, 43, 125)  # DHCP_Option_To_Use, factory default
DEFAULT_PORTS = {"tftp": 69, "http": 80, "https": 443}
SRV_SERVICES = ("_ciscoprov-https._tls", "_ciscoprov-http._tcp")
ACS_VENDOR_CLASS = b"dslforum.org"
VALUE_OPTIONS = ("--uid", "--pwd", "--key")  # profile-rule options followed by a value


@dataclass(frozen=True)
class ProfileUrl:
    """One place to fetch a profile from; `host` is a name or an IPv4 literal."""

    scheme: str
    host: str
    port: int
    path: str
    username: str | None = None
    password: str | None = None
    key: str | None = None  # `--key`: the profile is `openssl enc -aes-256-cbc` encrypted with it
    post: bool = False  # `--post`: HTTP POST (with the phone's status in the body) instead of GET

    def __str__(self) -> str:
        port = "" if DEFAULT_PORTS.get(self.scheme) == self.port else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}{self.path}"


@dataclass(frozen=True)
class Source:
    """What DHCP told the phone: the option that won, its raw value, and the URLs to try in order."""

    option: int
    value: str
    urls: tuple[ProfileUrl, ...]


@dataclass(frozen=True)
class SrvDiscovery:
    """No provisioning option: look up these SRV names (in order) through these DNS servers."""

    names: tuple[str, ...]
    dns_servers: tuple[str, ...]


@dataclass(frozen=True)
class Stuck:
    """Nothing to go on after DHCP; `reason` says why, in the words of the staging report."""

    reason: str
    ignored: tuple[str, ...] = field(default=())


def _text(value: bytes) -> str:
    return value.rstrip(b"\0").decode("ascii", errors="replace").strip()


def ipv4_list(value: bytes) -> list[str]:
    return [str(ipaddress.IPv4Address(value[i:i + 4])) for i in range(0, len(value) - len(value) % 4, 4)]


def parse_rule(rule: str, phone: Phone, ip: str, default_host: str | None = None) -> ProfileUrl | None:
    """A profile rule `[--options] [scheme://][server[:port]]/path` as a URL, macros expanded.

    No scheme means TFTP; no server (`/path` or a bare file name) means `default_host`, the option-66
    server. `--uid`/`--pwd` give HTTP credentials, `--key` the decryption key (quotes allowed around a
    value), `--post` asks for a POST; other options (`--srv`) are accepted and not simulated. None when
    the rule cannot be fetched from anywhere.
    """
    try:
        words = shlex.split(rule)
    except ValueError:  # an unbalanced quote
        return None
    opts: dict[str, str] = {}
    while words and words[0].startswith("--"):
        key = words.pop(0)
        if key in VALUE_OPTIONS:
            if not words:
                return None
            opts[key] = words.pop(0)
        else:
            opts[key] = ""
    if len(words) != 1:
        return None
    text = expand(words[0], phone.macros(ip))
    if "://" not in text:
        server, slash, path = text.partition("/")
        if not slash:  # a bare file name
            server, path = "", text
        if not server and default_host is None:
            return None
        text = f"tftp://{server or default_host}/{path}"
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return ProfileUrl(scheme, parts.hostname, port, path, opts.get("--uid", phone.username),
                      opts.get("--pwd", phone.password), opts.get("--key"), "--post" in opts)


def _server_urls(servers: list[str], phone: Phone, ip: str) -> tuple[ProfileUrl, ...]:
    """`scheme://host` servers (a bare host means TFTP) joined with the phone's factory-default rule."""
    urls = []
    for server in servers:
        base = server if "://" in server else f"tftp://{server}"
        parts = urlsplit(base)
        rule = phone.default_rule if parts.path in ("", "/") else parts.path
        url = parse_rule(f"{parts.scheme}://{parts.netloc}/{rule.lstrip('/')}", phone, ip)
        if url is not None:
            urls.append(url)
    return tuple(urls)


def choose_source(options: Mapping[int, bytes], phone: Phone, ip: str,
                  order: tuple[int, ...] = OPTION_ORDER) -> Source | SrvDiscovery | Stuck:
    """The phone's decision after DHCP, from the reply's options (code -> raw value)."""
    ignored: list[str] = []
    for code in order:
        value = options.get(code)
        if value is None:
            continue
        found = _source(code, value, options, phone, ip)
        if found is not None:
            return found
        ignored.append(f"option {code} {_text(value)!r} is not usable")
    return _without_option(options, tuple(ignored))


def _source(code: int, value: bytes, options: Mapping[int, bytes], phone: Phone, ip: str) -> Source | None:
    text = _text(value)
    urls: tuple[ProfileUrl, ...] = ()
    if code == 66 and text:
        # A host name or address of a TFTP server; a full URL is accepted too.
        urls = _server_urls([text], phone, ip)
    elif code == 160 and text:
        url = parse_rule(text, phone, ip, default_host=_text(options.get(66, b"")) or None)
        urls = (url,) if url is not None else ()
    elif code == 159 and text:
        urls = _server_urls(text.replace(",", " ").split(), phone, ip)
    elif code == 150:
        urls = _server_urls(ipv4_list(value), phone, ip)
    elif code == 43 and options.get(60, b"").rstrip(b"\0") == ACS_VENDOR_CLASS:
        acs = _acs_url(value)
        return Source(43, acs, ()) if acs else None
    # 60 and 125 only qualify TR-069 discovery; they never name a profile by themselves.
    return Source(code, text, urls) if urls else None


def _acs_url(value: bytes) -> str:
    """Sub-option 1 (ACS URL) of option 43's TR-069 encapsulation."""
    pos = 0
    while pos + 2 <= len(value):
        code, length = value[pos], value[pos + 1]
        if code == 1:
            return _text(value[pos + 2:pos + 2 + length])
        pos += 2 + length
    return ""


def _without_option(options: Mapping[int, bytes], ignored: tuple[str, ...]) -> SrvDiscovery | Stuck:
    domain = _text(options.get(15, b"")).rstrip(".")
    dns = tuple(ipv4_list(options.get(6, b"")))
    if not domain and not dns:
        return Stuck("no provisioning option (66/160/159/150) and no domain (15) or DNS server (6) for SRV",
                     ignored)
    if not domain:
        return Stuck("no provisioning option (66/160/159/150) and no domain (15) to look up SRV records in",
                     ignored)
    if not dns:
        return Stuck(f"no provisioning option (66/160/159/150) and no DNS server (6) to look up SRV records "
                     f"of {domain}", ignored)
    return SrvDiscovery(tuple(f"{svc}.{domain}" for svc in SRV_SERVICES), dns)
