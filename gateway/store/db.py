"""One connection to the store's database, SQLite or PostgreSQL, behind the same few verbs.

SQL is written with `?` placeholders and turned into psycopg's `%s` for PostgreSQL. Every database
failure leaves as StoreError (its text names the file or the server, never a password), so the
worker can keep the record in its journal and retry.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import GatewayError
from gateway.store.schema import LATEST, MIGRATIONS

BUSY_TIMEOUT_MS = 10_000


class StoreError(GatewayError):
    """The store cannot be read or written (corrupt file, disk full, read-only, server down)."""


class StoreCorrupt(StoreError):
    """The file is not a call store this gateway can use: do not start on it."""


def is_url(target: str | Path) -> bool:
    return isinstance(target, str) and re.match(r"^postgres(ql)?://", target) is not None


def describe(target: str | Path) -> str:
    """Where the store is, fit for a log: a URL without its password."""
    if not is_url(target):
        return str(target)
    parts = urlsplit(str(target))
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql://{parts.username + '@' if parts.username else ''}{host}{port}{parts.path}"


class Database:
    """A connection with a lock: one writer per process (SQLite's other writers wait on its lock)."""

    def __init__(self, target: str | Path) -> None:
        self.target = target
        self.where = describe(target)
        self.postgres = is_url(target)
        self._lock = threading.RLock()
        self._conn: Any = None
        with self._lock:
            self._connect()
            self._migrate()

    # ---- connection ----
    def _connect(self) -> None:
        if self.postgres:
            import psycopg

            try:
                self._conn = psycopg.connect(str(self.target), autocommit=True, connect_timeout=5)
            except psycopg.Error as exc:
                raise StoreError(f"{self.where}: cannot connect: {_first_line(exc)}") from None
            return
        path = Path(self.target)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            # FULL: a committed call survives a power cut, not only a crash of this process.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise StoreCorrupt(f"{path}: not a call store (corrupt or another kind of file: {exc})") from None
            raise StoreError(f"{path}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"{path}: {exc.strerror or exc}") from None
        if mode.lower() != "wal":
            raise StoreError(f"{path}: cannot use write-ahead logging (journal mode {mode})")
        self._conn = conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None

    # ---- verbs ----
    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All or nothing; for SQLite the write lock is taken at once (BEGIN IMMEDIATE)."""
        with self._lock:
            if self._conn is None:
                self._connect()
            conn = self._conn
            try:
                if self.postgres:
                    with conn.transaction():
                        yield Transaction(self, conn.cursor())
                else:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield Transaction(self, conn)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
            except StoreError:
                raise
            except Exception as exc:
                if self._is_db_error(exc):
                    self._drop_if_broken(exc)
                    raise StoreError(f"{self.where}: {_first_line(exc)}") from None
                raise

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.transaction() as tx:
            return tx.query(sql, params)

    def _is_db_error(self, exc: BaseException) -> bool:
        if isinstance(exc, (sqlite3.Error, OSError)):
            return True
        if self.postgres:
            import psycopg

            return isinstance(exc, psycopg.Error)
        return False

    def _drop_if_broken(self, exc: BaseException) -> None:
        if self.postgres and getattr(self._conn, "closed", False):
            self._conn = None  # the server went away: the next write reconnects

    # ---- migrations ----
    def _migrate(self) -> None:
        with self.transaction() as tx:
            if self.postgres:
                tx.execute("SELECT pg_advisory_xact_lock(734201)")  # workers starting together
            tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                       "description TEXT, applied_at DOUBLE PRECISION)")
            rows = tx.query("SELECT max(version) AS v FROM schema_version")
            current = rows[0]["v"] or 0
            if current > LATEST:
                raise StoreCorrupt(f"{self.where}: written by a newer gateway (schema {current}, "
                                   f"this one knows up to {LATEST})")
            for version, description, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    tx.execute(statement)
                tx.execute("INSERT INTO schema_version VALUES (?, ?, ?)", (version, description, time.time()))

    def version(self) -> int:
        return int(self.query("SELECT max(version) AS v FROM schema_version")[0]["v"] or 0)


class Transaction:
    def __init__(self, db: Database, cursor: Any) -> None:
        self._db = db
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self._cursor.execute(self._db._sql(sql), tuple(params))
        return cur.rowcount if cur is not None and cur.rowcount is not None else 0

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self._cursor.execute(self._db._sql(sql), tuple(params))
        if cur.description is None:  # a statement that returns no rows
            return []
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
