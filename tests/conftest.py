"""Suite-wide fixtures: the network-namespace lab (generic; protocol fixtures live beside their tests)."""

import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from bootstrapd.lab import Lab, StagingLan, leftover_namespaces, staging_lan
from tests.labreq import require_lab


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
    require_lab()


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


@pytest.fixture(scope="session")
def _pg() -> Iterator[tuple[str, Any]]:
    """(DSN, cluster): BOOTSTRAPD_TEST_PG_DSN (cluster None), else a throwaway cluster (tests/pgcluster.py).
    Skips when psycopg or Debian's postgresql is missing, except under BOOTSTRAPD_REQUIRE_LAB=1."""
    from tests import pgcluster

    try:
        import psycopg  # noqa: F401
    except ImportError:
        _pg_unavailable("psycopg is not installed (pip install bootstrapd[postgresql])")
    if os.environ.get(pgcluster.ENV_DSN):
        yield os.environ[pgcluster.ENV_DSN], None
        return
    if pgcluster.initdb_path() is None:
        _pg_unavailable("no PostgreSQL server binaries (Debian package postgresql)")
    with pgcluster.cluster() as cluster:
        yield cluster.dsn, cluster


@pytest.fixture
def pg_server(_pg: tuple[str, Any]) -> str:
    return _pg[0]


@pytest.fixture
def pg_cluster(_pg: tuple[str, Any]) -> Any:
    """The throwaway cluster itself, for tests that stop and start the database (not an outside server)."""
    if _pg[1] is None:
        pytest.skip("an outside PostgreSQL server is not ours to stop")
    return _pg[1]


@pytest.fixture
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A DSN to an empty schema of its own on the test server."""
    from tests import pgcluster

    with pgcluster.schema(pg_server) as dsn:
        yield dsn


def _pg_unavailable(reason: str) -> None:
    if os.environ.get("BOOTSTRAPD_REQUIRE_LAB") == "1":
        pytest.fail(f"PostgreSQL required but unavailable: {reason}")
    pytest.skip(reason)


# CI explores the same examples on every run (a red CI must be reproducible); developers' runs stay random
# and keep finding new cases, which then get a unit test of their own.
if os.environ.get("CI"):
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, database=None)
    _hypothesis_settings.load_profile("ci")
