"""SQLite record store: one file, no server, the default.

WAL mode lets the logger's HTTP reads run beside its writes. All writes of one batch share one
transaction (the logger groups concurrent events), which is what makes hundreds of events per second
cheap on a laptop disk.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson

from seismo.database import bytes_in_use, open_database, transaction
from seismo.store.base import KEPT_ASIDE, DeadLetter, Record, RecordUpdate, Stored, merge, outcome, result_digest, within_budget

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    prediction_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    model_version TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    request_time REAL,
    response_time REAL,
    request BLOB,
    request_content_type TEXT,
    response BLOB,
    response_content_type TEXT,
    status INTEGER,
    extensions TEXT NOT NULL,
    annotations TEXT NOT NULL,
    event_types TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_model_created ON records (model, created_at);
CREATE INDEX IF NOT EXISTS records_created ON records (created_at);
CREATE TABLE IF NOT EXISTS drift_log (
    model TEXT NOT NULL,
    window INTEGER NOT NULL,
    received_at REAL NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (model, window)
);
CREATE TABLE IF NOT EXISTS drift_conflicts (
    model TEXT NOT NULL,
    window INTEGER NOT NULL,
    digest TEXT NOT NULL,
    received_at REAL NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (model, window, digest)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    key TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    model TEXT,
    received_at REAL NOT NULL,
    code TEXT NOT NULL,
    destination TEXT,
    event BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_received ON dead_letters (received_at, key);
"""
_DEAD_LETTER_COLUMNS = "key, event_id, type, model, received_at, code, destination, event"
_COLUMNS = (
    "prediction_id, model, model_version, created_at, updated_at, request_time, response_time, request, "
    "request_content_type, response, response_content_type, status, extensions, annotations, event_types"
)


def _row_to_record(row: tuple) -> Record:
    return Record(
        prediction_id=row[0],
        model=row[1],
        model_version=row[2],
        created_at=row[3],
        updated_at=row[4],
        request_time=row[5],
        response_time=row[6],
        request=row[7],
        request_content_type=row[8],
        response=row[9],
        response_content_type=row[10],
        status=row[11],
        extensions=orjson.loads(row[12]),
        annotations=orjson.loads(row[13]),
        event_types=tuple(orjson.loads(row[14])),
    )


def _record_to_row(r: Record) -> tuple:
    return (
        r.prediction_id,
        r.model,
        r.model_version,
        r.created_at,
        r.updated_at,
        r.request_time,
        r.response_time,
        r.request,
        r.request_content_type,
        r.response,
        r.response_content_type,
        r.status,
        orjson.dumps(r.extensions),
        orjson.dumps(r.annotations),
        orjson.dumps(list(r.event_types)),
    )


class SQLiteRecordStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        # Writes on one connection under a lock (the logger writes from one worker thread); reads on another
        # (WAL lets them run beside a write), so a long read never holds up storing predictions.
        self._lock = threading.Lock()
        self._db = open_database(self.path, _SCHEMA)
        self._read_lock = threading.Lock()
        self._reader = open_database(self.path, _SCHEMA)

    def apply(self, updates: list[RecordUpdate]) -> list[Stored]:
        now = round(time.time(), 6)  # microseconds, what the API's ISO times carry
        results: list[Stored] = []
        with self._lock:
            with transaction(self._db):
                pending: dict[str, Record] = {}  # records changed in this batch, by id
                for update in updates:
                    current = pending.get(update.prediction_id) or self._get(update.prediction_id)
                    merged = merge(current, update, now)
                    results.append(outcome(current, update, merged))
                    if merged is not None:
                        pending[update.prediction_id] = merged
                self._db.executemany(
                    f"INSERT OR REPLACE INTO records ({_COLUMNS}) VALUES ({', '.join('?' * 15)})",
                    [_record_to_row(r) for r in pending.values()],
                )
        return results

    def _get(self, prediction_id: str) -> Record | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM records WHERE prediction_id = ?", (prediction_id,)).fetchone()
        return None if row is None else _row_to_record(row)

    def get(self, prediction_id: str) -> Record | None:
        with self._read_lock:
            row = self._reader.execute(f"SELECT {_COLUMNS} FROM records WHERE prediction_id = ?", (prediction_id,)).fetchone()
        return None if row is None else _row_to_record(row)

    def get_many(self, prediction_ids: list[str]) -> dict[str, Record]:
        """The records that exist among `prediction_ids`, by id (one query per 500 ids)."""
        found: dict[str, Record] = {}
        with self._read_lock:
            for start in range(0, len(prediction_ids), 500):
                chunk = prediction_ids[start:start + 500]
                rows = self._reader.execute(
                    f"SELECT {_COLUMNS} FROM records WHERE prediction_id IN ({', '.join('?' * len(chunk))})", chunk
                ).fetchall()
                found.update((row[0], _row_to_record(row)) for row in rows)
        return found

    def query(
        self, model: str | None = None, since: float | None = None, until: float | None = None, limit: int = 100,
        max_bytes: int | None = None, requests: bool = True,
    ) -> list[Record]:
        clauses: list[str] = []
        params: list[str | float] = []
        if model is not None:
            clauses.append("model = ?")
            params.append(model)
        if since is not None:
            clauses.append("created_at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("created_at < ?")
            params.append(until)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        columns = _COLUMNS if requests else _COLUMNS.replace(" request,", " NULL AS request,", 1)
        sql = f"SELECT {columns} FROM records {where} ORDER BY created_at, prediction_id LIMIT ?"
        with self._read_lock:  # rows are read one at a time: past the byte budget, no more payloads are loaded
            return within_budget((_row_to_record(r) for r in self._reader.execute(sql, (*params, limit))), max_bytes)

    def count(self, model: str | None = None) -> int:
        with self._read_lock:
            if model is None:
                return self._reader.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            return self._reader.execute("SELECT COUNT(*) FROM records WHERE model = ?", (model,)).fetchone()[0]

    def embedding_versions(self, model: str | None = None) -> list[dict]:
        # A scan (no index on the JSON path: it would cost every write); the CLI asks this rarely.
        sql = ("SELECT json_extract(extensions, '$.embeddingversion') AS version, COUNT(*), MIN(created_at), MAX(created_at) "
               "FROM records WHERE version IS NOT NULL {} GROUP BY version ORDER BY MIN(created_at)")
        with self._read_lock:
            rows = self._reader.execute(sql.format("AND model = ?" if model is not None else ""), (model,) if model is not None else ()).fetchall()
        return [{"version": v, "count": n, "first": first, "last": last} for v, n, first, last in rows]

    def add_drift_window(self, model: str, window: int, result: dict) -> Stored:
        now = time.time()
        with self._lock, transaction(self._db):
            cursor = self._db.execute("INSERT OR IGNORE INTO drift_log (model, window, received_at, result) VALUES (?, ?, ?, ?)",
                                      (model, window, now, orjson.dumps(result)))
            if cursor.rowcount == 1:
                return True
            (first,) = self._db.execute("SELECT result FROM drift_log WHERE model = ? AND window = ?", (model, window)).fetchone()
            digest = result_digest(result)
            if result_digest(orjson.loads(first)) == digest:
                return False
            cursor = self._db.execute("INSERT OR IGNORE INTO drift_conflicts (model, window, digest, received_at, result) VALUES (?, ?, ?, ?, ?)",
                                      (model, window, digest, now, orjson.dumps({**result, "conflict": True})))
            return KEPT_ASIDE if cursor.rowcount == 1 else False

    def drift_windows(self, model: str | None = None, limit: int = 1000) -> list[dict]:
        sql = ("SELECT result FROM (SELECT model, window, received_at, result FROM drift_log UNION ALL "
               "SELECT model, window, received_at, result FROM drift_conflicts) {} ORDER BY received_at, window LIMIT ?")
        with self._read_lock:
            if model is None:
                rows = self._reader.execute(sql.format(""), (limit,)).fetchall()
            else:
                rows = self._reader.execute(sql.format("WHERE model = ?"), (model, limit)).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def add_dead_letter(self, letter: DeadLetter) -> bool:
        with self._lock, transaction(self._db):
            cursor = self._db.execute(f"INSERT OR IGNORE INTO dead_letters ({_DEAD_LETTER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                      (letter.key, letter.event_id, letter.type, letter.model, letter.received_at, letter.code,
                                       letter.destination, letter.event))
            return cursor.rowcount == 1

    def dead_letters(self, model: str | None = None, limit: int = 100, after: tuple[float, str] | None = None) -> list[DeadLetter]:
        where: list[str] = []
        params: list[object] = []
        if model is not None:
            where.append("model = ?")
            params.append(model)
        if after is not None:
            where.append("(received_at > ? OR (received_at = ? AND key > ?))")
            params += [after[0], after[0], after[1]]
        sql = (f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters {'WHERE ' + ' AND '.join(where) if where else ''} "
               "ORDER BY received_at, key LIMIT ?")
        with self._read_lock:
            rows = self._reader.execute(sql, (*params, limit)).fetchall()
        return [DeadLetter(*row) for row in rows]

    def remove_dead_letter(self, key: str) -> bool:
        with self._lock, transaction(self._db):
            return self._db.execute("DELETE FROM dead_letters WHERE key = ?", (key,)).rowcount == 1

    def expire(self, older_than: float) -> dict[str, int]:
        """Retention: remove records created, drift windows and dead letters received before `older_than`."""
        with self._lock:
            records = self._db.execute("DELETE FROM records WHERE created_at < ?", (older_than,)).rowcount
            windows = self._db.execute("DELETE FROM drift_log WHERE received_at < ?", (older_than,)).rowcount
            windows += self._db.execute("DELETE FROM drift_conflicts WHERE received_at < ?", (older_than,)).rowcount
            letters = self._db.execute("DELETE FROM dead_letters WHERE received_at < ?", (older_than,)).rowcount
        return {"records": records, "drift_windows": windows, "dead_letters": letters}

    def shrink_to(self, max_bytes: int, step: int = 500) -> int:
        """Remove the oldest records (`step` at a time) while the file's bytes in use exceed `max_bytes`;
        how many were removed. Freed pages are reused by new records, so the file stops growing."""
        removed = 0
        with self._lock:
            while bytes_in_use(self._db) > max_bytes:
                gone = self._db.execute("DELETE FROM records WHERE prediction_id IN "
                                        "(SELECT prediction_id FROM records ORDER BY created_at LIMIT ?)", (step,)).rowcount
                if not gone:
                    break
                removed += gone
        return removed

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._reader.close()
            self._db.close()
