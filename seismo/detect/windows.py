"""Persistent windows of instances for the drift service: count-based or time-based (tumbling, sliding).

Every accepted row is committed to SQLite before the service answers, so a restart loses nothing. An
event id is added once (the broker delivers at least once), and a complete window is kept as a
snapshot until its result is recorded (`finish`), so a crash while testing loses no window.
A window never exceeds its size: a count window takes exactly `size` rows (the rest of an event's rows
start the next window); a time window keeps at most the `size` newest rows of its span.

The same tables live in one SQLite file (one process), or in a PostgreSQL schema every replica of the
drift service shares (seismo.sql): then the rows of all replicas fill one sequence of windows, numbered
once; every add, close and recovery of a model's windows holds that model's advisory lock, so replicas
take turns; an event id seen by any replica is a redelivery for all; a window a killed replica took but
never recorded is recovered by another once its lease has passed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seismo.detect.base import DriftResult
from seismo.sql import PostgresSql, Sql, SqliteSql, is_postgres_url
from seismo.times import rfc3339

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    model TEXT NOT NULL,
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    row BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS rows_model_ts ON rows (model, ts);
CREATE TABLE IF NOT EXISTS windows (
    model TEXT PRIMARY KEY,
    tested INTEGER NOT NULL,   -- windows tested so far (the next window's number)
    start REAL,                -- start of the current time window
    last_test REAL             -- when a sliding window was last tested
);
-- A complete window waits here (its rows as one snapshot) until its result is durable: a crash
-- between taking a window and recording its result tests it again at the next start.
CREATE TABLE IF NOT EXISTS complete (
    model TEXT NOT NULL,
    number INTEGER NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    rows BLOB NOT NULL,
    count INTEGER NOT NULL,
    event_id TEXT,             -- the event whose rows completed it (count windows)
    taken_at REAL NOT NULL DEFAULT 0,  -- when a replica took it to test (another recovers it after a lease)
    PRIMARY KEY (model, number)
);
CREATE TABLE IF NOT EXISTS results (
    model TEXT NOT NULL,
    number INTEGER NOT NULL,
    event_id TEXT,
    at REAL NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (model, number)
);
CREATE INDEX IF NOT EXISTS results_event ON results (model, event_id);
-- Event ids already added (the broker delivers at least once): a redelivery adds nothing.
CREATE TABLE IF NOT EXISTS seen (
    model TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (model, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_at ON seen (at);
"""
# PostgreSQL: 8-byte floats, BYTEA, a sequence for the rows' order, no WITHOUT ROWID.
_POSTGRES_SCHEMA = [statement.strip() for statement in
                    (_SCHEMA.replace(" REAL", " DOUBLE PRECISION").replace("BLOB", "BYTEA").replace(") WITHOUT ROWID", ")")
                     .replace("seq INTEGER PRIMARY KEY AUTOINCREMENT", "seq BIGSERIAL PRIMARY KEY")).split(";") if statement.strip()]
LEASE_SECONDS = 120.0
"""A window taken to test but not recorded this long ago belongs to a replica that died: another recovers it."""


def _open(target: str | Path, namespace: str) -> Sql:
    if is_postgres_url(target):
        return PostgresSql(str(target), namespace, [_without_comments(s) for s in _POSTGRES_SCHEMA])
    return SqliteSql(target, _SCHEMA)


def _without_comments(statement: str) -> str:
    return "\n".join(line.split("--")[0] for line in statement.splitlines())


@dataclass(frozen=True)
class Window:
    model: str
    number: int
    rows: np.ndarray
    start: float
    end: float


class WindowStore:
    def __init__(self, target: str | Path, instance_shape: tuple[int, ...], size: int = 1000, mode: str = "count",
                 seconds: float = 60.0, slide_seconds: float = 10.0, min_rows: int = 50, namespace: str = "seismo_drift",
                 grace: float = 0.0):
        """`target`: a SQLite file, or a PostgreSQL URL shared by every replica (the tables in schema `namespace`).
        `grace`: a tumbling window closes this long after its end, so that rows whose event time falls in it
        but which arrive late (a retry, another replica) are still in it."""
        self.grace = grace
        if mode not in ("count", "tumbling", "sliding"):
            raise ValueError(f"window mode must be count, tumbling or sliding, not {mode!r}")
        self.instance_shape = tuple(instance_shape)
        self.size, self.mode, self.seconds, self.slide_seconds, self.min_rows = size, mode, seconds, slide_seconds, min_rows
        self.sql = _open(target, namespace)
        if self.sql.dialect == "sqlite":
            columns = {row[1] for row in self.sql.execute("PRAGMA table_info(complete)").fetchall()}
            if "taken_at" not in columns:  # state written before windows had leases: recovered at the next start, as before
                self.sql.execute("ALTER TABLE complete ADD COLUMN taken_at REAL NOT NULL DEFAULT 0")

    def _state(self, model: str) -> tuple[int, float | None, float | None]:
        row = self.sql.execute("SELECT tested, start, last_test FROM windows WHERE model = ?", (model,)).fetchone()
        return row if row else (0, None, None)

    def _set_state(self, model: str, tested: int, start: float | None, last_test: float | None) -> None:
        self.sql.execute("INSERT INTO windows (model, tested, start, last_test) VALUES (?, ?, ?, ?) ON CONFLICT (model) DO UPDATE SET "
                         "tested = excluded.tested, start = excluded.start, last_test = excluded.last_test", (model, tested, start, last_test))

    def _lock(self, model: str) -> None:
        """Inside a transaction: this model's windows are this replica's until it ends."""
        self.sql.lock([f"windows\x1f{model}"])

    def batch(self):
        """`with store.batch():` every add and finish inside is committed together (one commit, one fsync)."""
        return self.sql.transaction()

    def pending(self, model: str) -> int:
        return self.sql.execute("SELECT COUNT(*) FROM rows WHERE model = ?", (model,)).fetchone()[0]

    def _take(self, model: str, where: str, params: tuple, order: str, limit: int) -> tuple[list[int], np.ndarray, float, float]:
        rows = self.sql.execute(f"SELECT seq, ts, row FROM rows WHERE model = ? {where} ORDER BY seq {order} LIMIT ?", (model, *params, limit)).fetchall()
        rows.sort()
        array = np.stack([np.frombuffer(r[2], dtype=np.float32).reshape(self.instance_shape) for r in rows]) if rows else np.empty((0, *self.instance_shape), np.float32)
        return [r[0] for r in rows], array, (rows[0][1] if rows else 0.0), (rows[-1][1] if rows else 0.0)

    def _keep(self, window: Window, event_id: str | None) -> None:
        rows = np.ascontiguousarray(window.rows, dtype=np.float32)
        self.sql.execute('INSERT INTO complete (model, number, start, "end", rows, count, event_id, taken_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) '
                         'ON CONFLICT (model, number) DO UPDATE SET start = excluded.start, "end" = excluded."end", rows = excluded.rows, '
                         "count = excluded.count, event_id = excluded.event_id, taken_at = excluded.taken_at",
                         (window.model, window.number, window.start, window.end, rows.tobytes(), len(rows), event_id, time.time()))

    def unfinished(self, lease: float | None = None) -> list[tuple[Window, str | None]]:
        """Complete windows whose result was never recorded (the service stopped in between), with their event
        id; each is this caller's to test now (taken again: no other replica recovers it within the lease).
        `lease`: only those taken at least this long ago (a replica sharing the store may be testing the
        others right now); None: all of them (one process)."""
        query = 'SELECT model, number, start, "end", rows, count, event_id FROM complete WHERE taken_at <= ? ORDER BY model, number'
        if lease is None:
            found = self.sql.execute(query, (float("inf"),)).fetchall()
        else:
            cutoff = time.time() - lease
            with self.sql.transaction():
                found = []
                for row in self.sql.execute(query, (cutoff,)).fetchall():
                    taken = self.sql.execute("UPDATE complete SET taken_at = ? WHERE model = ? AND number = ? AND taken_at <= ?",
                                             (time.time(), row[0], row[1], cutoff))
                    if taken.rowcount == 1:  # else another replica took it first
                        found.append(row)
        return [(Window(model, number, np.frombuffer(blob, dtype=np.float32).reshape((count, *self.instance_shape)), start, end), event_id)
                for model, number, start, end, blob, count, event_id in found]

    def finish(self, window: Window, payload: bytes, event_id: str | None = None) -> None:
        """Record a tested window's result and let its snapshot go, in one transaction."""
        with self.sql.transaction():
            self.sql.execute("INSERT INTO results (model, number, event_id, at, payload) VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, number) "
                             "DO UPDATE SET event_id = excluded.event_id, at = excluded.at, payload = excluded.payload",
                             (window.model, window.number, event_id, time.time(), payload))
            self.sql.execute("DELETE FROM complete WHERE model = ? AND number = ?", (window.model, window.number))

    def results_for(self, model: str, event_id: str) -> list[bytes]:
        """The results of windows an event completed (to answer its redelivery the same way)."""
        return [bytes(r[0]) for r in self.sql.execute("SELECT payload FROM results WHERE model = ? AND event_id = ? ORDER BY number",
                                                      (model, event_id)).fetchall()]

    def forget(self, older_than: float) -> int:
        """Retention of dedup ids and recorded results (a redelivery comes within minutes, not days)."""
        removed = self.sql.execute("DELETE FROM seen WHERE at < ?", (older_than,)).rowcount
        return removed + self.sql.execute("DELETE FROM results WHERE at < ?", (older_than,)).rowcount

    def add(self, model: str, rows: np.ndarray, now: float | None = None, event_id: str | None = None,
            at: float | None = None) -> list[Window] | None:
        """Commit rows; return the windows that are now complete (count mode), or None when `event_id`
        was added before (a redelivery: nothing is added). A returned window stays kept until `finish`.
        `at`: the rows' event time (time windows take rows by it), within one window span before `now`; default `now`."""
        now = time.time() if now is None else now
        # A clock ahead of ours cannot put rows in a future window, nor one far behind (a replay, a bad clock)
        # drop them unseen before any window holds them: they count as old as the next test still includes.
        oldest = now - (min(self.seconds, self.slide_seconds) if self.mode == "sliding" else self.seconds)
        at = now if at is None else min(max(at, oldest), now)
        complete: list[Window] = []
        with self.sql.transaction():
            self._lock(model)
            if event_id is not None:
                added = self.sql.execute("INSERT INTO seen (model, event_id, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (model, event_id, now))
                if added.rowcount == 0:
                    return None  # a redelivery: the transaction commits having written nothing
            tested, start, last_test = self._state(model)
            if start is None:
                start = now
            blobs = [(model, at, np.ascontiguousarray(r, dtype=np.float32).tobytes()) for r in rows]
            self.sql.executemany("INSERT INTO rows (model, ts, row) VALUES (?, ?, ?)", blobs)
            if self.mode == "count":
                pending = self.pending(model)
                while pending >= self.size:
                    pending -= self.size
                    seqs, array, first, last = self._take(model, "", (), "ASC", self.size)
                    self.sql.execute(f"DELETE FROM rows WHERE seq IN ({','.join('?' * len(seqs))})", seqs)
                    complete.append(Window(model, tested, array, first, last))
                    self._keep(complete[-1], event_id)
                    tested += 1
            else:
                # Keep at most `size` rows: the oldest beyond that leave (a window never exceeds its size).
                self.sql.execute(
                    "DELETE FROM rows WHERE model = ? AND seq NOT IN (SELECT seq FROM rows WHERE model = ? ORDER BY seq DESC LIMIT ?)",
                    (model, model, self.size),
                )
            self._set_state(model, tested, start, last_test)
        return complete

    def due(self, now: float | None = None) -> list[Window]:
        """Time windows whose time has come (tumbling: the span ended; sliding: the slide elapsed)."""
        if self.mode == "count":
            return []
        now = time.time() if now is None else now
        out: list[Window] = []
        models = [r[0] for r in self.sql.execute("SELECT model FROM windows").fetchall()]
        with self.sql.transaction():
            for model in models:
                self._lock(model)
                tested, start, last_test = self._state(model)
                if self.mode == "tumbling" and start is not None and now >= start + self.seconds + self.grace:
                    seqs, array, _, _ = self._take(model, "AND ts < ?", (start + self.seconds,), "DESC", self.size)
                    if seqs:
                        self.sql.execute("DELETE FROM rows WHERE model = ? AND ts < ?", (model, start + self.seconds))
                    if len(seqs) >= self.min_rows:
                        out.append(Window(model, tested, array, start, start + self.seconds))
                        self._keep(out[-1], None)
                        tested += 1
                    periods = max(1, int((now - self.grace - start) // self.seconds))
                    self._set_state(model, tested, start + periods * self.seconds, last_test)
                elif self.mode == "sliding" and (last_test is None or now >= last_test + self.slide_seconds):
                    self.sql.execute("DELETE FROM rows WHERE model = ? AND ts < ?", (model, now - self.seconds))
                    seqs, array, _, _ = self._take(model, "", (), "DESC", self.size)
                    if len(seqs) >= self.min_rows:
                        out.append(Window(model, tested, array, now - self.seconds, now))
                        self._keep(out[-1], None)
                        tested += 1
                    self._set_state(model, tested, start, now)
        return out

    def close(self) -> None:
        self.sql.close()


@dataclass(frozen=True)
class WindowResult:
    """One tested window: the detector's result with where and when the window was."""

    model: str
    window: int
    size: int
    start: float
    end: float
    detector: str
    result: DriftResult
    detector_version: str | None = None

    def to_json(self) -> dict:
        """The drift event's data (what the logger keeps in its drift log)."""
        return {**self.result.to_json(), "model": self.model, "window": self.window, "size": self.size,
                "start": rfc3339(self.start), "end": rfc3339(self.end), "detector": self.detector, "detector_version": self.detector_version}
