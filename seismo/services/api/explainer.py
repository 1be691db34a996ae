"""The explainer's public API: KServe's explain verb."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from seismo.services.api import AUTH_ERRORS, BAD_REQUEST, TOO_LARGE, ApiModel, common_operations, error_body
from seismo.services.openapi import Body, Operation


class ExplainParameters(ApiModel):
    method: Literal["anchors", "kernel_shap"] = "anchors"
    threshold: float | None = Field(None, gt=0, le=1)
    """Anchors: the precision an anchor must reach (default 0.95)."""
    max_model_calls: int | None = Field(None, ge=1)
    max_seconds: float | None = Field(None, gt=0)
    seed: int | None = None
    nsamples: int | None = Field(None, ge=1, le=100_000)
    """KernelSHAP: coalitions to sample (default shap's 2 x features + 2048), cut to what the call budget allows."""


class ExplainRequest(ApiModel):
    """One instance, as a V1 body (`instances`) or a V2 body (`inputs`)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["instances"]}, {"required": ["inputs"]}]})

    instances: list[Any] | None = Field(None, min_length=1, max_length=1)
    inputs: list[dict[str, Any]] | None = None
    parameters: ExplainParameters | None = None


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
