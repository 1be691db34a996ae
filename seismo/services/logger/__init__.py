"""`seismo serve logger`: its core (core.py, where what it does is told), routes (http.py) and settings (settings.py)."""

from seismo.services.base import create_app_on_first_use
from seismo.services.logger.core import RecordLogger, drift_window_of, update_from_event
from seismo.services.logger.settings import MAX_QUERY_LIMIT, LoggerSettings
from seismo.services.queries import parse_limit
from seismo.store.base import StoreUnavailable

__all__ = ["MAX_QUERY_LIMIT", "LoggerSettings", "RecordLogger", "StoreUnavailable", "create_app", "drift_window_of", "parse_limit",
           "update_from_event"]

__getattr__ = create_app_on_first_use(__name__)
