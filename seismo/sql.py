"""One connection to SQLite or PostgreSQL behind the same few calls, for state written in portable SQL
(`?` placeholders, `INSERT ... ON CONFLICT`, which both speak): the metrics server's ledger is one
SQLite file on one machine, or tables in the PostgreSQL every replica shares.

What differs is kept here: the placeholder style, transactions (SQLite: BEGIN IMMEDIATE, one writer;
PostgreSQL: a transaction per unit, with row-level work serialized by advisory locks on keys), the
scalar `least` function, and where the tables live (a PostgreSQL schema of their own).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from seismo.database import open_database, transaction

Dialect = Literal["sqlite", "postgres"]
_RETRIED = {"40P01", "40001"}  # PostgreSQL: deadlock detected, serialization failure


def connect_kwargs(url: str) -> dict[str, Any]:
    """pg8000's connection arguments from `postgresql://user:password@host:port/database?sslmode=require`."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"a PostgreSQL URL starts with postgresql://, not {url.split(':', 1)[0]!r}")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    kwargs: dict[str, Any] = {"user": unquote(parts.username or "postgres"), "host": parts.hostname or "localhost",
                              "port": parts.port or 5432, "database": unquote(parts.path.lstrip("/")) or None,
                              "application_name": options.get("application_name", "seismo"), "timeout": 30}
    if parts.password is not None:
        kwargs["password"] = unquote(parts.password)
    if options.get("sslmode") in ("require", "verify-ca", "verify-full"):
        import ssl

        context = ssl.create_default_context(cafile=options.get("sslrootcert"))
        if options["sslmode"] == "require":  # libpq's meaning: encrypted, certificate not checked
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        kwargs["ssl_context"] = context
    return kwargs


def redacted(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def is_postgres_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


class Sql:
    """A SQLite or PostgreSQL connection with `?` placeholders. Not thread-safe: callers hold a lock."""

    dialect: Dialect
    least: str
    """The scalar minimum of its arguments: MIN in SQLite, LEAST in PostgreSQL."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """A cursor: fetchone(), fetchall(), rowcount."""
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def lock(self, keys: Iterable[str]) -> None:
        """Inside a transaction: hold `keys` until it ends, so replicas updating the same keys take turns
        (a no-op on SQLite, whose transaction already holds the one write lock)."""

    def close(self) -> None:
        raise NotImplementedError


class SqliteSql(Sql):
    dialect: Dialect = "sqlite"
    least = "MIN"

    def __init__(self, path: str | Path, schema: str):
        self.db: sqlite3.Connection = open_database(path, schema)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.db.executemany(sql, rows)

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        @contextlib.contextmanager
        def unit() -> Iterator[None]:
            with transaction(self.db):
                yield

        return unit()

    def close(self) -> None:
        self.db.close()


_CREATES = re.compile(r"CREATE (?:TABLE|INDEX)(?: IF NOT EXISTS)?(?: (\w+) ON)? (\w+)", re.IGNORECASE)


def _table_of(statement: str) -> str | None:
    """The table a CREATE TABLE or CREATE INDEX statement is about."""
    found = _CREATES.match(statement.strip())
    return None if found is None else found[2]


class _Rows:
    """pg8000's cursor answering as sqlite3's: rows as tuples."""

    def __init__(self, cursor: Any):
        self.cursor = cursor
        self.rowcount = cursor.rowcount

    def fetchone(self) -> tuple | None:
        row = self.cursor.fetchone()
        return None if row is None else tuple(row)

    def fetchall(self) -> list[tuple]:
        return [tuple(row) for row in self.cursor.fetchall()]


class PostgresSql(Sql):
    dialect: Dialect = "postgres"
    least = "LEAST"

    def __init__(self, url: str, schema_name: str, statements: Sequence[str]):
        import pg8000.dbapi  # the `postgres` extra: only when a PostgreSQL URL is configured

        self._errors = pg8000.dbapi.DatabaseError
        self.db = pg8000.dbapi.connect(**connect_kwargs(url))
        self.db.autocommit = True
        self._depth = 0
        try:
            self._create(schema_name, statements)
        except BaseException:
            self.close()  # a server that refused the schema: no connection left behind
            raise

    def _create(self, schema_name: str, statements: Sequence[str]) -> None:
        cursor = self.db.cursor()
        # Replicas starting together create the tables once, in one transaction (all or none). A schema that
        # exists is left alone: its DDL, even IF NOT EXISTS, would queue behind the writers of the tables.
        cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"seismo schema {schema_name}",))
        try:
            cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema_name,))
            if cursor.fetchone() is None:
                run_all_or_none(cursor, [f"CREATE SCHEMA {schema_name}", f"SET LOCAL search_path TO {schema_name}", *statements])
            else:  # tables a later Seismo added: created (with their indexes) where missing
                cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema_name,))
                have = {row[0] for row in cursor.fetchall()}
                missing = [s for s in statements if (table := _table_of(s)) is not None and table not in have]
                if missing:
                    run_all_or_none(cursor, [f"SET LOCAL search_path TO {schema_name}", *missing])
        finally:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"seismo schema {schema_name}",))
        cursor.execute(f"SET search_path TO {schema_name}")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Rows:
        cursor = self.db.cursor()
        cursor.execute(sql.replace("?", "%s"), tuple(params))
        return _Rows(cursor)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(row) for row in rows]
        if rows:
            self.db.cursor().executemany(sql.replace("?", "%s"), rows)

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        @contextlib.contextmanager
        def unit() -> Iterator[None]:
            if self._depth:  # nested: a savepoint, so the inner unit undoes itself alone
                self.execute("SAVEPOINT unit")
                self._depth += 1
                try:
                    yield
                except BaseException:
                    self.execute("ROLLBACK TO SAVEPOINT unit")
                    raise
                finally:
                    self._depth -= 1
                self.execute("RELEASE SAVEPOINT unit")
                return
            self.execute("BEGIN")
            self._depth = 1
            try:
                yield
            except BaseException:
                self.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
            self.execute("COMMIT")

        return unit()

    def lock(self, keys: Iterable[str]) -> None:
        ordered = sorted(set(keys))  # one order for every replica: no lock cycles between them
        if ordered:
            self.execute("SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(?::text[]) WITH ORDINALITY AS t(k, n) ORDER BY n",
                         (ordered,)).fetchall()

    def retrying(self, error: BaseException) -> bool:
        """Whether a failed transaction is worth running again (a deadlock or a serialization failure)."""
        code = error.args[0].get("C") if isinstance(error, self._errors) and error.args and isinstance(error.args[0], dict) else None
        return code in _RETRIED

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.db.close()


def run_all_or_none(cursor: Any, statements: Sequence[str]) -> None:
    """PostgreSQL statements (DDL included) in one transaction on a DB-API cursor of an autocommit connection."""
    cursor.execute("BEGIN")
    try:
        for statement in statements:
            cursor.execute(statement)
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    cursor.execute("COMMIT")
