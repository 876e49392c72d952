"""Read and validate a site file in one place: `bootstrapd check`, `run` and reload all call this."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bootstrapd.config.build import FAILED, Builder
from bootstrapd.config.checks import Checker
from bootstrapd.config.model import Site
from bootstrapd.config.yamlnodes import Diagnostic, load_chain
from bootstrapd.errors import ConfigError


@dataclass(frozen=True)
class LoadResult:
    site: Site | None
    diagnostics: tuple[Diagnostic, ...]
    digest: str  # sha256 of the merged files' text: the DNS serial and the reload change check

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if not d.warning)

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.warning)


def check_site(path: str) -> LoadResult:
    """Every diagnostic of `path` (and its `extends` chain); `site` is None when any is an error."""
    out: list[Diagnostic] = []
    raw: list[bytes] = []
    try:
        node = load_chain(path, out, raw)
    except OSError as e:
        out.append(Diagnostic(path, 1, "", f"cannot read: {e.strerror or e}"))
        node = None
    digest = hashlib.sha256(b"\0".join(raw)).hexdigest()
    if node is None:
        return LoadResult(None, tuple(out), digest)
    builder = Builder()
    site = builder.build(Site, node, "", keep=True)  # a partial model when some of it failed (see Builder)
    out.extend(builder.diagnostics)
    if site is FAILED:
        return LoadResult(None, tuple(_sorted(out)), digest)
    assert isinstance(site, Site)
    out.extend(Checker(site, builder, path).run())  # also with structural errors: all of a file's errors
    ok = not any(not d.warning for d in out)
    return LoadResult(site if ok else None, tuple(_sorted(out)), digest)


def load_site(path: str) -> Site:
    """The validated site, or ConfigError carrying every error."""
    result = check_site(path)
    if result.site is None:
        raise ConfigError(list(result.errors))
    return result.site


def _sorted(diags: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diags, key=lambda d: (d.file, d.line, d.path))
