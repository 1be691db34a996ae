"""`seismo serve broker`: its core (core.py, where what it does is told), routes (http.py) and settings (settings.py)."""

from seismo.services.base import create_app_on_first_use
from seismo.services.broker.core import Broker
from seismo.services.broker.settings import DEFAULT_TRIGGERS, BrokerSettings, Synchronous

__all__ = ["DEFAULT_TRIGGERS", "Broker", "BrokerSettings", "Synchronous", "create_app"]

__getattr__ = create_app_on_first_use(__name__)
