"""A throwaway PostgreSQL cluster for the tests: Debian's initdb/pg_ctl, a private directory, a unix socket
only (no TCP port on any interface), run as the `postgres` user when the tests run as root (initdb refuses
root). BOOTSTRAPD_TEST_PG_DSN names an existing server instead. Each test gets its own schema."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

ENV_DSN = "BOOTSTRAPD_TEST_PG_DSN"
_schemas = itertools.count(1)


def initdb_path() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else None


class Cluster:
    """A running cluster; stop() and start() let a test take the database away and bring it back."""

    def __init__(self, bindir: str, base: str, user: str | None, fsync: bool = False, netns: str | None = None,
                 listen: str = "") -> None:  # fmt: skip
        self.bindir, self.base, self.user, self.fsync = bindir, base, user, fsync
        # netns/listen: the server runs inside a lab namespace and takes TCP on these (198.18/15) addresses.
        self.netns, self.listen = netns, listen
        self.data = os.path.join(base, "data")
        self.dsn = f"host={base} port=5432 user=bootstrapd dbname=postgres"

    def _run(self, *argv: str) -> None:
        cmd = [os.path.join(self.bindir, argv[0]), *argv[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        if self.netns is not None:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    def init(self) -> None:
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "bootstrapd", "--no-sync", "-E", "UTF8")
        if self.listen:
            with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
                f.write("host all all 198.18.0.0/15 trust\n")

    def start(self) -> None:
        fsync = "on" if self.fsync else "off"  # tests need no crash safety; the benchmark does
        opts = (f"-k {self.base} -p 5432 -c listen_addresses='{self.listen}' -c fsync={fsync} "
                "-c max_connections=20")
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.base, "log"), "-w", "-o", opts, "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")


@contextmanager
def cluster(*, fsync: bool = False, netns: str | None = None, listen: str = "") -> Iterator[Cluster]:
    initdb = initdb_path()
    if initdb is None:
        raise FileNotFoundError("no /usr/lib/postgresql/*/bin/initdb (Debian package postgresql)")
    user = "postgres" if os.geteuid() == 0 else None
    base = tempfile.mkdtemp(prefix="bootstrapd-pg-")
    if user is not None:
        os.chown(base, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    c = Cluster(os.path.dirname(initdb), base, user, fsync, netns, listen)
    started = False
    try:
        c.init()
        c.start()
        started = True
        yield c
    finally:
        if started:
            try:
                c.stop()
            except (subprocess.SubprocessError, OSError):
                c._run("pg_ctl", "-D", c.data, "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def schema(server_dsn: str) -> Iterator[str]:
    """A fresh schema on the server; yields a DSN whose search_path is that schema."""
    import psycopg

    name = f"bootstrapd_test_{os.getpid()}_{next(_schemas)}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{server_dsn} options='-csearch_path={name}'"
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")
