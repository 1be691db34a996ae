"""The explainer's public API: KServe's explain verb."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from seismo.explain.methods import METHODS
from seismo.services.api import AUTH_ERRORS, BAD_REQUEST, TOO_LARGE, ApiModel, common_operations, error_body, shown
from seismo.services.openapi import Body, Operation


def _method(value: Any) -> Any:
    if value not in METHODS:
        raise ValueError(f"parameter 'method' must be one of {', '.join(METHODS)}, got {shown(value)}")
    return value


def _number(name: str, low: float, high: float = math.inf, whole: bool = False) -> BeforeValidator:
    """A JSON number (a whole one when `whole`; never true or false) from `low` to `high`, or the 400 naming it."""

    def check(value: Any) -> Any:
        kinds = (int,) if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
            raise ValueError(f"parameter '{name}' must be a {'whole ' if whole else ''}number from {low:g} to {high:g}, got {shown(value)}")
        return value

    return BeforeValidator(check)


class ExplainParameters(ApiModel):
    """What an explain request may ask; the explainer parses `parameters` with this model (the service's
    own limits, SEISMO_EXPLAINER_MAX_MODEL_CALLS and _MAX_SECONDS, bound the budget further)."""

    method: Annotated[Literal["anchors", "kernel_shap"], BeforeValidator(_method)] = "anchors"
    threshold: Annotated[float | None, _number("threshold", 0.5, 1.0)] = Field(None, ge=0.5, le=1)
    """Anchors: the precision an anchor must reach (default 0.95)."""
    max_model_calls: Annotated[float | None, _number("max_model_calls", 1)] = Field(None, ge=1)
    max_seconds: Annotated[float | None, _number("max_seconds", 0.01)] = Field(None, ge=0.01)
    seed: Annotated[float | None, _number("seed", 0, 2**31 - 1)] = Field(None, ge=0, le=2**31 - 1)
    nsamples: Annotated[int | None, _number("nsamples", 1, 100_000, whole=True)] = Field(None, ge=1, le=100_000)
    """KernelSHAP: coalitions to sample (default shap's 2 x features + 2048), cut to what the call budget allows."""


class ExplainRequest(ApiModel):
    """One instance, as a V1 body (`instances`) or a V2 body (`inputs`). The explainer parses its body with
    this model; the instance's tensor is decoded against the model it explains (its shape, finite values)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["instances"]}, {"required": ["inputs"]}]})

    instances: list[Any] | None = Field(None, min_length=1, max_length=1)
    inputs: list[dict[str, Any]] | None = None
    parameters: ExplainParameters | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_instance(cls, value: Any) -> Any:
        # The messages the explainer has always given, before pydantic's own for each field.
        if not isinstance(value, dict) or ("instances" not in value and "inputs" not in value):
            raise ValueError("explain body must be a JSON object with 'instances' (V1) or 'inputs' (V2)")
        if value.get("parameters") is not None and not isinstance(value["parameters"], dict):
            raise ValueError("'parameters' must be an object")
        instances = value.get("instances")
        if "inputs" not in value and isinstance(instances, list) and len(instances) != 1:
            raise ValueError(f"explain one instance at a time; got {len(instances)}")
        return value

    def document(self) -> dict[str, Any]:
        """The body as the V1/V2 decoders read it."""
        return self.model_dump(exclude={"parameters"}, exclude_none=True)

    def asked(self) -> ExplainParameters:
        return self.parameters or ExplainParameters.model_validate({})


class Explanation(ApiModel):
    """Anchors: `anchor` (tabular: predicates such as `color_intensity <= 3.27`; image: `{"segments", "mask"}`),
    `precision`, `coverage`, `anchor_found`, `examples`; KernelSHAP: `shap_values`, `expected_value`,
    `feature_names`, `nsamples`."""

    model: str
    method: str
    prediction: int | float | None
    model_calls: int
    model_requests: int
    budget_exhausted: bool
    reason: str | None
    seconds: float
    precision: float | None = None
    coverage: float | None = None
    anchor_found: bool | None = None


OPERATIONS = [
    Operation("POST", "/v1/models/{model_name}:explain", "Explain one prediction (anchors or KernelSHAP)",
              path_params={"model_name": "the model to explain"}, body=Body(ExplainRequest),
              responses={200: Body(Explanation), 400: BAD_REQUEST, 404: error_body("unknown model"), 413: TOO_LARGE,
                         429: error_body("busy: too many explanations queued; retry after Retry-After seconds"),
                         502: error_body("the model server answered with an error"),
                         503: error_body("the model server is unreachable"), **AUTH_ERRORS}),
    *common_operations("explainer"),
]
