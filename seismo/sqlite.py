"""Opening Seismo's SQLite files the one way they all need: WAL, autocommit, a busy timeout, the schema.

WAL lets readers in other threads or processes (the logger's HTTP reads, the metrics server reading
the logger's record store) run beside the single writer; `isolation_level=None` leaves transactions to
explicit BEGIN/COMMIT, so one batch is one commit.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_database(path: str | Path, schema: str, synchronous: str = "NORMAL") -> sqlite3.Connection:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=5000")
    db.executescript(schema)
    return db
