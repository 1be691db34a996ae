"""Record store: SQLite by default; PostgreSQL or Elasticsearch when a URL is configured."""

from __future__ import annotations

from pathlib import Path

from seismo.store.base import Record, RecordStore, RecordUpdate, merge, record_to_json
from seismo.store.sqlite import SQLiteRecordStore

__all__ = ["Record", "RecordStore", "RecordUpdate", "SQLiteRecordStore", "merge", "open_store", "record_to_json"]


def open_store(
    sqlite_path: str | Path,
    elasticsearch_url: str | None = None,
    elasticsearch_secret_dir: str | None = None,
    postgres_url: str | None = None,
    **elasticsearch_options,
) -> RecordStore:
    if postgres_url:
        from seismo.store.postgres import PostgresRecordStore

        return PostgresRecordStore(postgres_url)
    if elasticsearch_url:
        from seismo.store.elasticsearch import ElasticsearchConfig, ElasticsearchRecordStore

        config = ElasticsearchConfig.with_secret_dir(elasticsearch_url, elasticsearch_secret_dir, **elasticsearch_options)
        return ElasticsearchRecordStore(config)
    return SQLiteRecordStore(sqlite_path)
