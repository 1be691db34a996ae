"""A real, throwaway PostgreSQL server for the tests and the benchmarks: Debian's `postgresql` package
(`.ci/run` installs it), started in a temporary directory on a free loopback port, one database per use.

With SEISMO_TEST_POSTGRES_URL set (postgresql://user:password@host:port/postgres, a user that may create
databases), the tests use that server instead and start none.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from seismo.probes import free_port

REAL = os.environ.get("SEISMO_TEST_POSTGRES_URL")


def binaries() -> Path | None:
    """Where initdb and pg_ctl are: Debian keeps them under /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


class PostgresServer:
    def __init__(self):
        self.bin = binaries()
        if self.bin is None:
            raise FileNotFoundError("no PostgreSQL server (initdb, pg_ctl): `apt-get install postgresql` (.ci/run does)")
        # Its own directory straight under the system's temporary one: pytest's are private to their user,
        # and the server may run as another.
        self.directory = Path(tempfile.mkdtemp(prefix="seismo-postgres-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.url = f"postgresql://seismo@127.0.0.1:{self.port}/postgres"
        # PostgreSQL refuses to run as root: as root, run it as the package's `postgres` user.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")

    def start(self) -> PostgresServer:
        if self.as_user:
            shutil.chown(self.directory, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "seismo", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w", "start")
        return self

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)


def new_database(server_url: str) -> str:
    """A fresh database on the server; its URL."""
    import pg8000.dbapi

    from seismo.sql import connect_kwargs

    name = f"seismo_test_{uuid.uuid4().hex[:12]}"
    db = pg8000.dbapi.connect(**connect_kwargs(server_url))
    db.autocommit = True
    try:
        db.cursor().execute(f"CREATE DATABASE {name}")
    finally:
        db.close()
    return urlsplit(server_url)._replace(path=f"/{name}").geturl()


def server_cpu_seconds() -> float:
    """User + system CPU of every running `postgres` process (the server forks one per connection)."""
    import os

    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone since the listing
            continue
        if stat[stat.index("(") + 1:stat.rindex(")")] == "postgres":
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total
