"""The one decision of the file service: what a requested name gets (design.md, "The file service").

`FileResolver.resolve(FileRequest)` answers `Rendered` (the first profile whose `names` match, rendered for
the requesting device), `Static` (a regular file under `files.root`, through the jail) or `Miss` (why not).
TFTP and HTTP shells both call it, so a name means the same on both. It never raises: a render that fails
anyway (check passed, so a bug) is `Miss(RENDER_FAILED)`.

Rendered profiles are cached per (profile, device variables) before encryption, within `files.render_cache`
bytes (files/cache.py: any client picks the variables, so the bound is bytes, not devices); encryption runs
per request with a fresh salt, so a cached entry never reuses a salt for two different bodies. A reload
builds a new resolver, which drops the cache with the old templates and inventory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bootstrapd.config.model import Files, Profile, ProfileDevices
from bootstrapd.errors import BootstrapdError
from bootstrapd.files import jail
from bootstrapd.files.cache import RenderCache
from bootstrapd.files.identify import LeaseOf, identify
from bootstrapd.files.inventory import Inventory, Row, read_inventory
from bootstrapd.files.names import NameMatch, NamePattern, compile_name
from bootstrapd.files.outcome import Device, FileRequest, IdentifiedBy, Miss, MissReason, Rendered, Resolution, Static
from bootstrapd.files.render import DeviceVars, RandomBytes, Templates, compress, context, device_vars, render_xml, seal


class FilesError(BootstrapdError):
    """The file service cannot be built from this configuration (check would have said so)."""


@dataclass(frozen=True, slots=True)
class CompiledProfile:
    index: int
    profile: Profile
    patterns: tuple[NamePattern, ...]
    template: Any  # jinja2.Template
    label: str  # templates/bootstrap.xml.j2: the template under its directory, for logs and metrics


def profile_label(template: str) -> str:
    return os.path.join(os.path.basename(os.path.dirname(template)), os.path.basename(template))


def compile_profiles(files: Files, templates: Templates) -> tuple[CompiledProfile, ...]:
    """Every profile with its patterns and template compiled; FilesError names the first that fails."""
    out = []
    for i, p in enumerate(files.profiles):
        try:
            patterns = tuple(compile_name(n) for n in p.names)
            template = templates.load(p.template)
        except Exception as e:  # PatternError, jinja2.TemplateError, OSError
            raise FilesError(f"files.profiles[{i}]: {e}") from e
        out.append(CompiledProfile(i, p, patterns, template, profile_label(p.template)))
    return tuple(out)


def load_inventory(files: Files) -> Inventory | None:
    """The configured inventory (bad rows left out: `check` reports them), or None without one."""
    if files.inventory is None:
        return None
    inventory, _ = read_inventory(files.inventory)
    return inventory


class FileResolver:
    def __init__(self, files: Files, inventory: Inventory | None, lease_of: LeaseOf,
                 random_bytes: RandomBytes = os.urandom) -> None:
        """`lease_of(address)` is the DHCP side's current lease of an address (LeaseInfo or (mac, vendor_class),
        None); `random_bytes(n)` draws encryption salts (os.urandom; tests pass a fixed one)."""
        self.files = files
        self.root = os.path.realpath(files.root)
        self.inventory = inventory or Inventory(files.inventory or "")
        self._lease_of = lease_of
        self._random = random_bytes
        self._profiles = compile_profiles(files, Templates())
        self.cache = RenderCache(files.render_cache)

    @classmethod
    def from_config(cls, files: Files, lease_of: LeaseOf, random_bytes: RandomBytes = os.urandom) -> FileResolver:
        """What `run` and a reload build: the inventory read from `files.inventory`, templates compiled."""
        return cls(files, load_inventory(files), lease_of, random_bytes)

    def resolve(self, req: FileRequest) -> Resolution:
        try:
            return self._resolve(req)
        except Exception as e:  # a bug; the shell counts it, the phone gets a miss
            return Miss(MissReason.RENDER_FAILED, Device(None, IdentifiedBy.NONE), f"{type(e).__name__}: {e}")

    def _resolve(self, req: FileRequest) -> Resolution:
        rel = jail.clean_name(req.name)
        matched = None if isinstance(rel, jail.Refusal) else next(self._matches(rel), None)
        device, device_class = identify(matched[1] if matched else None, req.user_agent, req.client, self._lease_of)
        if isinstance(rel, jail.Refusal):
            return Miss(rel.reason, device, rel.detail)
        if matched is not None:
            return self._profile(req, matched[0], device, device_class)
        found = jail.lookup(self.root, rel)
        if isinstance(found, jail.Refusal):
            return Miss(found.reason, device, found.detail)
        return Static(found.path, found.size, device)

    def _matches(self, rel: str) -> Iterator[tuple[CompiledProfile, NameMatch]]:
        for compiled in self._profiles:
            for pattern in compiled.patterns:
                match = pattern.match(rel)
                if match is not None:
                    yield compiled, match

    def _profile(self, req: FileRequest, compiled: CompiledProfile, device: Device,
                 device_class: str | None) -> Resolution:
        row = self.inventory.get(device.mac)
        profile = compiled.profile
        if row is None and profile.devices is ProfileDevices.INVENTORY:
            return Miss(MissReason.NOT_IN_INVENTORY, device, f"{device.mac or 'unidentified device'} has no "
                        f"inventory row ({compiled.label})")
        dev = device_vars(device, req.client, device_class, row)
        try:
            plain = self._render(compiled, dev, row)
            body, encoding = seal(plain, profile, row.key if row else "", self._random)
        except Exception as e:  # check renders every row; reaching this is a bug
            return Miss(MissReason.RENDER_FAILED, device, f"{compiled.label}: {type(e).__name__}: {e}")
        return Rendered(body, compiled.label, device, content_encoding=encoding)

    def _render(self, compiled: CompiledProfile, dev: DeviceVars, row: Row | None) -> bytes:
        key = (compiled.index, dev)  # the row is the MAC's, which `dev` holds
        plain = self.cache.get(key)
        if plain is None:
            ctx = context(dev, row, self.inventory.columns, self.files.variables)
            plain = compress(render_xml(compiled.template, ctx), compiled.profile.gzip)
            self.cache.put(key, plain)
        return plain

