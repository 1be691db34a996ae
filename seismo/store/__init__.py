"""Record store: SQLite by default, Elasticsearch when a URL is configured."""

from __future__ import annotations

from pathlib import Path

from seismo.store.base import Record, RecordStore, RecordUpdate, merge, record_to_json
from seismo.store.sqlite import SQLiteRecordStore

__all__ = ["Record", "RecordStore", "RecordUpdate", "SQLiteRecordStore", "merge", "open_store", "record_to_json"]


def open_store(
    sqlite_path: str | Path,
    elasticsearch_url: str | None = None,
    elasticsearch_secret_dir: str | None = None,
    **elasticsearch_options,
) -> RecordStore:
    if elasticsearch_url:
        from seismo.store.elasticsearch import ElasticsearchConfig, ElasticsearchRecordStore

        config = ElasticsearchConfig.with_secret_dir(elasticsearch_url, elasticsearch_secret_dir, **elasticsearch_options)
        return ElasticsearchRecordStore(config)
    return SQLiteRecordStore(sqlite_path)
