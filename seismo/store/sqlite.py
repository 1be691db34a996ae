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

from seismo.database import open_database, transaction
from seismo.store.base import Record, RecordUpdate, merge

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
"""
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
        # One connection shared under a lock: the logger calls from one worker thread anyway, and
        # reads from the HTTP API are short.
        self._lock = threading.Lock()
        self._db = open_database(self.path, _SCHEMA)

    def apply(self, updates: list[RecordUpdate]) -> list[bool]:
        now = round(time.time(), 6)  # microseconds, what the API's ISO times carry
        results: list[bool] = []
        with self._lock:
            with transaction(self._db):
                pending: dict[str, Record] = {}  # records changed in this batch, by id
                for update in updates:
                    current = pending.get(update.prediction_id) or self._get(update.prediction_id)
                    merged = merge(current, update, now)
                    results.append(merged is not None)
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
        with self._lock:
            return self._get(prediction_id)

    def get_many(self, prediction_ids: list[str]) -> dict[str, Record]:
        """The records that exist among `prediction_ids`, by id (one query per 500 ids)."""
        found: dict[str, Record] = {}
        with self._lock:
            for start in range(0, len(prediction_ids), 500):
                chunk = prediction_ids[start:start + 500]
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM records WHERE prediction_id IN ({', '.join('?' * len(chunk))})", chunk
                ).fetchall()
                found.update((row[0], _row_to_record(row)) for row in rows)
        return found

    def query(
        self, model: str | None = None, since: float | None = None, until: float | None = None, limit: int = 100
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
        sql = f"SELECT {_COLUMNS} FROM records {where} ORDER BY created_at, prediction_id LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*params, limit)).fetchall()
        return [_row_to_record(r) for r in rows]

    def count(self, model: str | None = None) -> int:
        with self._lock:
            if model is None:
                return self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM records WHERE model = ?", (model,)).fetchone()[0]

    def embedding_versions(self, model: str | None = None) -> list[dict]:
        # A scan (no index on the JSON path: it would cost every write); the CLI asks this rarely.
        sql = ("SELECT json_extract(extensions, '$.embeddingversion') AS version, COUNT(*), MIN(created_at), MAX(created_at) "
               "FROM records WHERE version IS NOT NULL {} GROUP BY version ORDER BY MIN(created_at)")
        rows = self._db.execute(sql.format("AND model = ?" if model is not None else ""), (model,) if model is not None else ()).fetchall()
        return [{"version": v, "count": n, "first": first, "last": last} for v, n, first, last in rows]

    def add_drift_window(self, model: str, window: int, result: dict) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO drift_log (model, window, received_at, result) VALUES (?, ?, ?, ?)",
                (model, window, time.time(), orjson.dumps(result)),
            )
            return cursor.rowcount == 1

    def drift_windows(self, model: str | None = None, limit: int = 1000) -> list[dict]:
        sql = "SELECT result FROM drift_log {} ORDER BY received_at, window LIMIT ?"
        with self._lock:
            if model is None:
                rows = self._db.execute(sql.format(""), (limit,)).fetchall()
            else:
                rows = self._db.execute(sql.format("WHERE model = ?"), (model, limit)).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def expire(self, older_than: float) -> dict[str, int]:
        """Retention: remove records created and drift windows received before `older_than`."""
        with self._lock:
            records = self._db.execute("DELETE FROM records WHERE created_at < ?", (older_than,)).rowcount
            windows = self._db.execute("DELETE FROM drift_log WHERE received_at < ?", (older_than,)).rowcount
        return {"records": records, "drift_windows": windows}

    def close(self) -> None:
        with self._lock:
            self._db.close()
