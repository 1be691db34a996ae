"""`seismo serve metrics`: its core (core.py, where what it does is told), routes (http.py) and settings (settings.py)."""

from seismo.services.api.metrics import MAX_OUTCOME_IDS
from seismo.services.base import create_app_on_first_use
from seismo.services.metrics.core import MetricsService
from seismo.services.metrics.settings import EXAMPLE_CONFIG, MetricsSettings
from seismo.services.queries import parse_since, parse_window
from seismo.store.base import StoreUnavailable

__all__ = ["EXAMPLE_CONFIG", "MAX_OUTCOME_IDS", "MetricsService", "MetricsSettings", "StoreUnavailable", "create_app", "parse_since",
           "parse_window"]

__getattr__ = create_app_on_first_use(__name__)
