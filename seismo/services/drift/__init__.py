"""`seismo serve drift`: its core (core.py, where what it does is told), routes (http.py) and settings (settings.py)."""

from seismo.detect.windows import WindowResult
from seismo.services.base import create_app_on_first_use
from seismo.services.drift.core import DriftService, SinkRefused, WindowWork
from seismo.services.drift.settings import DriftSettings, WindowMode

__all__ = ["DriftService", "DriftSettings", "SinkRefused", "WindowMode", "WindowResult", "WindowWork", "create_app"]

__getattr__ = create_app_on_first_use(__name__)
