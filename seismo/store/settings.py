"""Where the record store is: the settings the logger (which writes it) and the metrics server (which
reads it to join feedback) share, each under its own env prefix."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from seismo.store import RecordStore, open_store
from seismo.topology import data_dir


class StoreSettings(BaseSettings):
    sqlite_path: Path = Field(default_factory=lambda: data_dir() / "records.db")
    """SQLite record store (used unless a PostgreSQL or Elasticsearch URL is set)."""
    postgres_url: str | None = None
    """PostgreSQL, e.g. postgresql://seismo:secret@db:5432/seismo?sslmode=require; when set, records are there
    (every replica shares them). Needs the `postgres` extra."""
    elasticsearch_url: str | None = None
    """Elasticsearch endpoint, e.g. https://es:9200; when set, records are there instead of SQLite."""
    elasticsearch_index_prefix: str = "inference-log"
    """Index prefix; Seldon's request logger uses inference-log."""
    elasticsearch_username: str | None = None
    """Basic-auth user (or a file `username` in the secret dir)."""
    elasticsearch_password: str | None = None
    """Basic-auth password (or a file `password` in the secret dir)."""
    elasticsearch_api_key: str | None = None
    """API key, preferred over basic auth (or a file `api_key` in the secret dir)."""
    elasticsearch_secret_dir: str | None = None
    """A mounted Secret with username, password, api_key and ca.crt files."""
    elasticsearch_verify_certs: bool = True
    """TLS verification; on by default."""

    def open_store(self) -> RecordStore:
        if self.postgres_url:
            return open_store(self.sqlite_path, postgres_url=self.postgres_url)
        if not self.elasticsearch_url:
            return open_store(self.sqlite_path)
        return open_store(self.sqlite_path, self.elasticsearch_url, self.elasticsearch_secret_dir,
                          index_prefix=self.elasticsearch_index_prefix, username=self.elasticsearch_username,
                          password=self.elasticsearch_password, api_key=self.elasticsearch_api_key,
                          verify_certs=self.elasticsearch_verify_certs)

    def open_existing_store(self) -> RecordStore:
        """The store as the stack wrote it, for the commands that read it (`replay`, `fit --from-store`):
        a SQLite file that does not exist is an error naming it, never an empty store made on the spot."""
        if not self.postgres_url and not self.elasticsearch_url and not Path(self.sqlite_path).is_file():
            raise FileNotFoundError(
                f"no record store at {self.sqlite_path}: `seismo up` keeps it in its data directory (--data-dir, default .seismo/ "
                "where it was started); name that directory with --data-dir DIR, the file with --sqlite FILE, or a "
                "database with --store postgresql://... or --store https://... (Elasticsearch)")
        return self.open_store()

    def describe_store(self) -> str:
        if self.postgres_url:
            from seismo.sql import redacted

            return f"postgresql {redacted(self.postgres_url)}"
        return f"elasticsearch {self.elasticsearch_url}" if self.elasticsearch_url else f"sqlite {self.sqlite_path}"


class RecordStoreSettings(StoreSettings):
    """The record store as the logger writes it (`SEISMO_LOGGER_SQLITE_PATH`, `SEISMO_LOGGER_ELASTICSEARCH_*`):
    what the tools (`seismo fit --from-store`, `seismo replay`) read, without building a service's settings."""

    model_config = SettingsConfigDict(env_prefix="SEISMO_LOGGER_")

    @classmethod
    def named(cls, store: str | None = None, sqlite: Path | None = None) -> RecordStoreSettings:
        """`store`: a SQLite file, a PostgreSQL URL (postgresql://) or an Elasticsearch URL (http:// or https://);
        else `sqlite`; else the logger's settings from the environment."""
        if store and store.startswith(("postgresql://", "postgres://")):
            return cls(postgres_url=store, elasticsearch_url=None)
        if store and store.startswith(("http://", "https://")):
            return cls(elasticsearch_url=store, postgres_url=None)
        if store:
            return cls(sqlite_path=Path(store), elasticsearch_url=None, postgres_url=None)
        return cls() if sqlite is None else cls(sqlite_path=sqlite)
