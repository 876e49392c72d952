"""Which names phones will check the HTTPS certificate against, and whether it covers them (`check`).

Phones reach the floor's HTTPS by the SRV targets of `_ciscoprov-https._tls`, by the host of an https://
option 160 URL, or an https:// option 159 server. A name whose in-zone A records do not include
`listen.address` belongs to another server (its own certificate), so it is not held against ours.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

from bootstrapd.config.model import RecordType, Site

HTTPS_SERVICE = "_ciscoprov-https._tls"


def fqdn(site: Site, name: str) -> str:
    if name == "@":
        return site.domain
    return name.rstrip(".").lower() if name.endswith(".") else f"{name.lower()}.{site.domain}"


def https_names(site: Site) -> Iterator[tuple[str, str]]:
    """(config path, host) of every name a phone may use to reach our HTTPS, ours only."""
    ours = str(site.listen.address)
    addresses: dict[str, set[str]] = {}
    for r in site.dns.records:
        if r.type is RecordType.A:
            addresses.setdefault(fqdn(site, r.name), set()).add(r.value.strip())
    seen: set[str] = set()
    for path, host in _candidates(site):
        host = host.lower()
        if host in seen or "$" in host:
            continue  # once per name; a macro in a host is the phone's to expand
        seen.add(host)
        in_zone = host == site.domain or host.endswith("." + site.domain)
        if in_zone and host in addresses and ours not in addresses[host]:
            continue
        yield path, host


def _candidates(site: Site) -> Iterator[tuple[str, str]]:
    for i, svc in enumerate(site.dns.srv):
        if svc.service.rstrip(".").lower() == HTTPS_SERVICE:
            for j, t in enumerate(svc.targets):
                if t.target != ".":
                    yield f"dns.srv[{i}].targets[{j}].target", fqdn(site, t.target)
    layers = [("dhcp.options", site.dhcp.options)]
    layers += [(f"dhcp.subnets[{i}].options", s.options) for i, s in enumerate(site.dhcp.subnets)]
    layers += [(f"dhcp.classes[{i}].options", c.options) for i, c in enumerate(site.dhcp.classes)]
    for path, opts in layers:
        for key, value in (("provisioning_url", opts.provisioning_url), ("provisioning_server",
                                                                         opts.provisioning_server)):
            host = _https_host(value)
            if host:
                yield f"{path}.{key}", host


def _https_host(value: str | None) -> str | None:
    if not value:
        return None
    text = value.split()[-1]  # a profile rule may start with --options
    if not text.lower().startswith("https://"):
        return None
    try:
        return urlsplit(text).hostname
    except ValueError:
        return None


def certificate_names(pem: bytes) -> tuple[set[str], set[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """DNS names (lower-case, wildcards kept) and IP addresses the first certificate in `pem` is valid for.
    ValueError when `pem` holds no certificate."""
    cert = x509.load_pem_x509_certificates(pem)[0]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return {str(a.value).lower() for a in cns}, set()
    return ({n.lower() for n in san.get_values_for_type(x509.DNSName)},
            {ip for ip in san.get_values_for_type(x509.IPAddress)
             if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)})


def covers(names: set[str], ips: set[ipaddress.IPv4Address | ipaddress.IPv6Address], host: str) -> bool:
    """RFC 6125 section 6.4: exact match, or a wildcard as the whole left-most label."""
    try:
        return ipaddress.ip_address(host) in ips
    except ValueError:
        pass
    host = host.rstrip(".").lower()
    if host in names:
        return True
    _, _, rest = host.partition(".")
    return bool(rest) and f"*.{rest}" in names
