"""`seismo serve outlier`: scores every instance of every inference request it is sent, and checks
every response for adversarial inputs.

The answer to each delivered request event is an `org.kubeflow.serving.inference.outlier` reply
(same id and extensions), which the broker publishes and the logger folds into the prediction's
record. Concurrent events are scored in one batch.

Response events carry the model's embedding (seismo.embeddings); with an adversarial detector
configured (seismo.detect.adversarial, on by default for the example) each is answered with an
`io.seismo.inference.adversarial` reply the logger keeps as the record's `adversarial` annotation.
Responses without an embedding (an error response, a model that logs none) are skipped and counted.
"""

from seismo.services.outlier.core import OutlierService
from seismo.services.outlier.settings import OutlierSettings

__all__ = ["OutlierService", "OutlierSettings", "create_app"]


def __getattr__(name: str):
    """`create_app` on first use: importing the core and the settings does not load the web framework."""
    if name in ('create_app',):
        from seismo.services.outlier import http

        return getattr(http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
