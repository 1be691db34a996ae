"""The metrics server's durable state: scored feedback, predictions seen, pending truth. One SQLite file on
one machine, or the `seismo_metrics` schema of a PostgreSQL database every replica shares (then any
replica answers the same, a redelivery to another replica still counts once, and pending feedback is
claimed by the one replica that joins it).

- `scored`: one row per instance with ground truth, keyed by (model, prediction id#row), so feedback
  sent twice counts once and a later truth replaces the earlier one.
- `seen`: the scores of every logged prediction (labelled or not), for confidence-based estimation.
- `*_cohort`: which cohorts each row belongs to, with its time, so a cohort's window is one indexed
  range scan.
- `inputs`: each seen instance's inputs as float32 (features, or the response's embedding), for the
  diagnosis's input drift and where errors concentrate; only for models with a diagnosis reference.
- `pending`: feedback whose prediction is not stored yet, with when it arrived (for the TTL).
- `counts`: received/joined/pending/orphaned/late per model, surviving restarts.
- `unanswered`: predictions the scan read before their response was stored, looked up again until it
  is (or they are too old): the scan itself moves on by creation time and never reads them twice.
Windows are read from here on demand; nothing grows in memory. The SQL is the dialect both databases
speak (seismo.sql).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from seismo.performance.config import ALL
from seismo.sql import PostgresSql, Sql, SqliteSql, is_postgres_url

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scored (
    model TEXT NOT NULL, key TEXT NOT NULL, prediction_id TEXT, grp TEXT NOT NULL,
    scored_at REAL NOT NULL, predicted_at REAL, predicted REAL NOT NULL, truth REAL NOT NULL, scores TEXT,
    PRIMARY KEY (model, key)
);
CREATE INDEX IF NOT EXISTS scored_prediction ON scored (model, prediction_id);
CREATE TABLE IF NOT EXISTS scored_cohort (
    model TEXT NOT NULL, cohort TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (model, cohort, key)
);
CREATE INDEX IF NOT EXISTS scored_cohort_time ON scored_cohort (model, cohort, at);
CREATE INDEX IF NOT EXISTS scored_cohort_key ON scored_cohort (model, key);
CREATE TABLE IF NOT EXISTS seen (
    model TEXT NOT NULL, key TEXT NOT NULL, grp TEXT NOT NULL, predicted_at REAL NOT NULL, scores TEXT NOT NULL,
    PRIMARY KEY (model, key)
);
CREATE TABLE IF NOT EXISTS seen_cohort (
    model TEXT NOT NULL, cohort TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (model, cohort, key)
);
CREATE INDEX IF NOT EXISTS seen_cohort_time ON seen_cohort (model, cohort, at);
CREATE TABLE IF NOT EXISTS inputs (
    model TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, key)
);
CREATE TABLE IF NOT EXISTS pending (
    prediction_id TEXT PRIMARY KEY, model TEXT, received_at REAL NOT NULL, feedback TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_received ON pending (received_at);
CREATE TABLE IF NOT EXISTS counts (model TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (model, name));
CREATE TABLE IF NOT EXISTS scan_state (model TEXT PRIMARY KEY, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS unanswered (model TEXT NOT NULL, prediction_id TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (model, prediction_id));
CREATE INDEX IF NOT EXISTS unanswered_created ON unanswered (model, created_at);
"""

# PostgreSQL: DOUBLE PRECISION (its REAL is 4 bytes), BYTEA for bytes; the pending feedback is bytes.
_POSTGRES_SCHEMA = [statement.strip().replace(" REAL", " DOUBLE PRECISION").replace("BLOB", "BYTEA").replace("feedback TEXT", "feedback BYTEA")
                    for statement in _SCHEMA.split(";") if statement.strip()]
_POSTGRES_SCHEMA[_POSTGRES_SCHEMA.index(next(s for s in _POSTGRES_SCHEMA if "TABLE IF NOT EXISTS pending" in s))] = (
    "CREATE TABLE IF NOT EXISTS pending (prediction_id TEXT PRIMARY KEY, model TEXT, received_at DOUBLE PRECISION NOT NULL, "
    "feedback BYTEA NOT NULL, checks INTEGER NOT NULL DEFAULT 0, next_check DOUBLE PRECISION NOT NULL DEFAULT 0)")
_POSTGRES_SCHEMA.append("CREATE INDEX pending_next_check ON pending (next_check)")

COUNT_NAMES = ("received", "joined", "pending", "orphaned", "late")


def scored_lock(model: str, key: str) -> str:
    """The lock of a prediction's scored rows (`key` is `<prediction id>#<row>`)."""
    return f"scored\x1f{model}\x1f{key.split('#', 1)[0]}"


def pending_lock(prediction_id: str) -> str:
    return f"pending\x1f{prediction_id}"


def open_ledger_sql(target: str | Path) -> Sql:
    """The ledger's database: a PostgreSQL URL (the `seismo_metrics` schema), else a SQLite file."""
    if is_postgres_url(target):
        return PostgresSql(str(target), "seismo_metrics", _POSTGRES_SCHEMA)
    return SqliteSql(target, _SCHEMA)


@dataclass(frozen=True)
class Lookback:
    """The newest `count` rows, or the rows of the last `seconds`, or everything (both None)."""

    seconds: float | None = None
    count: int | None = None

    def describe(self) -> str:
        if self.count is not None:
            return f"last {self.count}"
        if self.seconds is not None:
            return f"{self.seconds:g}s"
        return "all"


@dataclass(frozen=True)
class ScoredItem:
    key: str
    prediction_id: str | None
    group: str  # "model" or "holdout"
    scored_at: float
    predicted_at: float | None
    predicted: float
    truth: float
    scores: tuple[float, ...] | None
    cohorts: tuple[str, ...]


@dataclass(frozen=True)
class SeenItem:
    key: str
    group: str
    predicted_at: float
    scores: tuple[float, ...] | None
    cohorts: tuple[str, ...]
    inputs: np.ndarray | None = None
    """float32 vector kept for the diagnosis (None: the model has no diagnosis reference)."""


@dataclass(frozen=True)
class Series:
    """A model's labelled instances in time order (when predicted, else when scored), for the diagnosis."""

    keys: list[str]
    at: np.ndarray
    predicted: np.ndarray
    truth: np.ndarray
    scores: list[tuple[float, ...] | None]

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class Rows:
    """A window's rows as arrays (scores: one row of class scores each, or None when absent)."""

    predicted: np.ndarray
    truth: np.ndarray
    scores: list[tuple[float, ...] | None]

    def __len__(self) -> int:
        return len(self.predicted)


class Ledger:
    def __init__(self, target: str | Path):
        """`target`: a SQLite file, or a PostgreSQL URL every replica of the metrics server shares."""
        self.target = target
        self._lock = threading.Lock()
        self._bumps: dict[tuple[str, str], int] | None = None  # summed inside a transaction, written at its commit
        self.sql = open_ledger_sql(target)
        if self.sql.dialect == "sqlite":
            columns = {row[1] for row in self.sql.execute("PRAGMA table_info(pending)").fetchall()}
            if "next_check" not in columns:  # ledgers written before pending items had their own check times
                self.sql.execute("ALTER TABLE pending ADD COLUMN checks INTEGER NOT NULL DEFAULT 0")
                self.sql.execute("ALTER TABLE pending ADD COLUMN next_check REAL NOT NULL DEFAULT 0")
            self.sql.execute("CREATE INDEX IF NOT EXISTS pending_next_check ON pending (next_check)")

    # -- writes; each call is one transaction -------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Ledger]:
        """`with ledger.transaction():` several writes in one BEGIN IMMEDIATE ... COMMIT, under the lock.

        Counter bumps inside it are summed and written once per (model, name) just before the commit:
        a batch of feedback bumps `received` and `joined` once per item, and one statement each per
        item was a quarter of the worker's time (profiled under the feedback benchmark)."""
        with self._lock, self.sql.transaction():
            self._bumps = {}
            try:
                yield self
                for (model, name), n in self._bumps.items():
                    self._bump_now(model, name, n)
            finally:
                self._bumps = None

    def lock(self, keys: Iterable[str]) -> None:
        """Inside a transaction: hold these keys (`scored_lock`, `pending_lock`) until it ends. Replicas sharing
        PostgreSQL take turns on the same prediction; a transaction should take every key it needs first, in
        one call (one order for all), so that two never wait on each other in a cycle."""
        self.sql.lock(keys)

    def add_scored(self, model: str, items: list[ScoredItem]) -> list[str]:
        """'new', 'duplicate' (same truth again) or 'replaced' (a different later truth) per item."""
        self.sql.lock(scored_lock(model, item.key) for item in items)
        outcomes = []
        for item in items:
            row = self.sql.execute("SELECT truth FROM scored WHERE model = ? AND key = ?", (model, item.key)).fetchone()
            if row is not None and row[0] == item.truth:
                outcomes.append("duplicate")
                continue
            outcomes.append("new" if row is None else "replaced")
            scores = None if item.scores is None else orjson.dumps(item.scores).decode()
            self.sql.execute(
                "INSERT INTO scored VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model, key) DO UPDATE SET prediction_id = excluded.prediction_id, "
                "grp = excluded.grp, scored_at = excluded.scored_at, predicted_at = excluded.predicted_at, predicted = excluded.predicted, "
                "truth = excluded.truth, scores = excluded.scores",
                (model, item.key, item.prediction_id, item.group, item.scored_at, item.predicted_at, float(item.predicted), float(item.truth), scores),
            )
            if row is not None:  # a replaced truth: its old cohort rows go (by index: a scan grew with the ledger)
                self.sql.execute("DELETE FROM scored_cohort WHERE model = ? AND key = ?", (model, item.key))
            self.sql.executemany("INSERT INTO scored_cohort VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                 [(model, c, item.key, item.scored_at) for c in item.cohorts])
        return outcomes

    def add_seen(self, model: str, items: list[SeenItem]) -> int:
        added = 0
        for item in items:
            if item.inputs is not None:
                self.sql.execute("INSERT INTO inputs VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                 (model, item.key, item.predicted_at, np.asarray(item.inputs, dtype="<f4").tobytes()))
            if item.scores is None:
                continue
            cursor = self.sql.execute("INSERT INTO seen VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                      (model, item.key, item.group, item.predicted_at, orjson.dumps(item.scores).decode()))
            if cursor.rowcount:
                added += 1
                self.sql.executemany("INSERT INTO seen_cohort VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                     [(model, c, item.key, item.predicted_at) for c in item.cohorts])
        return added

    def bump(self, model: str, name: str, n: int = 1) -> None:
        """Add `n` to a counter: at the commit inside a transaction, at once outside one."""
        if self._bumps is not None:
            self._bumps[model, name] = self._bumps.get((model, name), 0) + n
        else:
            self._bump_now(model, name, n)

    def _bump_now(self, model: str, name: str, n: int) -> None:
        self.sql.execute("INSERT INTO counts VALUES (?, ?, ?) ON CONFLICT (model, name) DO UPDATE SET value = counts.value + excluded.value",
                         (model, name, n))

    def add_pending(self, prediction_id: str, model: str | None, received_at: float, feedback: bytes) -> bool:
        """False when feedback for this id already waits (it is replaced: the later truth wins)."""
        self.sql.lock([pending_lock(prediction_id)])
        existed = self.sql.execute("SELECT 1 FROM pending WHERE prediction_id = ?", (prediction_id,)).fetchone()
        self.sql.execute("INSERT INTO pending (prediction_id, model, received_at, feedback, checks, next_check) VALUES (?, ?, ?, ?, 0, ?) "
                         "ON CONFLICT (prediction_id) DO UPDATE SET model = excluded.model, received_at = excluded.received_at, "
                         "feedback = excluded.feedback, checks = 0, next_check = excluded.next_check",
                         (prediction_id, model, received_at, feedback, received_at))
        return existed is None

    def postpone_pending(self, prediction_ids: list[str], now: float, max_delay: float = 60.0) -> None:
        """Checked and still unjoinable: look again later, backing off per item (1 s doubling up to
        `max_delay`), so a flood of feedback that never joins does not crowd out feedback that will."""
        least = self.sql.least
        self.sql.executemany(
            f"UPDATE pending SET checks = checks + 1, next_check = ? + {least}(?, 0.5 * (1 << {least}(checks + 1, 16))) WHERE prediction_id = ?",
            [(now, max_delay, p) for p in prediction_ids])

    def expire_scored(self, older_than: float) -> int:
        """Retention of scored truth and predictions seen for estimation."""
        removed = 0
        with self._lock:
            for table, column in (("scored", "scored_at"), ("scored_cohort", "at"), ("seen", "predicted_at"), ("seen_cohort", "at"),
                                  ("inputs", "at")):
                removed += self.sql.execute(f"DELETE FROM {table} WHERE {column} < ?", (older_than,)).rowcount
        return removed

    def claim_pending(self, prediction_ids: list[str]) -> list[tuple[str, str | None, float, bytes]]:
        """Remove these pending items; the rows this call removed, as they were then (another replica may have
        claimed some first, and a later truth may have replaced one since it was read: only the claimant
        joins or orphans an item, with the truth it removed, so it counts once)."""
        claimed: list[tuple[str, str | None, float, bytes]] = []
        for start in range(0, len(prediction_ids), 500):
            chunk = prediction_ids[start:start + 500]
            claimed += self.sql.execute(f"DELETE FROM pending WHERE prediction_id IN ({','.join('?' * len(chunk))}) "
                                        "RETURNING prediction_id, model, received_at, feedback", chunk).fetchall()
        return claimed

    def add_unanswered(self, model: str, rows: list[tuple[str, float]], at_most: int) -> int:
        """Remember predictions read without a response, while fewer than `at_most` of the model's wait;
        how many were left out (counted by the caller)."""
        if not rows:
            return 0
        room = max(at_most - self.sql.execute("SELECT COUNT(*) FROM unanswered WHERE model = ?", (model,)).fetchone()[0], 0)
        self.sql.executemany("INSERT INTO unanswered VALUES (?, ?, ?) ON CONFLICT DO NOTHING", [(model, pid, at) for pid, at in rows[:room]])
        return len(rows) - min(room, len(rows))

    def unanswered(self, model: str, limit: int) -> list[tuple[str, float]]:
        """The oldest predictions still waiting for their response: (prediction id, created_at)."""
        with self._lock:
            return self.sql.execute("SELECT prediction_id, created_at FROM unanswered WHERE model = ? ORDER BY created_at LIMIT ?",
                                    (model, limit)).fetchall()

    def remove_unanswered(self, model: str, prediction_ids: list[str]) -> int:
        """Forget these (answered, or waited for too long); how many this call removed (another replica may
        have removed some first; adding an answered one's scores twice changes nothing)."""
        removed = 0
        for start in range(0, len(prediction_ids), 500):
            chunk = prediction_ids[start:start + 500]
            removed += self.sql.execute(f"DELETE FROM unanswered WHERE model = ? AND prediction_id IN ({','.join('?' * len(chunk))})",
                                        (model, *chunk)).rowcount
        return removed

    def set_scan_mark(self, model: str, created_at: float) -> None:
        self.sql.execute("INSERT INTO scan_state VALUES (?, ?) ON CONFLICT (model) DO UPDATE SET created_at = excluded.created_at",
                         (model, created_at))

    # -- reads ----------------------------------------------------------------------------------

    def pending_batch(self, now: float, limit: int = 5000) -> list[tuple[str, str | None, float, bytes]]:
        with self._lock:
            return self.sql.execute("SELECT prediction_id, model, received_at, feedback FROM pending WHERE next_check <= ?"
                                    " ORDER BY next_check LIMIT ?", (now, limit)).fetchall()

    def pending_count(self) -> int:
        with self._lock:
            return self.sql.execute("SELECT COUNT(*) FROM pending").fetchone()[0]

    def scan_mark(self, model: str) -> float | None:
        with self._lock:
            row = self.sql.execute("SELECT created_at FROM scan_state WHERE model = ?", (model,)).fetchone()
        return None if row is None else row[0]

    def counts(self, model: str) -> dict[str, int]:
        with self._lock:
            rows = self.sql.execute("SELECT name, value FROM counts WHERE model = ?", (model,)).fetchall()
        found = dict(rows)
        return {name: int(found.get(name, 0)) for name in COUNT_NAMES}

    def groups(self) -> list[tuple[str, str, str | None]]:
        """Every (model, cohort, group) with scored or seen rows: what the gauges report."""
        with self._lock:
            rows = self.sql.execute(
                "SELECT DISTINCT c.model, c.cohort, s.grp FROM scored_cohort c JOIN scored s ON s.model = c.model AND s.key = c.key "
                "UNION SELECT DISTINCT c.model, c.cohort, s.grp FROM seen_cohort c JOIN seen s ON s.model = c.model AND s.key = c.key"
            ).fetchall()
        return sorted(rows)

    def largest_cohorts(self, model: str, limit: int) -> list[str]:
        """The model's cohorts with the most labelled instances, largest first (ties by name)."""
        with self._lock:
            rows = self.sql.execute("SELECT cohort FROM scored_cohort WHERE model = ? GROUP BY cohort ORDER BY COUNT(*) DESC, cohort LIMIT ?",
                                    (model, limit)).fetchall()
        return [r[0] for r in rows]

    def models(self) -> list[str]:
        with self._lock:
            rows = self.sql.execute("SELECT model FROM scored UNION SELECT model FROM seen UNION SELECT model FROM counts").fetchall()
        return sorted(r[0] for r in rows)

    def _window_sql(self, table: str, columns: str, model: str, cohort: str, group: str | None, window: Lookback, now: float):
        sql = f"SELECT {columns} FROM {table}_cohort c JOIN {table} s ON s.model = c.model AND s.key = c.key WHERE c.model = ? AND c.cohort = ?"
        params: list = [model, cohort]
        if group is not None:
            sql += " AND s.grp = ?"
            params.append(group)
        if window.seconds is not None:
            sql += " AND c.at >= ?"
            params.append(now - window.seconds)
        sql += " ORDER BY c.at DESC"
        if window.count is not None:
            sql += " LIMIT ?"
            params.append(window.count)
        return sql, params

    def scored_rows(self, model: str, cohort: str, group: str | None, window: Lookback, now: float | None = None) -> Rows:
        sql, params = self._window_sql("scored", "s.predicted, s.truth, s.scores", model, cohort, group, window, now or time.time())
        with self._lock:
            rows = self.sql.execute(sql, params).fetchall()
        return Rows(np.array([r[0] for r in rows], dtype=np.float64), np.array([r[1] for r in rows], dtype=np.float64),
                    [None if r[2] is None else tuple(orjson.loads(r[2])) for r in rows])

    def seen_scores(self, model: str, cohort: str, group: str | None, window: Lookback, now: float | None = None) -> list[tuple[float, ...]]:
        sql, params = self._window_sql("seen", "s.scores", model, cohort, group, window, now or time.time())
        with self._lock:
            rows = self.sql.execute(sql, params).fetchall()
        return [tuple(orjson.loads(r[0])) for r in rows]

    def outcomes(self, model: str, prediction_ids: list[str]) -> dict[str, list[tuple[float, float]]]:
        """(predicted, truth) per instance of each named prediction that has truth, in instance order."""
        out: dict[str, list[tuple[float, float]]] = {}
        with self._lock:
            for start in range(0, len(prediction_ids), 500):  # SQLite's bound-parameter limit
                chunk = prediction_ids[start:start + 500]
                rows = self.sql.execute(
                    f"SELECT prediction_id, predicted, truth FROM scored WHERE model = ? AND prediction_id IN ({','.join('?' * len(chunk))})"
                    " ORDER BY prediction_id, key", (model, *chunk)).fetchall()
                for pid, predicted, truth in rows:
                    out.setdefault(pid, []).append((predicted, truth))
        return out

    def scored_series(self, model: str, cohort: str, since: float | None, limit: int = 200_000) -> Series:
        """Labelled instances oldest first (the newest `limit` when there are more)."""
        sql = ("SELECT * FROM (SELECT s.key, COALESCE(s.predicted_at, s.scored_at) AS t, s.predicted, s.truth, s.scores "
               "FROM scored_cohort c JOIN scored s ON s.model = c.model AND s.key = c.key WHERE c.model = ? AND c.cohort = ?"
               " AND COALESCE(s.predicted_at, s.scored_at) >= ? ORDER BY t DESC LIMIT ?) AS page ORDER BY t")
        with self._lock:
            rows = self.sql.execute(sql, (model, cohort, since if since is not None else float("-inf"), limit)).fetchall()
        return Series([r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.float64),
                      np.array([r[2] for r in rows], dtype=np.float64), np.array([r[3] for r in rows], dtype=np.float64),
                      [None if r[4] is None else tuple(orjson.loads(r[4])) for r in rows])

    def input_series(self, model: str, cohort: str, since: float | None, limit: int = 200_000) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
        """(keys, times, vectors) of the instances seen with inputs, oldest first. Cohort `all` needs no
        cohort join (instances of models without probabilities have inputs but no `seen` row)."""
        if cohort == ALL:
            sql = ("SELECT * FROM (SELECT key, at, vector FROM inputs WHERE model = ? AND at >= ? ORDER BY at DESC LIMIT ?) AS page ORDER BY at")
            params: tuple = (model, since if since is not None else float("-inf"), limit)
        else:
            sql = ("SELECT * FROM (SELECT i.key, i.at, i.vector FROM seen_cohort c JOIN inputs i ON i.model = c.model AND i.key = c.key"
                   " WHERE c.model = ? AND c.cohort = ? AND i.at >= ? ORDER BY i.at DESC LIMIT ?) AS page ORDER BY at")
            params = (model, cohort, since if since is not None else float("-inf"), limit)
        with self._lock:
            rows = self.sql.execute(sql, params).fetchall()
        return [r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.float64), [np.frombuffer(r[2], dtype="<f4") for r in rows]

    def close(self) -> None:
        with self._lock:
            self.sql.close()
