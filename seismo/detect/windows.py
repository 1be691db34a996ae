"""Persistent windows of instances for the drift service: count-based or time-based (tumbling, sliding).

Every accepted row is committed to SQLite before the service answers, so a restart loses nothing. An
event id is added once (the broker delivers at least once), and a complete window is kept as a
snapshot until its result is recorded (`finish`), so a crash while testing loses no window.
A window never exceeds its size: a count window takes exactly `size` rows (the rest of an event's rows
start the next window); a time window keeps at most the `size` newest rows of its span.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seismo.database import open_database, transaction
from seismo.detect.base import DriftResult
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
    end REAL NOT NULL,
    rows BLOB NOT NULL,
    count INTEGER NOT NULL,
    event_id TEXT,             -- the event whose rows completed it (count windows)
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


@dataclass(frozen=True)
class Window:
    model: str
    number: int
    rows: np.ndarray
    start: float
    end: float


class WindowStore:
    def __init__(self, path: str | Path, instance_shape: tuple[int, ...], size: int = 1000, mode: str = "count",
                 seconds: float = 60.0, slide_seconds: float = 10.0, min_rows: int = 50):
        if mode not in ("count", "tumbling", "sliding"):
            raise ValueError(f"window mode must be count, tumbling or sliding, not {mode!r}")
        self.instance_shape = tuple(instance_shape)
        self.size, self.mode, self.seconds, self.slide_seconds, self.min_rows = size, mode, seconds, slide_seconds, min_rows
        self._db = open_database(path, _SCHEMA)

    def _state(self, model: str) -> tuple[int, float | None, float | None]:
        row = self._db.execute("SELECT tested, start, last_test FROM windows WHERE model = ?", (model,)).fetchone()
        return row if row else (0, None, None)

    def _set_state(self, model: str, tested: int, start: float | None, last_test: float | None) -> None:
        self._db.execute("INSERT OR REPLACE INTO windows (model, tested, start, last_test) VALUES (?, ?, ?, ?)", (model, tested, start, last_test))

    def batch(self):
        """`with store.batch():` every add and finish inside is committed together (one commit, one fsync)."""
        return transaction(self._db)

    def pending(self, model: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM rows WHERE model = ?", (model,)).fetchone()[0]

    def _take(self, model: str, where: str, params: tuple, order: str, limit: int) -> tuple[list[int], np.ndarray, float, float]:
        rows = self._db.execute(f"SELECT seq, ts, row FROM rows WHERE model = ? {where} ORDER BY seq {order} LIMIT ?", (model, *params, limit)).fetchall()
        rows.sort()
        array = np.stack([np.frombuffer(r[2], dtype=np.float32).reshape(self.instance_shape) for r in rows]) if rows else np.empty((0, *self.instance_shape), np.float32)
        return [r[0] for r in rows], array, (rows[0][1] if rows else 0.0), (rows[-1][1] if rows else 0.0)

    def _keep(self, window: Window, event_id: str | None) -> None:
        rows = np.ascontiguousarray(window.rows, dtype=np.float32)
        self._db.execute("INSERT OR REPLACE INTO complete (model, number, start, end, rows, count, event_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (window.model, window.number, window.start, window.end, rows.tobytes(), len(rows), event_id))

    def unfinished(self) -> list[tuple[Window, str | None]]:
        """Complete windows whose result was never recorded (the service stopped in between), with their event id."""
        out = []
        for model, number, start, end, blob, count, event_id in self._db.execute(
                "SELECT model, number, start, end, rows, count, event_id FROM complete ORDER BY model, number").fetchall():
            rows = np.frombuffer(blob, dtype=np.float32).reshape((count, *self.instance_shape))
            out.append((Window(model, number, rows, start, end), event_id))
        return out

    def finish(self, window: Window, payload: bytes, event_id: str | None = None) -> None:
        """Record a tested window's result and let its snapshot go, in one transaction."""
        with transaction(self._db):
            self._db.execute("INSERT OR REPLACE INTO results (model, number, event_id, at, payload) VALUES (?, ?, ?, ?, ?)",
                             (window.model, window.number, event_id, time.time(), payload))
            self._db.execute("DELETE FROM complete WHERE model = ? AND number = ?", (window.model, window.number))

    def results_for(self, model: str, event_id: str) -> list[bytes]:
        """The results of windows an event completed (to answer its redelivery the same way)."""
        return [r[0] for r in self._db.execute("SELECT payload FROM results WHERE model = ? AND event_id = ? ORDER BY number",
                                               (model, event_id)).fetchall()]

    def forget(self, older_than: float) -> int:
        """Retention of dedup ids and recorded results (a redelivery comes within minutes, not days)."""
        removed = self._db.execute("DELETE FROM seen WHERE at < ?", (older_than,)).rowcount
        return removed + self._db.execute("DELETE FROM results WHERE at < ?", (older_than,)).rowcount

    def add(self, model: str, rows: np.ndarray, now: float | None = None, event_id: str | None = None) -> list[Window] | None:
        """Commit rows; return the windows that are now complete (count mode), or None when `event_id`
        was added before (a redelivery: nothing is added). A returned window stays kept until `finish`."""
        now = time.time() if now is None else now
        complete: list[Window] = []
        with transaction(self._db):
            if event_id is not None:
                if self._db.execute("SELECT 1 FROM seen WHERE model = ? AND event_id = ?", (model, event_id)).fetchone():
                    return None  # a redelivery: the transaction commits having written nothing
                self._db.execute("INSERT INTO seen (model, event_id, at) VALUES (?, ?, ?)", (model, event_id, now))
            tested, start, last_test = self._state(model)
            if start is None:
                start = now
            blobs = [(model, now, np.ascontiguousarray(r, dtype=np.float32).tobytes()) for r in rows]
            self._db.executemany("INSERT INTO rows (model, ts, row) VALUES (?, ?, ?)", blobs)
            if self.mode == "count":
                pending = self.pending(model)
                while pending >= self.size:
                    pending -= self.size
                    seqs, array, first, last = self._take(model, "", (), "ASC", self.size)
                    self._db.execute(f"DELETE FROM rows WHERE seq IN ({','.join('?' * len(seqs))})", seqs)
                    complete.append(Window(model, tested, array, first, last))
                    self._keep(complete[-1], event_id)
                    tested += 1
            else:
                # Keep at most `size` rows: the oldest beyond that leave (a window never exceeds its size).
                self._db.execute(
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
        models = [r[0] for r in self._db.execute("SELECT model FROM windows").fetchall()]
        with transaction(self._db):
            for model in models:
                tested, start, last_test = self._state(model)
                if self.mode == "tumbling" and start is not None and now >= start + self.seconds:
                    seqs, array, _, _ = self._take(model, "AND ts < ?", (start + self.seconds,), "DESC", self.size)
                    if seqs:
                        self._db.execute("DELETE FROM rows WHERE model = ? AND ts < ?", (model, start + self.seconds))
                    if len(seqs) >= self.min_rows:
                        out.append(Window(model, tested, array, start, start + self.seconds))
                        self._keep(out[-1], None)
                        tested += 1
                    periods = int((now - start) // self.seconds)
                    self._set_state(model, tested, start + periods * self.seconds, last_test)
                elif self.mode == "sliding" and (last_test is None or now >= last_test + self.slide_seconds):
                    self._db.execute("DELETE FROM rows WHERE model = ? AND ts < ?", (model, now - self.seconds))
                    seqs, array, _, _ = self._take(model, "", (), "DESC", self.size)
                    if len(seqs) >= self.min_rows:
                        out.append(Window(model, tested, array, now - self.seconds, now))
                        self._keep(out[-1], None)
                        tested += 1
                    self._set_state(model, tested, start, now)
        return out

    def close(self) -> None:
        self._db.close()


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
