"""The broker's durable journal: events and their pending deliveries, in SQLite (WAL).

An event is written together with one delivery row per matching trigger, in one transaction, before
the ingress answers 202. A delivery row leaves only when the subscriber (or the dead-letter sink) has
taken the event, so a broker killed at any moment redelivers what was pending: at-least-once.

All writes go through `GroupCommitter`: concurrent ingress requests and delivery outcomes share one
transaction (and one fsync), which is what lets a single SQLite file keep up with hundreds of events
per second.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from seismo.batching import ThreadBatcher
from seismo.database import bytes_in_use, open_database, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    received_at REAL NOT NULL,
    headers BLOB NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    trigger TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    PRIMARY KEY (trigger, event_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (trigger, next_attempt_at);
-- "Does anything still refer to this event?" after each outcome: without these, a scan of the whole
-- backlog per delivered event (the broker's largest CPU cost under load before they were added).
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    trigger TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    code INTEGER,
    error TEXT,
    dead_at REAL NOT NULL,
    PRIMARY KEY (trigger, event_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dead_letters_event ON dead_letters (event_seq);
"""


@dataclass(frozen=True)
class PendingDelivery:
    event_seq: int
    attempts: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class IncomingEvent:
    event_id: str
    type: str
    headers: dict[str, str]
    body: bytes
    triggers: tuple[str, ...]


# Outcomes of one delivery attempt, written back in a batch.
@dataclass(frozen=True)
class Delivered:
    trigger: str
    event_seq: int


@dataclass(frozen=True)
class RetryLater:
    trigger: str
    event_seq: int
    attempts: int
    next_attempt_at: float


@dataclass(frozen=True)
class DeadLettered:
    trigger: str
    event_seq: int
    attempts: int
    code: int | None
    error: str
    kept: bool  # True: no sink took it, so it stays in the dead-letter table


class Journal:
    """Synchronous SQLite access; only ever called from the journal's single worker thread."""

    def __init__(self, path: str | Path, synchronous: str = "full"):
        self.path = Path(path)
        self._db = open_database(self.path, _SCHEMA, synchronous.upper())

    def transaction(self, work: Callable[[sqlite3.Connection], list]) -> list:
        with transaction(self._db):
            return work(self._db)

    @staticmethod
    def insert_event(db: sqlite3.Connection, event: IncomingEvent, now: float) -> int:
        cursor = db.execute(
            "INSERT INTO events (event_id, type, received_at, headers, body) VALUES (?, ?, ?, ?, ?)",
            (event.event_id, event.type, now, orjson.dumps(event.headers), event.body),
        )
        seq = cursor.lastrowid
        assert seq is not None  # an INSERT always sets it
        db.executemany(
            "INSERT INTO deliveries (trigger, event_seq, attempts, next_attempt_at) VALUES (?, ?, 0, ?)",
            [(trigger, seq, now) for trigger in event.triggers],
        )
        return seq

    @staticmethod
    def record_outcome(db: sqlite3.Connection, outcome: Delivered | RetryLater | DeadLettered, now: float) -> None:
        if isinstance(outcome, RetryLater):
            db.execute(
                "UPDATE deliveries SET attempts = ?, next_attempt_at = ? WHERE trigger = ? AND event_seq = ?",
                (outcome.attempts, outcome.next_attempt_at, outcome.trigger, outcome.event_seq),
            )
            return
        db.execute("DELETE FROM deliveries WHERE trigger = ? AND event_seq = ?", (outcome.trigger, outcome.event_seq))
        if isinstance(outcome, DeadLettered) and outcome.kept:
            db.execute(
                "INSERT OR REPLACE INTO dead_letters (trigger, event_seq, attempts, code, error, dead_at) VALUES (?, ?, ?, ?, ?, ?)",
                (outcome.trigger, outcome.event_seq, outcome.attempts, outcome.code, outcome.error, now),
            )
        # The event's bytes go once nothing refers to them any more.
        db.execute(
            "DELETE FROM events WHERE seq = ? AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_seq = ?)"
            " AND NOT EXISTS (SELECT 1 FROM dead_letters WHERE event_seq = ?)",
            (outcome.event_seq, outcome.event_seq, outcome.event_seq),
        )

    def due(self, trigger: str, now: float, limit: int, exclude: set[int]) -> list[PendingDelivery]:
        """Up to `limit` due deliveries of the trigger, oldest first, skipping those in flight (`exclude`).
        The due rows are chosen from the index alone and only the chosen events' bytes are read: a batched
        trigger has up to thousands of deliveries in flight, and reading their bodies to skip them cost
        more than everything else the broker did."""
        rows = self._db.execute(
            "SELECT event_seq, attempts FROM deliveries WHERE trigger = ? AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, event_seq LIMIT ?",
            (trigger, now, limit + len(exclude)),
        ).fetchall()
        chosen = [(seq, attempts) for seq, attempts in rows if seq not in exclude][:limit]
        stored: dict[int, tuple[bytes, bytes]] = {}
        for start in range(0, len(chosen), 500):  # well under SQLite's bound on query parameters
            part = [seq for seq, _ in chosen[start:start + 500]]
            marks = ",".join("?" * len(part))
            for seq, headers, body in self._db.execute(f"SELECT seq, headers, body FROM events WHERE seq IN ({marks})", part):
                stored[seq] = (headers, body)
        return [PendingDelivery(seq, attempts, orjson.loads(stored[seq][0]), stored[seq][1]) for seq, attempts in chosen if seq in stored]

    def backlog(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT trigger, COUNT(*) FROM deliveries GROUP BY trigger").fetchall())

    def size_bytes(self) -> int:
        return bytes_in_use(self._db)

    def expire_dead_letters(self, older_than: float, keep_at_most: int) -> int:
        """Retention of the dead-letter table: drop entries dead before `older_than`, and the oldest
        beyond `keep_at_most`; their events go with them. How many were removed."""
        removed = self._db.execute("DELETE FROM dead_letters WHERE dead_at < ?", (older_than,)).rowcount
        removed += self._trim_dead_letters(keep_at_most)
        if removed:
            self._db.execute(
                "DELETE FROM events WHERE NOT EXISTS (SELECT 1 FROM deliveries WHERE event_seq = seq)"
                " AND NOT EXISTS (SELECT 1 FROM dead_letters WHERE event_seq = seq)"
            )
        return removed

    def dead_letter_bytes(self) -> int:
        """Bytes of the events that only dead letters still hold (no delivery of them pending)."""
        return self._db.execute(
            "SELECT COALESCE(SUM(length(headers) + length(body)), 0) FROM events WHERE seq IN (SELECT event_seq FROM dead_letters)"
            " AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_seq = seq)").fetchone()[0]

    def shed_dead_letters(self, max_dead_bytes: int, max_total_bytes: int) -> int:
        """Remove the oldest dead letters (and the events nothing else holds) while their events take more
        than `max_dead_bytes`, or while the whole journal is at `max_total_bytes`: what no subscriber
        wanted must never crowd out what is still to be delivered. How many were removed."""
        removed = 0
        while True:
            size = self.size_bytes()  # a pragma: cheap. The scan of the dead letters' events only when it could matter.
            dead = self.dead_letter_bytes() if size > max_dead_bytes else 0
            excess = max(dead - max_dead_bytes, size - max_total_bytes + 1)
            if excess <= 0:
                break
            # The oldest that together free the excess, in one pass however many there are (an event two
            # triggers dead-lettered frees its bytes with its last row: the outer loop measures again).
            chosen, freed = [], 0
            cursor = self._db.execute(
                "SELECT d.trigger, d.event_seq, COALESCE(length(e.headers) + length(e.body), 0) FROM dead_letters d"
                " LEFT JOIN events e ON e.seq = d.event_seq ORDER BY d.dead_at")
            for trigger, seq, nbytes in cursor:
                chosen.append((trigger, seq))
                freed += nbytes
                if freed >= excess:
                    break
            cursor.close()
            if not chosen:
                break
            self._db.executemany("DELETE FROM dead_letters WHERE trigger = ? AND event_seq = ?", chosen)
            self._db.execute(
                "DELETE FROM events WHERE NOT EXISTS (SELECT 1 FROM deliveries WHERE event_seq = seq)"
                " AND NOT EXISTS (SELECT 1 FROM dead_letters WHERE event_seq = seq)"
            )
            removed += len(chosen)
        return removed

    def _trim_dead_letters(self, keep_at_most: int) -> int:
        total = self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
        excess = total - keep_at_most
        if excess <= 0:
            return 0
        cutoff = self._db.execute("SELECT dead_at FROM dead_letters ORDER BY dead_at LIMIT 1 OFFSET ?", (excess - 1,)).fetchone()[0]
        return self._db.execute("DELETE FROM dead_letters WHERE dead_at <= ?", (cutoff,)).rowcount

    def dead_letter_counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT trigger, COUNT(*) FROM dead_letters GROUP BY trigger").fetchall())

    def close(self) -> None:
        self._db.close()


class GroupCommitter:
    """Journal writes from many coroutines, committed together (see seismo.batching)."""

    def __init__(self, journal: Journal, max_batch: int = 512):
        self.journal = journal
        self._batcher: ThreadBatcher[IncomingEvent | Delivered | RetryLater | DeadLettered, int | None] = ThreadBatcher(self._write_batch, max_batch, name="journal")

    def start(self) -> None:
        self._batcher.start()

    def stopped(self) -> list[str]:
        return self._batcher.stopped()

    async def read(self, fn: Callable, *args):
        """Reads share the writer's thread and connection, so they see every committed write."""
        return await self._batcher.call(fn, *args)

    async def ingest(self, event: IncomingEvent) -> int:
        seq = await self._batcher.submit(event)
        assert seq is not None  # an event's insert answers its sequence number
        return seq

    async def record(self, outcome: Delivered | RetryLater | DeadLettered) -> None:
        await self._batcher.submit(outcome)

    def _write_batch(self, ops: list[IncomingEvent | Delivered | RetryLater | DeadLettered]) -> list[int | None]:
        now = time.time()

        def work(db: sqlite3.Connection) -> list[int | None]:
            results: list[int | None] = []
            for op in ops:
                if isinstance(op, IncomingEvent):
                    results.append(Journal.insert_event(db, op, now))
                else:
                    Journal.record_outcome(db, op, now)
                    results.append(None)
            return results

        return self.journal.transaction(work)

    async def close(self) -> None:
        """Finish queued writes, then close the file."""
        await self._batcher.close(self.journal.close)
