"""Ground-truth feedback bodies -> one typed Feedback. Nothing here knows about HTTP or metrics.

Two body shapes arrive, and both share `request`, `response` and `truth`:
- Seismo's `POST /feedback`: `{"prediction_id"?, "model"?, "request"?, "response"?, "truth", "cohort"?,
  "tags"?, "holdout"?}`;
- Seldon's `POST /api/v1.0/feedback` and `io.seldon.serving.feedback` events: `{"request"?, "response"?,
  "reward"?, "truth"}`, each message in Seldon, V1 or V2 format; the prediction is named by the
  response's `meta.puid` (or, for events, the `requestid` extension).

`truth` may be a bare number, a list (one value per instance, or one one-hot row), or a protocol
message. Whether a list is several instances or one one-hot row is settled later, against the
prediction it is scored with (`seismo.performance.scoring`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seismo.protocol.limits import check_prediction_id
from seismo.protocol.payloads import PayloadError, instances_of, protocol_of

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class FeedbackError(ValueError):
    """The feedback body is malformed; the message names the field."""


@dataclass(frozen=True)
class Feedback:
    truth: np.ndarray  # as sent: 0-d, 1-d or 2-d
    prediction_id: str | None = None
    model: str | None = None
    response: Any = None  # the model's response document (any protocol) when sent along
    request: Any = None
    cohort: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)
    holdout: bool | None = None
    reward: float | None = None

    @property
    def self_contained(self) -> bool:
        """Carries the prediction itself, so it can be scored without the store."""
        return self.response is not None


def _has_payload(doc: Any) -> bool:
    return protocol_of(doc) != "unknown"


def truth_array(value: Any) -> np.ndarray:
    """The truth as a numeric array: bare values and lists as they are, messages by their protocol."""
    if (type(value) is float and math.isfinite(value)) or (type(value) is int and _INT64_MIN <= value <= _INT64_MAX):
        return np.asarray(value)  # the common case, a bare label: none of the checks below can fail
    if isinstance(value, dict):
        try:
            array = instances_of(value)
        except PayloadError as exc:
            raise FeedbackError(f"'truth': {exc}") from None
    elif isinstance(value, (int, float, bool, list)) and not (isinstance(value, list) and not value):
        try:
            array = np.asarray(value)
        except ValueError:
            raise FeedbackError("'truth' is not a rectangular array") from None
    else:
        raise FeedbackError("'truth' must be a number, a non-empty list, or a V1, V2 or Seldon message")
    if array.dtype == bool:
        array = array.astype(np.int64)
    if array.dtype.kind not in "iuf":
        raise FeedbackError(f"'truth' must be numeric, got {array.dtype}")
    if array.ndim > 2:
        raise FeedbackError(f"'truth' has {array.ndim} dimensions; at most 2 (instances x classes)")
    if not np.isfinite(array).all():
        raise FeedbackError("'truth' contains NaN or infinity")
    return array


def _puid(response: Any) -> str | None:
    if isinstance(response, dict):
        meta = response.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("puid"), str) and meta["puid"]:
            return meta["puid"]
        if isinstance(response.get("id"), str) and response["id"] and "outputs" in response:
            return response["id"]  # a V2 response's id is the prediction id Seismo's model server assigned
    return None


def _request_path_model(response: Any) -> str | None:
    """The model a Seldon response came from: its `meta.requestPath` (node -> image) when it names one
    node (SeldonClient.feedback sends the response as it got it, with no `model`)."""
    meta = response.get("meta") if isinstance(response, dict) else None
    path = meta.get("requestPath") if isinstance(meta, dict) else None
    if isinstance(path, dict) and len(path) == 1:
        (name,) = path
        return name if isinstance(name, str) and name else None
    return None


def parse_feedback(doc: Any, prediction_id: str | None = None) -> Feedback:
    """One Feedback from either body shape; `prediction_id` (an event's requestid) wins over the body's."""
    if not isinstance(doc, dict):
        raise FeedbackError("feedback must be a JSON object with 'truth'")
    if "truth" not in doc or doc["truth"] is None:
        raise FeedbackError("feedback needs 'truth' (the ground truth for the prediction)")
    truth = truth_array(doc["truth"])
    response = doc.get("response")
    if response is not None and not isinstance(response, dict):
        raise FeedbackError("'response' must be the model's response as a JSON object")
    request = doc.get("request")
    if request is not None and not isinstance(request, dict):
        raise FeedbackError("'request' must be the model's request as a JSON object")
    body_id = doc.get("prediction_id")
    if body_id is not None and (not isinstance(body_id, str) or not body_id):
        raise FeedbackError("'prediction_id' must be a non-empty string")
    pid = prediction_id or body_id or _puid(response)
    if pid is not None:
        try:  # an id the model server and the logger refuse can never be stored, so it could never join
            check_prediction_id(pid, "'prediction_id'")
        except PayloadError as exc:
            raise FeedbackError(str(exc)) from None
    if response is not None and not _has_payload(response):
        if pid is None:
            raise FeedbackError("'response' carries no prediction (no data, predictions or outputs) and names no puid")
        response = None  # only {"meta": {"puid": ...}}: join by id
    if response is None and pid is None:
        raise FeedbackError("feedback must name a 'prediction_id' (or Seldon response.meta.puid) or carry the 'response'")
    for name in ("model", "cohort"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise FeedbackError(f"'{name}' must be a string")
    tags = doc.get("tags")
    tags = {} if tags is None else tags
    if not isinstance(tags, dict):
        raise FeedbackError("'tags' must be an object")
    reward = doc.get("reward")
    if reward is not None and (isinstance(reward, bool) or not isinstance(reward, (int, float))):
        raise FeedbackError("'reward' must be a number")
    holdout = doc.get("holdout")
    if holdout is not None and not isinstance(holdout, bool):
        raise FeedbackError("'holdout' must be true or false")
    model = doc.get("model") or _request_path_model(doc.get("response"))
    return Feedback(truth=truth, prediction_id=pid, model=model, response=response, request=request,
                    cohort=doc.get("cohort") or None, tags=tags, holdout=holdout,
                    reward=None if reward is None else float(reward))
