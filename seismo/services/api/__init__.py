"""Typed models of each service's public HTTP API, and the operations `/openapi.json` documents.

One module per service (`logger`, `metrics`, `explainer`, `model`, `broker`, `detectors`), each with
an `OPERATIONS` list; this module holds what every service shares: the error shape and the health,
metrics and document routes. Field docstrings are the documented descriptions.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from seismo.services.openapi import Body, Operation


class ApiModel(BaseModel):
    """Base of every API model: field docstrings become the document's descriptions; fields not named
    here are allowed (answers may grow, and request bodies ignore what they do not use)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="allow")


# What the services parse (seismo/times.py), as patterns the documents can state.
TIME_PATTERN = (r"^([0-9]+(\.[0-9]+)?|[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
                r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]+)?)?)?([Zz]|[+-][0-9]{2}:[0-9]{2})?)$")
"""Epoch seconds or an ISO-8601 / RFC 3339 time (a time without a zone is UTC)."""
DURATION_PATTERN = (r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w)|P(?=[0-9T])([0-9]+(\.[0-9]+)?D)?"
                    r"(T(?=[0-9])([0-9]+(\.[0-9]+)?H)?([0-9]+(\.[0-9]+)?M)?([0-9]+(\.[0-9]+)?S)?)?)$")
"""A short duration (`30s`, `15m`, `1h`, `7d`) or an ISO-8601 one (`PT1H`)."""


PREDICTION_ID_PATTERN = r"^[!-.0-~]{1,256}$"
"""seismo.protocol.limits.is_prediction_id: 1-256 visible ASCII characters but '/'."""


def either(*patterns: str) -> str:
    return "^(" + "|".join(p[1:-1] for p in patterns) + ")$"


def documented_pattern(pattern: str) -> Any:
    """An optional string whose document states `pattern` (ECMA-262, as JSON Schema reads it; the routes
    parse these parameters themselves, so pydantic never compiles it: its engine has no look-ahead)."""
    return Field(None, json_schema_extra={"pattern": pattern})


class ErrorBody(ApiModel):
    """Every Seismo error: a 4xx for the client's mistakes, naming the problem."""

    error: str
    """What is wrong, in words."""


class Alive(ApiModel):
    status: Literal["alive"]


class Unhealthy(ApiModel):
    status: Literal["unhealthy"]
    stopped: list[str]
    """The background loops that stopped (sender, dispatcher, flusher, joiner...)."""
    error: str


class Ready(ApiModel):
    status: Literal["ready"]


def error_body(description: str) -> Body:
    return Body(ErrorBody, description)


NO_CONTENT: tuple[str, ...] = ()
BAD_REQUEST = error_body("the request is malformed; the message names the problem")
TOO_LARGE = error_body("the body is over the service's size limit")
UNAUTHORIZED = error_body("auth is on and no bearer token was sent")
FORBIDDEN = error_body("the bearer token is not one this service accepts")

# Every operation marked protected may answer these when auth is on.
AUTH_ERRORS = {401: UNAUTHORIZED, 403: FORBIDDEN}


def common_operations(service: str, auth: bool = True) -> list[Operation]:
    """`/metrics`, `/healthz`, `/readyz` and `/openapi.json`, which every service has (`auth`: whether the
    service takes tokens at all; the model server does not)."""
    return [
        Operation("GET", "/metrics", "Prometheus metrics (text exposition format)", tags=("operations",), protected=auth,
                  responses={200: Body(None, "the service's metrics", ("text/plain",))},
                  description="Open unless SEISMO_AUTH_METRICS=protected." if auth else ""),
        Operation("GET", "/healthz", "Liveness: 503 naming any background loop that stopped", tags=("operations",), protected=False,
                  responses={200: Body(Alive, "every loop that must run is running"),
                             503: Body(Unhealthy, "a background loop stopped: restart the process")}),
        Operation("GET", "/readyz", "Readiness", tags=("operations",), protected=False,
                  responses={200: Body(Ready, "ready to serve"), 503: error_body("starting or stopping")}),
        Operation("GET", "/openapi.json", f"This document: the {service} service's API", tags=("operations",), protected=False,
                  responses={200: Body(None, "an OpenAPI 3.1 document")}),
    ]
