"""The two databases the store runs on: SQLite (one person, a file) and PostgreSQL (a team server).

Why: ``store.py`` holds the SQL once; what differs between the engines — connecting, placeholders,
transactions, column types, which error means "a unique key is taken" — lives here behind one small
interface (``Database`` and its ``Tx``). psycopg 3 with its connection pool rather than SQLAlchemy
Core: the store's SQL is a few dozen hand-written statements in the subset both engines speak
(``ON CONFLICT``, ``RETURNING``); a translation layer of ~100 lines keeps it that way without a
second query language and its import cost in the server's start-up.

Schema versions: ``schema_version`` holds the number of the last migration applied. Each migration
is idempotent, so a database made by any older version (including the ones before the version
table, which count as version 0) is brought up to date at start, by one process at a time. A
database made by a newer version is refused with a one-line reason.
"""
from __future__ import annotations

import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class DatabaseError(Exception):
    """The database cannot be used (unreachable, made by a newer version, driver missing)."""


class UniqueViolation(Exception):
    """An INSERT hit a unique key another transaction holds (the engines' own errors, unified)."""


class TransientConflict(Exception):
    """The engine aborted the transaction to resolve a conflict with another one (PostgreSQL's
    deadlock or serialization failure); running the same transaction again is expected to succeed."""


def is_postgres(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def redacted_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


# PostgreSQL text cannot hold NUL (U+0000), which JSON, SQLite and model outputs can. Such a string
# is stored escaped: MARK, then the text with MARK doubled and NUL as MARK + "0". Strings that start
# with MARK are escaped too, so every stored string reads back as it was written.
NUL_MARK = "\ufdd0"  # a Unicode noncharacter: never meaningful in text


def escape_nul(value: Any) -> Any:
    if isinstance(value, str) and ("\x00" in value or value.startswith(NUL_MARK)):
        return NUL_MARK + value.replace(NUL_MARK, NUL_MARK * 2).replace("\x00", NUL_MARK + "0")
    return value


def unescape_nul(value: Any) -> Any:
    if not (isinstance(value, str) and value.startswith(NUL_MARK)):
        return value
    out, chars, i = [], value[1:], 0
    while i < len(chars):
        if chars[i] == NUL_MARK and i + 1 < len(chars):
            out.append("\x00" if chars[i + 1] == "0" else NUL_MARK)
            i += 2
        else:
            out.append(chars[i])
            i += 1
    return "".join(out)


class Tx:
    """One connection's statements: the store's SQL, written with ``?`` placeholders for both engines."""

    def __init__(self, connection: Any, translate: Callable[[str], str], escapes_nul: bool = False) -> None:
        self._connection = connection
        self._translate = translate
        self._escapes_nul = escapes_nul

    def _params(self, params: Sequence[Any]) -> Sequence[Any]:
        return [escape_nul(value) for value in params] if self._escapes_nul else params

    def _row(self, row: Any) -> dict[str, Any]:
        found = dict(row)
        if self._escapes_nul:
            for name, value in found.items():
                if isinstance(value, str) and value.startswith(NUL_MARK):
                    found[name] = unescape_nul(value)
        return found

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute one statement; the number of rows it changed."""
        return self._connection.execute(self._translate(sql), self._params(params)).rowcount

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [self._params(row) for row in rows]
        if rows:
            cursor = self._connection.cursor()
            cursor.executemany(self._translate(sql), rows)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [self._row(row) for row in self._connection.execute(self._translate(sql), self._params(params)).fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        row = self._connection.execute(self._translate(sql), self._params(params)).fetchone()
        return self._row(row) if row is not None else None

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (None without rows)."""
        row = self.one(sql, params)
        return next(iter(row.values())) if row else None


class Database:
    """What the store needs of an engine: reads, write transactions, and its DDL dialect."""

    dialect = ""
    url = ""

    def reading(self) -> Any:  # a context manager yielding a Tx (autocommit reads)
        raise NotImplementedError

    def writing(self) -> Any:  # a context manager yielding a Tx inside one transaction
        raise NotImplementedError

    def ddl(self, statement: str) -> str:
        """Column types written neutrally (``{serial}``, ``{real}``) for this engine."""
        raise NotImplementedError

    def columns(self, tx: Tx, table: str) -> set[str]:
        raise NotImplementedError

    def migration_lock(self, tx: Tx) -> None:
        """Make concurrent starters (several workers) migrate one at a time, inside ``tx``."""

    def close(self) -> None:
        pass


class SQLiteDatabase(Database):
    """A file (WAL mode), a connection per thread; writers of this process queue on a lock first:
    SQLite's busy handler polls with growing sleeps (up to 100 ms), so under load a waiter would sleep
    long after the lock is free. Other processes on the same file wait through ``busy_timeout``."""

    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = self.url = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=60000")
            self._local.db = db
        return db

    @staticmethod
    def _same(sql: str) -> str:
        return sql

    @contextmanager
    def reading(self) -> Iterator[Tx]:
        yield Tx(self._connection(), self._same)

    @contextmanager
    def writing(self) -> Iterator[Tx]:
        db = self._connection()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(db, self._same)
            except sqlite3.IntegrityError as exc:
                db.execute("ROLLBACK")
                if "UNIQUE" in str(exc):
                    raise UniqueViolation(str(exc)) from exc
                raise
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def ddl(self, statement: str) -> str:
        return statement.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL")

    def columns(self, tx: Tx, table: str) -> set[str]:
        return {row["name"] for row in tx.all(f"PRAGMA table_info({table})")}


class PostgresDatabase(Database):
    """A psycopg 3 connection pool. Reads run in autocommit; a write is one transaction on one pooled
    connection. ``pool_size`` bounds this process's connections (PostgreSQL allows 100 by default,
    shared by every worker)."""

    dialect = "postgresql"

    def __init__(self, url: str, pool_size: int = 16) -> None:
        try:
            import psycopg
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise DatabaseError("a postgresql:// database needs psycopg: pip install 'hl_notebook[team]'") from None
        self.url = url
        self._errors = psycopg.errors
        try:  # one plain connection first: an unreachable server is one clear error, not 30 s of pool retries
            psycopg.connect(url, connect_timeout=10).close()
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseError(f"cannot connect to {redacted_url(url)}: {redacted_url(reason)}") from None
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=False, timeout=60,
                                    kwargs={"autocommit": True, "row_factory": dict_row})
        try:
            self._pool.open(wait=True, timeout=30)
        except Exception as exc:
            self._pool.close()
            raise DatabaseError(f"cannot connect to {redacted_url(url)}: {str(exc).splitlines()[0]}") from None
        self._translated: dict[str, str] = {}

    def _translate(self, sql: str) -> str:
        """``?`` placeholders as psycopg's ``%s`` (literal ``%`` doubled); cached per statement."""
        found = self._translated.get(sql)
        if found is None:
            found = self._translated[sql] = sql.replace("%", "%%").replace("?", "%s")
        return found

    @contextmanager
    def reading(self) -> Iterator[Tx]:
        with self._pool.connection() as connection:
            yield Tx(connection, self._translate, escapes_nul=True)

    @contextmanager
    def writing(self) -> Iterator[Tx]:
        with self._pool.connection() as connection:
            try:
                with connection.transaction():
                    yield Tx(connection, self._translate, escapes_nul=True)
            except self._errors.UniqueViolation as exc:
                raise UniqueViolation(str(exc).splitlines()[0]) from exc
            except (self._errors.DeadlockDetected, self._errors.SerializationFailure) as exc:
                raise TransientConflict(str(exc).splitlines()[0]) from exc

    def ddl(self, statement: str) -> str:
        return statement.format(serial="BIGSERIAL PRIMARY KEY", real="DOUBLE PRECISION")

    def columns(self, tx: Tx, table: str) -> set[str]:
        return {row["column_name"] for row in tx.all(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ?", (table,))}

    def migration_lock(self, tx: Tx) -> None:
        tx.value("SELECT pg_advisory_xact_lock(7411)")  # any fixed number: ours

    def close(self) -> None:
        self._pool.close()


def open_database(url: str | Path, pool_size: int = 16) -> Database:
    """A ``postgresql://`` URL, else a SQLite file path (or ``:memory:``)."""
    text = str(url)
    if is_postgres(text):
        return PostgresDatabase(text, pool_size)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):]
    return SQLiteDatabase(text)
