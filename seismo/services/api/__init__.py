"""Typed models of each service's public HTTP API, and the operations `/openapi.json` documents.

One module per service (`logger`, `metrics`, `explainer`, `model`, `broker`, `detectors`), each with
an `OPERATIONS` list; this module holds what every service shares: the error shape and the health,
metrics and document routes. Field docstrings are the documented descriptions.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo

from seismo.services import queries
from seismo.services.openapi import Body, Operation

Q = TypeVar("Q", bound=BaseModel)


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
    """An optional string whose document states `pattern` (ECMA-262, as JSON Schema reads it). Pydantic
    never compiles it (its engine has no look-ahead): the field's type checks the value with the same
    parser the service uses (`Time`, `Window`)."""
    return Field(None, json_schema_extra={"pattern": pattern})


# Query parameter types: each checks a value with the parser of seismo.services.queries, so one
# parameter means the same on every service, and the message names the parameter.
def _time(value: str | None, info: ValidationInfo) -> str | None:
    queries.parse_since(value, info.field_name or "since")
    return value


def _window(value: str | None) -> str | None:
    queries.parse_window(value, queries.Lookback())
    return value


def _limit(maximum: int) -> BeforeValidator:
    return BeforeValidator(lambda value: queries.parse_limit(str(value), maximum))


Time = Annotated[str | None, AfterValidator(_time)]
"""`since`/`until`: an RFC 3339 time, epoch seconds, or a duration meaning that long ago."""
Window = Annotated[str | None, AfterValidator(_window)]
"""A duration, a count of newest instances, or `all`."""
Limit1000 = Annotated[int, _limit(1000)]
Limit5000 = Annotated[int, _limit(5000)]
Limit10000 = Annotated[int, _limit(10000)]


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = 6
_SHOWN.maxlevel = 2


def shown(value: Any) -> str:
    """A client's value as an error message may echo it: bounded in size and depth, whatever was sent."""
    return _SHOWN.repr(value)


def parse_query(model: type[Q], params: Mapping[str, Any]) -> Q:
    """A request's query parameters as `model`, or ValueError (a 400) naming the first bad parameter."""
    return parse_body(model, dict(params))


def parse_body(model: type[Q], doc: Any, context: dict[str, Any] | None = None) -> Q:
    """A JSON document (a body, or query parameters as an object) as `model`, or ValueError (a 400)
    naming the first bad field. `context`: the service's limits, for validators that read them."""
    try:
        return model.model_validate(doc, context=context)
    except ValidationError as exc:
        raise ValueError(refusal(exc)) from None


def refusal(exc: ValidationError) -> str:
    """What a 400 says of a refused value: our validators' own message where one refused (it names the
    field), else pydantic's for the first bad field, with the value echoed bounded."""
    first = exc.errors(include_url=False)[0]
    if first["type"] == "value_error":
        return str(first["ctx"]["error"])
    name = ".".join(str(part) for part in first["loc"])
    got = f"; got {shown(first['input'])}" if first["type"] != "missing" else ""
    return f"'{name}': {first['msg']}{got}" if name else f"{first['msg']}{got}"


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
