"""Suite-wide fixtures: the network-namespace lab (generic; protocol fixtures live beside their tests)."""

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from bootstrapd.lab import Lab, StagingLan, lab_available, leftover_namespaces, staging_lan


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Whatever needs the lab is marked `lab`, so `-m "not lab"` deselects it.
    for item in items:
        if "lab_support" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session", autouse=True)
def _lab_session_guard() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C so lab teardowns run; at the end, no namespace of ours remains."""
    previous = signal.getsignal(signal.SIGTERM)
    installed = previous == signal.SIG_DFL and threading.current_thread() is threading.main_thread()
    if installed:
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous)
    assert leftover_namespaces() == [], "lab namespaces left behind"


@pytest.fixture
def lab_support() -> None:
    """Skip (or fail under BOOTSTRAPD_REQUIRE_LAB=1) when namespaces cannot be built here."""
    ok, reason = lab_available()
    if not ok:
        if os.environ.get("BOOTSTRAPD_REQUIRE_LAB") == "1":
            pytest.fail(f"lab required but unavailable: {reason}")
        pytest.skip(reason)


@pytest.fixture
def lab(lab_support: None) -> Iterator[Lab]:
    the_lab = Lab()
    try:
        yield the_lab
    finally:
        the_lab.close()


@pytest.fixture
def staging(lab: Lab) -> StagingLan:
    """server with stg0 198.18.0.1/23 and two address-less (DHCP) clients."""
    return staging_lan(lab, clients=2)


# CI explores the same examples on every run (a red CI must be reproducible); developers' runs stay random
# and keep finding new cases, which then get a unit test of their own.
if os.environ.get("CI"):
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, database=None)
    _hypothesis_settings.load_profile("ci")
