"""A real PostgreSQL server for the tests: ``initdb`` + ``pg_ctl`` in a temp directory, no system service.

Why: the team store is tested against the database it runs on. The suite picks its engine from
``HL_TEST_DB``: unset or ``sqlite`` (the default), ``postgresql`` (start a private cluster here,
as a non-root user: PostgreSQL refuses to run as root), or a ``postgresql://`` URL of a running server
whose user may create databases. Every server-process test then gets its own database, named
after its SQLite path, so a test that restarts a server on "the same file" gets the same database.
"""
from __future__ import annotations

import atexit
import glob
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

ENGINE_VARIABLE = "HL_TEST_DB"
WORKERS_VARIABLE = "HL_TEST_WORKERS"  # with PostgreSQL: serve every test server with this many workers
SUPERUSER = "hl"


def engine() -> str:
    value = os.environ.get(ENGINE_VARIABLE, "sqlite").strip() or "sqlite"
    return "postgresql" if value.startswith(("postgresql", "postgres")) else "sqlite"


def test_workers() -> list[str]:
    """``--workers N`` for test servers when ``HL_TEST_WORKERS`` asks for it (PostgreSQL only)."""
    workers = os.environ.get(WORKERS_VARIABLE, "").strip()
    return ["--workers", workers] if workers and engine() == "postgresql" else []


def binaries() -> Path | None:
    """The directory of ``initdb``/``pg_ctl`` (Debian keeps them out of PATH), None if not installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust authentication, durability off for speed)."""

    def __init__(self, max_connections: int = 400) -> None:
        bindir = binaries()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="hl-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse root: run them as nobody, who owns the directory
            shutil.chown(self.root, "nobody", "nogroup")
            self.root.chmod(0o755)
            self._as_user = ["runuser", "-u", "nobody", "--"]
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-instructions")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                   f"-c max_connections={max_connections} -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w", "start")
        atexit.register(self.stop)

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run([*self._as_user, str(self.bindir / program), *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {result.stderr.strip() or result.stdout.strip()}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run([*self._as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                            "stop"], capture_output=True)
            shutil.rmtree(self.root, ignore_errors=True)


_cluster: Cluster | None = None
_created: set[tuple[str, str]] = set()  # (server URL, database name)


def server_url() -> str:
    """The maintenance URL of the PostgreSQL server the tests use (started on first use)."""
    global _cluster
    value = os.environ.get(ENGINE_VARIABLE, "")
    if value.startswith(("postgresql://", "postgres://")):
        return value
    if _cluster is None:
        _cluster = Cluster()
    return _cluster.url()


def create_database(name: str, base: str | None = None) -> str:
    """A database called ``name`` (created once, empty) on the server at ``base`` (default: the
    tests' server, ``server_url()``); its URL."""
    import psycopg

    base = base or server_url()
    if (base, name) not in _created:
        with psycopg.connect(base, autocommit=True) as connection:
            exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                connection.execute(f'CREATE DATABASE "{name}"')
        _created.add((base, name))
    return base.rsplit("/", 1)[0] + "/" + name


def database_for(path: str | Path) -> str:
    """What a test's ``--db`` becomes: ``path`` itself on SQLite, else a database named after it."""
    if engine() == "sqlite":
        return str(path)
    return create_database("t_" + hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:20])
