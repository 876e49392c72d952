"""design.md convention 1: protocol cores stay free of I/O frameworks, logging and metrics."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "bootstrapd"
CORES = ("config", "dhcp", "dns", "files", "floor", "syslog", "tftp")
FORBIDDEN = {"asyncio", "socket", "structlog", "prometheus_client", "selectors", "aiohttp"}


def core_modules() -> list[Path]:
    return sorted(p for core in CORES for p in (PKG / core).rglob("*.py"))


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_core_module_imports_no_io_framework(path: Path) -> None:
    assert imported_roots(path) & FORBIDDEN == set()


def test_cores_exist() -> None:
    assert len(core_modules()) >= 5
