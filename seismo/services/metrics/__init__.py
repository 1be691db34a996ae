"""`seismo serve metrics`: model performance from ground-truth feedback, realized and estimated.

Feedback arrives as `POST /feedback` (Seismo's body), `POST /api/v1.0/feedback` (Seldon's), or
`io.seldon.serving.feedback` CloudEvents from the broker at `POST /`. Feedback that carries the
response is scored at once; feedback that names a prediction id is joined with the stored record
(the logger's SQLite file or Elasticsearch), or waits as pending until the prediction is stored or
its TTL runs out. `GET /v1/performance` answers the current numbers; Prometheus gets counters and
windowed gauges. Background loops: join pending feedback, read new predictions for estimation,
refresh the gauges.
"""

from seismo.services.api.metrics import MAX_OUTCOME_IDS
from seismo.services.metrics.core import MetricsService
from seismo.services.metrics.settings import EXAMPLE_CONFIG, MetricsSettings
from seismo.services.queries import parse_since, parse_window
from seismo.store.base import StoreUnavailable

__all__ = ["EXAMPLE_CONFIG", "MAX_OUTCOME_IDS", "MetricsService", "MetricsSettings", "StoreUnavailable", "create_app", "parse_since",
           "parse_window"]


def __getattr__(name: str):
    """`create_app` on first use: importing the core and the settings does not load the web framework."""
    if name in ('create_app',):
        from seismo.services.metrics import http

        return getattr(http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
