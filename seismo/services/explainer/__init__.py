"""`seismo serve explainer`: black-box explanations of a deployed model's predictions.

`POST /v1/models/{m}:explain` takes the same V1 (`instances`) or V2 (`inputs`) body as a prediction,
with one instance, and optional `parameters` (`method`: anchors (default) or kernel_shap; `threshold`,
`max_model_calls`, `max_seconds`, `seed`). The explainer never loads the model: it calls the model
server over HTTP with batches of perturbed instances, through one pooled client. Each explanation runs
on a worker thread (the search is sequential CPU work); its model calls go back to the event loop's
client.
"""

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


def __getattr__(name: str):
    """`create_app` on first use: importing the core and the settings does not load the web framework."""
    if name in ('create_app',):
        from seismo.services.explainer import http

        return getattr(http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
