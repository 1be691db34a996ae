"""`seismo serve model`: its core (core.py, where what it does is told), routes (http.py) and settings (settings.py)."""

from seismo.services.base import create_app_on_first_use
from seismo.services.model.core import ModelService
from seismo.services.model.settings import Framework, LogMode, ModelSettings, OnClientError, Overflow
from seismo.serving.dataplane import EVENT_OVERHEAD_BYTES, TRAFFIC_HEADER, Outcome, TooManyInstances, check_event_size, encoded_event_bytes

__all__ = ["EVENT_OVERHEAD_BYTES", "TRAFFIC_HEADER", "Framework", "LogMode", "ModelService", "ModelSettings", "OnClientError", "Outcome",
           "Overflow", "TooManyInstances", "check_event_size", "create_app", "encoded_event_bytes"]

__getattr__ = create_app_on_first_use(__name__)
