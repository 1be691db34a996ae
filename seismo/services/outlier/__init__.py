"""`seismo serve outlier`: its core (core.py, where what it does is told), routes (http.py) and settings (settings.py)."""

from seismo.services.base import create_app_on_first_use
from seismo.services.outlier.core import OutlierService
from seismo.services.outlier.settings import OutlierSettings

__all__ = ["OutlierService", "OutlierSettings", "create_app"]

__getattr__ = create_app_on_first_use(__name__)
