"""`seismo serve broker`: a durable CloudEvents broker with Knative Broker semantics.

Ingress (`POST /` or `POST /{namespace}/{broker}`) answers 202 once the event and its pending
deliveries are committed to the journal; 400 names what is wrong with an invalid event; 413 when it is
over the size limit. Triggers are read from a YAML file (see seismo/broker/triggers.py).
"""

from seismo.services.broker.core import Broker
from seismo.services.broker.settings import DEFAULT_TRIGGERS, BrokerSettings, Synchronous

__all__ = ["DEFAULT_TRIGGERS", "Broker", "BrokerSettings", "Synchronous", "create_app"]


def __getattr__(name: str):
    """`create_app` on first use: importing the core and the settings does not load the web framework."""
    if name in ('create_app',):
        from seismo.services.broker import http

        return getattr(http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
