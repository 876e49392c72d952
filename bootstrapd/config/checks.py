"""Semantic cross-checks of a structurally valid site (site-yaml.md, "What `bootstrapd check` must catch")."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Sequence
from itertools import combinations
from typing import Any, TypeVar

from bootstrapd.config.build import Builder
from bootstrapd.config.model import Options, RecordType, Site, StoreBackend
from bootstrapd.config.types import ValueProblem, parse_dns_name, parse_ipv4, parse_ipv6
from bootstrapd.config.yamlnodes import Diagnostic, Loc

PROVISIONING_SERVICES = ("_ciscoprov-https._tls", "_ciscoprov-http._tcp")
# Options the server computes itself; a raw option must not shadow them.
MANAGED_CODES = {1: "subnet mask", 3: "router", 12: "hostname", 15: "domain", 50: "requested address",
                 51: "lease_time", 53: "message type", 54: "server id", 55: "request list", 58: "T1",
                 59: "T2", 61: "client id", 82: "relay agent information"}
MAX_OPTION = 255
OPTION_FIELDS = {"time_offset": 2, "dns_servers": 6, "log_servers": 7, "ntp_servers": 42, "acs": 43,
                 "tftp_server": 66, "bootfile": 67, "vivso": 125, "cisco_tftp_servers": 150,
                 "provisioning_server": 159, "provisioning_url": 160}  # RFC 2132 section 2: one length octet
T = TypeVar("T")


class Checker:
    """Checks the model the Builder made of a file, also a partial one (see Builder): a check whose inputs
    failed to build is skipped rather than reporting what follows from that failure."""

    def __init__(self, site: Site, built: Builder, top_file: str) -> None:
        self.site = site
        self._built = built
        self._locs = built.locs
        self._top = top_file
        self.diagnostics: list[Diagnostic] = []

    # -- what built -----------------------------------------------------------------------------------------
    def _failed_at(self, path: str) -> bool:
        """`path` or one of its ancestors failed to build."""
        failed = self._built.failed
        while path:
            if path in failed:
                return True
            path = _parent(path)
        return "" in failed

    def _bad(self, path: str) -> bool:
        """Anything at, above or below `path` failed to build."""
        return self._failed_at(path) or any(f.startswith((path + ".", path + "[")) for f in self._built.failed)

    def _complete(self, path: str) -> bool:
        """The list at `path` built with none of its items left out."""
        return not self._failed_at(path) and path not in self._built.dropped

    def _each(self, path: str, items: Sequence[T]) -> Iterator[tuple[int, T]]:
        """Items of the list at `path` with their indices in the file (left-out items leave gaps)."""
        return zip(self._built.indices.get(path, range(len(items))), items, strict=True)

    def _lost(self, path: str, attr: str) -> list[Any] | None:
        """`attr` of every left-out item of the list at `path`; None when it is not known for all of them."""
        if self._failed_at(path):
            return None
        out = []
        for i in self._built.dropped.get(path, ()):
            value = self._built.partial.get(f"{path}[{i}]", {}).get(attr)
            if value is None:
                return None
            out.append(value)
        return out

    def _class_names(self) -> set[str] | None:
        """Every class name of the file; None when a class that failed to build has no name we know."""
        lost = self._lost("dhcp.classes", "name")
        return None if lost is None else {c.name for c in self.site.dhcp.classes} | set(lost)

    def _at(self, path: str) -> Loc:
        # The nearest located ancestor: defaults have no line of their own.
        p = path
        while p:
            if p in self._locs:
                return self._locs[p]
            p = _parent(p)
        return Loc(self._top, 1)

    def error(self, path: str, message: str) -> None:
        loc = self._at(path)
        self.diagnostics.append(Diagnostic(loc.file, loc.line, path, message))

    def warn(self, path: str, message: str) -> None:
        loc = self._at(path)
        self.diagnostics.append(Diagnostic(loc.file, loc.line, path, message, warning=True))

    def run(self) -> list[Diagnostic]:
        for check in (self._listen, self._subnets, self._reservations, self._classes, self._option_sizes,
                      self._raw_options, self._records, self._srv, self._syslog, self._store,
                      self._central):
            check()
        from bootstrapd.files.check import check_files  # renders templates: loaded only when checking

        self.diagnostics.extend(check_files(self.site, self._at, self._built.indices, self._bad))
        return self.diagnostics

    def _syslog(self) -> None:
        s = self.site
        if s.syslog is None or self._bad("syslog"):
            return
        if not self._bad("listen") and s.syslog.port == s.listen.dns_port:
            self.error("syslog.port", f"{s.syslog.port} is also listen.dns_port (both UDP on listen.address)")
        if not self._bad("dhcp.subnets") and not s.dhcp.subnets:
            self.warn("syslog", "no dhcp.subnets: the sink hears only senders inside them, so none")

    def _store(self) -> None:
        st = self.site.store
        if self._bad("store") or st.backend is not StoreBackend.POSTGRESQL:
            return  # sqlite ignores dsn and dsn_file: switching backends is one key
        self._dsn("store", "backend postgresql", st.dsn, st.dsn_file)
        if not self._bad("listen.address") and self.site.listen.address in st.partners:
            self.error("store.partners", f"{self.site.listen.address} is this node's own address")

    def _central(self) -> None:
        c = self.site.central
        if c is None or self._bad("central") or not c.enabled:
            return  # disabled: dsn and dsn_file are kept, not used (and never connected to by check)
        self._dsn("central", "central", c.dsn, c.dsn_file)

    def _dsn(self, path: str, what: str, dsn: str | None, dsn_file: str | None) -> None:
        """Exactly one of dsn and dsn_file, and a dsn_file that holds one; nothing here connects."""
        if (dsn is None) == (dsn_file is None):
            self.error(path, f"{what} needs exactly one of dsn and dsn_file")
        elif dsn_file is not None:
            try:
                with open(dsn_file, encoding="utf-8") as f:
                    first = f.readline().strip()
            except (OSError, UnicodeDecodeError) as e:
                self.error(f"{path}.dsn_file", f"cannot read {dsn_file}: {getattr(e, 'strerror', None) or e}")
            else:
                if not first:
                    self.error(f"{path}.dsn_file", f"{dsn_file} holds no connection string on its first line")

    # -- DHCP ---------------------------------------------------------------------------------------------
    def _listen(self) -> None:
        s = self.site
        if not self._bad("listen.interfaces") and not s.listen.interfaces:
            self.error("listen.interfaces", "at least one interface is required")
        if self._bad("listen.address"):
            return
        for i, sub in self._each("dhcp.subnets", s.dhcp.subnets):
            for j, pool in self._each(f"dhcp.subnets[{i}].pools", sub.pools):
                if s.listen.address in pool:
                    self.error(f"dhcp.subnets[{i}].pools[{j}]",
                               f"pool {pool} contains this server's own address {s.listen.address}")
        known = self._complete("dhcp.subnets")
        if known and s.dhcp.subnets and not any(s.listen.address in sub.prefix for sub in s.dhcp.subnets):
            self.warn("listen.address", f"{s.listen.address} is in no configured subnet; only relayed "
                      "clients can be served")

    def _subnets(self) -> None:
        subs = list(self._each("dhcp.subnets", self.site.dhcp.subnets))
        if not subs and self._complete("dhcp.subnets"):
            self.warn("dhcp.subnets", "no subnets: the DHCP service will lease nothing")
        for (i, a), (j, b) in combinations(subs, 2):
            if a.prefix.overlaps(b.prefix):
                self.error(f"dhcp.subnets[{j}].prefix", f"{b.prefix} overlaps subnet [{i}] {a.prefix}")
        pools = [(i, j, p) for i, sub in subs for j, p in self._each(f"dhcp.subnets[{i}].pools", sub.pools)]
        for i, sub in subs:
            if sub.router is not None and sub.router not in sub.prefix:
                self.error(f"dhcp.subnets[{i}].router", f"router {sub.router} is outside {sub.prefix}")
            for j, pool in self._each(f"dhcp.subnets[{i}].pools", sub.pools):
                path = f"dhcp.subnets[{i}].pools[{j}]"
                if pool.first not in sub.prefix or pool.last not in sub.prefix:
                    self.error(path, f"pool {pool} is outside its subnet {sub.prefix}")
                elif sub.prefix.prefixlen < 31 and (
                    sub.prefix.network_address in pool or sub.prefix.broadcast_address in pool
                ):
                    self.error(path, f"pool {pool} includes the network or broadcast address of {sub.prefix}")
                if sub.router is not None and sub.router in pool:
                    self.error(path, f"pool {pool} contains the router {sub.router}")
        for (i, j, pa), (k, m, pb) in combinations(pools, 2):
            if pa.overlaps(pb):
                self.error(f"dhcp.subnets[{k}].pools[{m}]", f"pool {pb} overlaps pool {pa} "
                           f"(dhcp.subnets[{i}].pools[{j}])")

    def _reservations(self) -> None:
        d = self.site.dhcp
        class_names = self._class_names()
        subnets_known = self._complete("dhcp.subnets")
        own = None if self._bad("listen.address") else self.site.listen.address
        seen_mac: dict[str, int] = {}
        seen_addr: dict[ipaddress.IPv4Address, int] = {}
        for i, r in self._each("dhcp.reservations", d.reservations):
            path = f"dhcp.reservations[{i}]"
            if r.mac in seen_mac:
                first = seen_mac[r.mac]
                self.error(f"{path}.mac", f"MAC {r.mac} is already reserved in reservations[{first}]")
            seen_mac.setdefault(r.mac, i)
            if r.address in seen_addr:
                self.error(f"{path}.address",
                           f"address {r.address} is already reserved in reservations[{seen_addr[r.address]}]")
            seen_addr.setdefault(r.address, i)
            subnet = next((s for s in d.subnets if r.address in s.prefix), None)
            if subnet is None and subnets_known:
                self.error(f"{path}.address", f"address {r.address} is outside every subnet")
            elif subnet is not None and any(r.address in p for p in subnet.pools):
                self.error(f"{path}.address", f"address {r.address} is inside a dynamic pool, where it could "
                           "be leased to another device; reserve an address outside the pools")
            if r.address == own:
                self.error(f"{path}.address", f"address {r.address} is this server's own address")
            if r.class_ is not None and class_names is not None and r.class_ not in class_names:
                self.error(f"{path}.class", f"no class named '{r.class_}'")
            if r.hostname is not None and not _valid_label(r.hostname):
                self.error(f"{path}.hostname", f"not a valid host name: {r.hostname!r}")

    def _classes(self) -> None:
        seen: dict[str, int] = {}
        for i, c in self._each("dhcp.classes", self.site.dhcp.classes):
            path = f"dhcp.classes[{i}]"
            if c.name in seen:
                first = seen[c.name]
                self.error(f"{path}.name", f"duplicate class name '{c.name}' (first in classes[{first}])")
            seen.setdefault(c.name, i)
            m = c.match
            if not (m.vendor_class or m.mac_prefix or m.hostname) and not self._bad(f"{path}.match"):
                self.error(f"{path}.match", "a class needs at least one match key "
                           "(vendor_class, mac_prefix or hostname)")
            for key, pats in (("vendor_class", m.vendor_class), ("hostname", m.hostname)):
                for j, pat in self._each(f"{path}.match.{key}", pats):
                    if not pat:
                        self.error(f"{path}.match.{key}[{j}]", "empty pattern")

    def _option_layers(self) -> Iterator[tuple[str, Options]]:
        d = self.site.dhcp
        yield "dhcp.options", d.options
        for i, s in self._each("dhcp.subnets", d.subnets):
            yield f"dhcp.subnets[{i}].options", s.options
        for i, c in self._each("dhcp.classes", d.classes):
            yield f"dhcp.classes[{i}].options", c.options

    def _option_sizes(self) -> None:
        from bootstrapd.dhcp.options import encode_options

        names = {code: name for name, code in OPTION_FIELDS.items()}
        for path, opts in self._option_layers():
            try:
                encoded = encode_options(opts)
            except ValueError as e:
                self.error(path, str(e))
                continue
            for code, value in encoded.items():
                if len(value) > MAX_OPTION:
                    self.error(f"{path}.{names.get(code, code)}", f"option {code} encodes to {len(value)} "
                               f"bytes; a DHCP option holds at most {MAX_OPTION}")
            if opts.provisioning_url is not None and "://" not in opts.provisioning_url:
                self.warn(f"{path}.provisioning_url", "option 160 should carry a scheme "
                          "(http://, https:// or tftp://)")
        if not self._bad("domain") and len(self.site.domain) > MAX_OPTION:
            self.error("domain", f"option 15 value is {len(self.site.domain)} bytes, over {MAX_OPTION}")

    def _raw_options(self) -> None:
        from bootstrapd.dhcp.options import encode_raw

        class_names = self._class_names()
        for i, r in self._each("dhcp.raw_options", self.site.dhcp.raw_options):
            path = f"dhcp.raw_options[{i}]"
            if r.code in MANAGED_CODES:
                self.error(f"{path}.code", f"option {r.code} ({MANAGED_CODES[r.code]}) is set by bootstrapd "
                           "itself and cannot be a raw option")
            try:
                value = encode_raw(r.type, r.value)
            except ValueError as e:
                self.error(f"{path}.value", str(e))
            else:
                if len(value) > MAX_OPTION:
                    self.error(f"{path}.value", f"encodes to {len(value)} bytes, over {MAX_OPTION}")
            for j, name in self._each(f"{path}.classes", r.classes):
                if class_names is not None and name not in class_names:
                    self.error(f"{path}.classes[{j}]", f"no class named '{name}'")

    # -- DNS ----------------------------------------------------------------------------------------------
    def _fqdn(self, name: str) -> str:
        if name == "@":
            return self.site.domain + "."
        return name.lower() if name.endswith(".") else f"{name.lower()}.{self.site.domain}."

    def _in_zone(self, fqdn: str) -> bool:
        apex = self.site.domain + "."
        return fqdn == apex or fqdn.endswith("." + apex)

    def _records(self) -> None:
        zone = not self._bad("domain")  # without the apex, owners cannot be placed in the zone
        by_name: dict[str, list[RecordType]] = {}
        parsers: dict[RecordType, Callable[[str], object]] = {
            RecordType.A: parse_ipv4, RecordType.AAAA: parse_ipv6,
            RecordType.CNAME: parse_dns_name, RecordType.PTR: parse_dns_name,
        }
        for i, r in self._each("dns.records", self.site.dns.records):
            path = f"dns.records[{i}]"
            parse = parsers.get(r.type)
            if parse is not None:
                try:
                    parse(r.value)
                except ValueProblem as e:
                    self.error(f"{path}.value", str(e))  # still a record of its type: see _srv_target
            if r.type is RecordType.TXT and len(r.value.encode()) > 255:
                self.error(f"{path}.value", "TXT strings are at most 255 bytes")
            if not zone:
                continue
            owner = self._fqdn(r.name)
            if not self._in_zone(owner) and not owner.endswith(".in-addr.arpa."):
                self.error(f"{path}.name", f"{owner} is outside the zone {self.site.domain}")
            types_here = by_name.setdefault(owner, [])
            if RecordType.CNAME in types_here or (r.type is RecordType.CNAME and types_here):
                self.error(f"{path}.name", f"{owner} has a CNAME and other records (RFC 1034 section 3.6.2)")
            types_here.append(r.type)
        self._names = by_name

    def _srv(self) -> None:
        for i, svc in self._each("dns.srv", self.site.dns.srv):
            path = f"dns.srv[{i}]"
            if svc.service.rstrip(".").lower() not in PROVISIONING_SERVICES:
                self.warn(f"{path}.service", f"'{svc.service}' is not one the phones query "
                          f"({' or '.join(PROVISIONING_SERVICES)})")
            if not svc.targets and self._complete(f"{path}.targets"):
                self.error(f"{path}.targets", "at least one target is required")
            weights: dict[int, set[int]] = {}
            for j, t in self._each(f"{path}.targets", svc.targets):
                self._srv_target(f"{path}.targets[{j}]", t.target)
                weights.setdefault(t.priority, set()).add(t.weight)
            for prio, ws in weights.items():
                if len(ws) > 1:
                    self.warn(f"{path}.targets", f"priority {prio} holds targets of different weights "
                              f"{sorted(ws)}; phones may read weights either way (RFC 2782 vs Cisco's table)")

    def _srv_target(self, path: str, target: str) -> None:
        if target == "." or self._bad("domain"):
            return
        fqdn = self._fqdn(target)
        if not self._in_zone(fqdn):
            return
        types_here = self._names.get(fqdn, [])
        if RecordType.CNAME in types_here:
            self.error(f"{path}.target", f"SRV target {fqdn} is a CNAME (RFC 2782 forbids it)")
        elif not ({RecordType.A, RecordType.AAAA} & set(types_here)) and self._may_lack_address(fqdn):
            self.error(f"{path}.target", f"SRV target {fqdn} has no A record in the zone")

    def _may_lack_address(self, fqdn: str) -> bool:
        """`fqdn` is not a name server, and no record that failed to build could have been its address."""
        lost = self._lost("dns.records", "name")
        if lost is None or fqdn in {self._fqdn(n) for n in lost} or not self._complete("dns.ns"):
            return False
        return fqdn not in self._ns_names()

    def _ns_names(self) -> set[str]:
        return {self._fqdn(n) for n in self.site.dns.ns}


def _valid_label(name: str) -> bool:
    try:
        parse_dns_name(name)
    except ValueProblem:
        return False
    return True


def _parent(path: str) -> str:
    """`a.b[2]` -> `a.b` -> `a` -> ``."""
    return path[: max(path.rfind("."), path.rfind("["), 0)]
