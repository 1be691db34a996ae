"""`seismo serve logger`: stores every logged event as one record per prediction.

`POST /` takes the CloudEvents the broker delivers (request, response, detector replies, feedback;
KServe and Seldon types) and folds each into its prediction's record. The answer is 200 only once the
record is committed, so the broker retries anything not stored. Reads: `GET /v1/records/{id}` and
`GET /v1/records?model=&since=&until=&limit=`.
"""

from seismo.services.logger.core import RecordLogger, drift_window_of, update_from_event
from seismo.services.logger.settings import MAX_QUERY_LIMIT, LoggerSettings
from seismo.services.queries import parse_limit
from seismo.store.base import StoreUnavailable

__all__ = ["MAX_QUERY_LIMIT", "LoggerSettings", "RecordLogger", "StoreUnavailable", "create_app", "drift_window_of", "parse_limit",
           "update_from_event"]


def __getattr__(name: str):
    """`create_app` on first use: importing the core and the settings does not load the web framework."""
    if name in ('create_app',):
        from seismo.services.logger import http

        return getattr(http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
