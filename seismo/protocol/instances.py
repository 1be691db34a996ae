"""An inference-request event's instances, checked the way every detector and tool reads them: the
drift and outlier services, `seismo replay` and `seismo fit --from-store`."""

from __future__ import annotations

import numpy as np

from seismo.protocol.binary import load_document
from seismo.protocol.cloudevents import CloudEvent, CloudEventError
from seismo.protocol.payloads import PayloadError, instances_of
from seismo.protocol.types import EventKind, kind_of, model_of


class Rejection(Exception):
    """Why an event cannot be used: a reason (a metric label), a message, the model it named, the HTTP status."""

    def __init__(self, reason: str, message: str, model: str = "unknown", status: int = 400):
        super().__init__(message)
        self.reason, self.model, self.status = reason, model, status


def instances_of_event(event: CloudEvent, served_model: str | None, shape: tuple[int, ...] | None) -> tuple[CloudEvent, np.ndarray]:
    """An inference-request event's instances, or a Rejection saying why not."""
    model = model_of(event)
    if kind_of(event.type) is not EventKind.REQUEST:
        raise Rejection("wrong_type", f"event type {event.type!r} is not an inference request", model)
    if served_model and model != served_model:
        raise Rejection("unknown_model", f"no detector for model {model!r} here (this one watches {served_model!r})", model)
    try:
        array = instances_of(load_document(event.data, what="event data"))  # JSON, or OIP binary tensors
    except (PayloadError, CloudEventError) as exc:
        raise Rejection("bad_payload", str(exc), model) from None
    if array.dtype.kind not in "biuf":
        raise Rejection("bad_payload", f"instances must be numeric, got {array.dtype}", model)
    if shape is not None and tuple(array.shape[1:]) != tuple(shape):
        raise Rejection("wrong_shape", f"instances have shape {list(array.shape[1:])}; the detector's reference has {list(shape)}", model)
    if not np.isfinite(array).all():
        raise Rejection("bad_payload", "instances contain NaN or infinity", model)
    return event, array.astype(np.float32, copy=False)
