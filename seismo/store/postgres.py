"""PostgreSQL record store: the database a platform team already runs, shared by every replica.

Several loggers may write the same prediction at once (its request and response events reach
different replicas). Each batch is one transaction that first takes a transaction-scoped advisory
lock per prediction id, in sorted order, then reads, merges (seismo.store.base.merge) and upserts:
two replicas folding events into one record wait for each other instead of overwriting each other.
A deadlock or serialization failure (another order of locks, a failover) is retried.

The driver is pg8000 (BSD-3, pure Python), imported only when a PostgreSQL URL is configured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from seismo.sql import connect_kwargs, redacted, run_all_or_none
from seismo.store.base import KEPT_ASIDE, DeadLetter, Page, Record, RecordUpdate, Stored, merge, outcome, result_digest

SCHEMA_VERSION = 2
"""Bumped when the tables change; a store refuses a database written by a newer Seismo and brings an
older one up to date (`_MIGRATIONS`)."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS seismo_records (
        prediction_id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        model_version TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        request_time DOUBLE PRECISION,
        response_time DOUBLE PRECISION,
        request BYTEA,
        request_content_type TEXT,
        response BYTEA,
        response_content_type TEXT,
        status INTEGER,
        extensions TEXT NOT NULL,
        annotations TEXT NOT NULL,
        event_types TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS seismo_records_model_created ON seismo_records (model, created_at, prediction_id)",
    "CREATE INDEX IF NOT EXISTS seismo_records_created ON seismo_records (created_at, prediction_id)",
    """CREATE TABLE IF NOT EXISTS seismo_drift_log (
        model TEXT NOT NULL,
        window_id BIGINT NOT NULL,
        received_at DOUBLE PRECISION NOT NULL,
        result TEXT NOT NULL,
        PRIMARY KEY (model, window_id))""",
    """CREATE TABLE IF NOT EXISTS seismo_drift_conflicts (
        model TEXT NOT NULL,
        window_id BIGINT NOT NULL,
        digest TEXT NOT NULL,
        received_at DOUBLE PRECISION NOT NULL,
        result TEXT NOT NULL,
        PRIMARY KEY (model, window_id, digest))""",
    "CREATE TABLE IF NOT EXISTS seismo_schema (version INTEGER NOT NULL)",
)
_MIGRATIONS: dict[int, tuple[str, ...]] = {2: (
    """CREATE TABLE IF NOT EXISTS seismo_dead_letters (
        key TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        type TEXT NOT NULL,
        model TEXT,
        received_at DOUBLE PRECISION NOT NULL,
        code TEXT NOT NULL,
        destination TEXT,
        event BYTEA NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS seismo_dead_letters_received ON seismo_dead_letters (received_at, key)",
)}
"""What each schema version adds to the one before it (version 1 is `_SCHEMA`)."""
_DEAD_LETTER_COLUMNS = "key, event_id, type, model, received_at, code, destination, event"
_COLUMNS = ("prediction_id, model, model_version, created_at, updated_at, request_time, response_time, request, "
            "request_content_type, response, response_content_type, status, extensions, annotations, event_types")
_UPSERT = (f"INSERT INTO seismo_records ({_COLUMNS}) VALUES ({', '.join(['%s'] * 15)}) ON CONFLICT (prediction_id) DO UPDATE SET "
           + ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS.split(", ")[1:]))
_RETRIED = {"40P01", "40001"}  # deadlock detected, serialization failure
_SCHEMA_LOCK = 0x5E15_0001  # the advisory lock replicas starting together take while creating the tables


def _row_to_record(row: Sequence[Any]) -> Record:
    return Record(prediction_id=row[0], model=row[1], model_version=row[2], created_at=row[3], updated_at=row[4],
                  request_time=row[5], response_time=row[6], request=None if row[7] is None else bytes(row[7]),
                  request_content_type=row[8], response=None if row[9] is None else bytes(row[9]), response_content_type=row[10],
                  status=row[11], extensions=orjson.loads(row[12]), annotations=orjson.loads(row[13]),
                  event_types=tuple(orjson.loads(row[14])))


def _record_to_row(r: Record) -> tuple:
    return (r.prediction_id, r.model, r.model_version, r.created_at, r.updated_at, r.request_time, r.response_time, r.request,
            r.request_content_type, r.response, r.response_content_type, r.status, orjson.dumps(r.extensions).decode(),
            orjson.dumps(r.annotations).decode(), orjson.dumps(list(r.event_types)).decode())


class PostgresRecordStore:
    def __init__(self, url: str, connect: Callable[..., Any] | None = None):
        import pg8000.dbapi  # optional extra `postgres`: imported only when configured

        self.url = url
        self._connect = connect or pg8000.dbapi.connect
        self._errors = pg8000.dbapi.DatabaseError
        # One connection writes under a lock (the logger writes from one worker thread), another reads, so a
        # long listing never holds up storing predictions; every replica has its own pair.
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._db = self._open()
        self._reader = self._open()
        try:
            self._create_schema()
        except BaseException:
            self.close()  # no connection left behind by a store that never opened
            raise

    def _open(self) -> Any:
        db = self._connect(**connect_kwargs(self.url))
        db.autocommit = True
        return db

    def _create_schema(self) -> None:
        with self._lock:
            cursor = self._db.cursor()
            cursor.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
            try:
                # Tables that exist are left alone: their DDL, even IF NOT EXISTS, would queue behind the writers.
                cursor.execute("SELECT to_regclass('seismo_schema')")
                if cursor.fetchone()[0] is None:
                    run_all_or_none(cursor, _SCHEMA)
                cursor.execute("SELECT max(version) FROM seismo_schema")
                (version,) = cursor.fetchone()
                if version is not None and version > SCHEMA_VERSION:
                    raise RuntimeError(f"the database at {redacted(self.url)} holds Seismo's schema version {version}; "
                                       f"this Seismo reads version {SCHEMA_VERSION}: upgrade it")
                for upgrade in range((version or 1) + 1, SCHEMA_VERSION + 1):
                    run_all_or_none(cursor, (*_MIGRATIONS[upgrade], f"INSERT INTO seismo_schema (version) VALUES ({upgrade})"))
                if version is None:  # a new database: it starts at version 1 and the loop above brought it up
                    cursor.execute("INSERT INTO seismo_schema (version) VALUES (1)")
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))

    def _transaction(self, work: Callable[[Any], Any]) -> Any:
        """`work(cursor)` in one transaction on the writer, retried on a deadlock or a serialization failure."""
        for attempt in range(5):
            cursor = self._db.cursor()
            cursor.execute("BEGIN")
            try:
                result = work(cursor)
                cursor.execute("COMMIT")
                return result
            except self._errors as exc:
                cursor.execute("ROLLBACK")
                code = exc.args[0].get("C") if exc.args and isinstance(exc.args[0], dict) else None
                if code not in _RETRIED or attempt == 4:
                    raise
                time.sleep(0.01 * 2**attempt)
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
        raise AssertionError("unreachable")

    def apply(self, updates: list[RecordUpdate]) -> list[Stored]:
        now = round(time.time(), 6)
        ids = sorted({u.prediction_id for u in updates})

        def fold(cursor: Any) -> list[Stored]:
            # One advisory lock per id, taken in sorted order: replicas folding the same ids queue up.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(id, 0)) FROM unnest(%s::text[]) WITH ORDINALITY AS t(id, n) "
                           "ORDER BY n", (ids,))
            cursor.fetchall()
            cursor.execute(f"SELECT {_COLUMNS} FROM seismo_records WHERE prediction_id = ANY(%s)", (ids,))
            current = {row[0]: _row_to_record(row) for row in cursor.fetchall()}
            results: list[Stored] = []
            changed: dict[str, Record] = {}
            for update in updates:
                before = changed.get(update.prediction_id) or current.get(update.prediction_id)
                merged = merge(before, update, now)
                results.append(outcome(before, update, merged))
                if merged is not None:
                    changed[update.prediction_id] = merged
            if changed:
                cursor.executemany(_UPSERT, [_record_to_row(r) for r in changed.values()])
            return results

        with self._lock:
            return self._transaction(fold)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        with self._read_lock:
            cursor = self._reader.cursor()
            cursor.execute(sql, params)
            return cursor.fetchall()

    def get(self, prediction_id: str) -> Record | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM seismo_records WHERE prediction_id = %s", (prediction_id,))
        return _row_to_record(rows[0]) if rows else None

    def get_many(self, prediction_ids: list[str]) -> dict[str, Record]:
        found: dict[str, Record] = {}
        for start in range(0, len(prediction_ids), 1000):
            rows = self._read(f"SELECT {_COLUMNS} FROM seismo_records WHERE prediction_id = ANY(%s)", (prediction_ids[start:start + 1000],))
            found.update((row[0], _row_to_record(row)) for row in rows)
        return found

    def query(
        self, model: str | None = None, since: float | None = None, until: float | None = None, limit: int = 100,
        max_bytes: int | None = None, requests: bool = True,
    ) -> list[Record]:
        clauses, params = [], []
        for clause, value in (("model = %s", model), ("created_at >= %s", since), ("created_at < %s", until)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        # First the page's ids and payload sizes, then the payloads of those within the byte budget: a
        # listing over large records never loads more than it answers.
        request_size = "coalesce(octet_length(request), 0)" if requests else "0"
        sizes = self._read(f"SELECT prediction_id, {request_size} + coalesce(octet_length(response), 0) FROM seismo_records {where} "
                           "ORDER BY created_at, prediction_id LIMIT %s", (*params, limit))
        page, total = Page(), 0
        chosen: list[str] = []
        for pid, size in sizes:
            total += size
            if chosen and max_bytes is not None and total > max_bytes:
                page.truncated = True
                break
            chosen.append(pid)
        columns = _COLUMNS if requests else _COLUMNS.replace(" request,", " NULL AS request,", 1)
        rows = self._read(f"SELECT {columns} FROM seismo_records WHERE prediction_id = ANY(%s) ORDER BY created_at, prediction_id", (chosen,))
        page.extend(_row_to_record(row) for row in rows)
        return page

    def count(self, model: str | None = None) -> int:
        if model is None:
            return int(self._read("SELECT count(*) FROM seismo_records")[0][0])
        return int(self._read("SELECT count(*) FROM seismo_records WHERE model = %s", (model,))[0][0])

    def embedding_versions(self, model: str | None = None) -> list[dict]:
        filtered = "AND model = %s" if model is not None else ""
        rows = self._read("SELECT version, count(*), min(created_at), max(created_at) FROM (SELECT extensions::jsonb ->> 'embeddingversion' "
                          f"AS version, created_at FROM seismo_records WHERE true {filtered}) v WHERE version IS NOT NULL "
                          "GROUP BY version ORDER BY min(created_at)", (model,) if model is not None else ())
        return [{"version": v, "count": int(n), "first": first, "last": last} for v, n, first, last in rows]

    def add_drift_window(self, model: str, window: int, result: dict) -> Stored:
        now = time.time()
        doc = orjson.dumps(result).decode()

        def add(cursor: Any) -> Stored:
            cursor.execute("INSERT INTO seismo_drift_log (model, window_id, received_at, result) VALUES (%s, %s, %s, %s) "
                           "ON CONFLICT DO NOTHING", (model, window, now, doc))
            if cursor.rowcount == 1:
                return True
            cursor.execute("SELECT result FROM seismo_drift_log WHERE model = %s AND window_id = %s", (model, window))
            digest = result_digest(result)
            if result_digest(orjson.loads(cursor.fetchone()[0])) == digest:
                return False
            cursor.execute("INSERT INTO seismo_drift_conflicts (model, window_id, digest, received_at, result) VALUES (%s, %s, %s, %s, %s) "
                           "ON CONFLICT DO NOTHING", (model, window, digest, now, orjson.dumps({**result, "conflict": True}).decode()))
            return KEPT_ASIDE if cursor.rowcount == 1 else False

        with self._lock:
            return self._transaction(add)

    def drift_windows(self, model: str | None = None, limit: int = 1000) -> list[dict]:
        filtered = "WHERE model = %s" if model is not None else ""
        rows = self._read("SELECT result FROM (SELECT model, window_id, received_at, result FROM seismo_drift_log UNION ALL "
                          f"SELECT model, window_id, received_at, result FROM seismo_drift_conflicts) d {filtered} "
                          "ORDER BY received_at, window_id LIMIT %s", (*((model,) if model is not None else ()), limit))
        return [orjson.loads(row[0]) for row in rows]

    def add_dead_letter(self, letter: DeadLetter) -> bool:
        def add(cursor: Any) -> bool:
            cursor.execute(f"INSERT INTO seismo_dead_letters ({_DEAD_LETTER_COLUMNS}) VALUES ({', '.join(['%s'] * 8)}) "
                           "ON CONFLICT DO NOTHING", (letter.key, letter.event_id, letter.type, letter.model, letter.received_at,
                                                      letter.code, letter.destination, letter.event))
            return cursor.rowcount == 1

        with self._lock:
            return self._transaction(add)

    def dead_letters(self, model: str | None = None, limit: int = 100, after: tuple[float, str] | None = None) -> list[DeadLetter]:
        where: list[str] = ["true"]
        params: list[Any] = []
        if model is not None:
            where.append("model = %s")
            params.append(model)
        if after is not None:
            where.append("(received_at, key) > (%s, %s)")
            params += [after[0], after[1]]
        rows = self._read(f"SELECT {_DEAD_LETTER_COLUMNS} FROM seismo_dead_letters WHERE {' AND '.join(where)} "
                          "ORDER BY received_at, key LIMIT %s", (*params, limit))
        return [DeadLetter(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bytes(row[7])) for row in rows]

    def remove_dead_letter(self, key: str) -> bool:
        def remove(cursor: Any) -> bool:
            cursor.execute("DELETE FROM seismo_dead_letters WHERE key = %s", (key,))
            return cursor.rowcount == 1

        with self._lock:
            return self._transaction(remove)

    def expire(self, older_than: float) -> dict[str, int]:
        def delete(cursor: Any) -> dict[str, int]:
            cursor.execute("DELETE FROM seismo_records WHERE created_at < %s", (older_than,))
            records = cursor.rowcount
            cursor.execute("DELETE FROM seismo_drift_log WHERE received_at < %s", (older_than,))
            windows = cursor.rowcount
            cursor.execute("DELETE FROM seismo_drift_conflicts WHERE received_at < %s", (older_than,))
            windows += cursor.rowcount
            cursor.execute("DELETE FROM seismo_dead_letters WHERE received_at < %s", (older_than,))
            return {"records": records, "drift_windows": windows, "dead_letters": cursor.rowcount}

        with self._lock:
            return self._transaction(delete)

    def close(self) -> None:
        with self._lock, self._read_lock:
            for db in (self._reader, self._db):
                try:
                    db.close()
                except Exception:  # already gone with the server: nothing to release
                    pass

