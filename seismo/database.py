"""Opening Seismo's SQLite files the one way they all need: WAL, autocommit, a busy timeout, the schema.

WAL lets readers in other threads or processes (the logger's HTTP reads, the metrics server reading
the logger's record store) run beside the single writer; `isolation_level=None` leaves transactions to
explicit BEGIN/COMMIT, so one batch is one commit.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path


def open_database(path: str | Path, schema: str, synchronous: str = "NORMAL") -> sqlite3.Connection:
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"SQLite synchronous must be NORMAL or FULL, not {synchronous!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=5000")
    db.executescript(schema)
    return db


def bytes_in_use(db: sqlite3.Connection) -> int:
    """Bytes of the database file that hold data (free pages not counted): what a size limit compares."""
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
    return page_size * pages


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """`with transaction(db):` one BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any exception): one batch, one commit.

    IMMEDIATE takes the write lock up front, so two writers wait on busy_timeout instead of failing
    halfway through with SQLITE_BUSY on the upgrade from a read lock. Inside an open transaction it is
    a SAVEPOINT instead, so a caller can group several units of work into one commit (group commit)
    while each unit still undoes itself alone when it fails."""
    if db.in_transaction:
        db.execute("SAVEPOINT unit")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK TO unit")
            db.execute("RELEASE unit")
            raise
        db.execute("RELEASE unit")
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
