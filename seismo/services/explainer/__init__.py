"""`seismo serve explainer`: its core (core.py, where what it does is told), routes (http.py) and settings (settings.py)."""

from seismo.services.base import create_app_on_first_use
from seismo.services.explainer.core import (
    ExplainerBusy,
    ExplainerService,
    ExplainRequestError,
    ModelServerError,
    UnknownModel,
    instance_of,
)
from seismo.services.explainer.settings import EXAMPLE_CONFIG, ExplainerSettings

__all__ = ["EXAMPLE_CONFIG", "ExplainRequestError", "ExplainerBusy", "ExplainerService", "ExplainerSettings", "ModelServerError",
           "UnknownModel", "create_app", "instance_of"]

__getattr__ = create_app_on_first_use(__name__)
