"""A throwaway PostgreSQL cluster built from the local server binaries (initdb / pg_ctl).

The Postgres counterpart of :mod:`infra.broker`: a real server for development, used by the test
suite (``tests/conftest.py``) and by benchmarks (``bench/store_bench.py``) when no database URL is
given. Never for data you keep: it runs with ``fsync`` off and trusts every local connection.
PostgreSQL refuses to run as root, so when we are root the server runs as the ``postgres`` user
(``runuser -u postgres --``). The data directory, socket and server process are removed on
:meth:`ThrowawayPostgres.stop`.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from infra.errors import MbcError

_SEARCH = (
    "/usr/lib/postgresql/*/bin",
    "/usr/local/pgsql/bin",
    "/usr/pgsql-*/bin",
    "/opt/homebrew/bin",
    "/usr/bin",
)


class PostgresUnavailable(MbcError):
    """No PostgreSQL server could be found or started."""


def find_bindir() -> Path:
    """Directory holding ``initdb`` and ``pg_ctl``, newest version first."""
    if env := os.environ.get("MBC_PG_BINDIR"):
        candidates = [env]
    else:
        candidates = []
        for pattern in _SEARCH:
            candidates += sorted(glob.glob(pattern), reverse=True)
        if (initdb := shutil.which("initdb")) is not None:
            candidates.insert(0, str(Path(initdb).parent))
    for c in candidates:
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl) found; set MBC_PG_BINDIR")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayPostgres:
    """Start with :meth:`start`, get :attr:`url`, remove everything with :meth:`stop`."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="mbc-pg-"))
        self.datadir = self.root / "data"
        self._as_postgres = os.geteuid() == 0
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def start(self) -> str:
        if self._as_postgres:
            try:
                shutil.chown(self.root, "postgres", "postgres")
            except (LookupError, PermissionError) as e:
                raise PostgresUnavailable(
                    f"running as root but cannot hand {self.root} to user postgres: {e}"
                ) from e
        init = self._run(
            "initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"
        )
        if init.returncode != 0:
            self.stop()
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -F "
            "-c max_connections=100 -c shared_buffers=64MB"
        )
        started = self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-o",
            opts,
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        if started.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            self.stop()
            raise PostgresUnavailable(f"pg_ctl start failed: {started.stderr.strip()} {log[-500:]}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self.url
            time.sleep(0.1)
        self.stop()
        raise PostgresUnavailable("PostgreSQL did not accept connections within 30 s")

    def halt(self) -> None:
        """Stop the server but keep its data (to simulate an outage); :meth:`resume` restarts it."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -F"
        started = self._run(
            "pg_ctl", "-D", str(self.datadir), "-o", opts, "-l", str(self.root / "log"), "-w", "start"
        )
        if started.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl start failed: {started.stderr.strip()}")

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def postmaster_pid(self) -> int | None:
        pidfile = self.datadir / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def __enter__(self) -> ThrowawayPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
