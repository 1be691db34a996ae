"""The metrics server's public API: ground-truth feedback in, performance out."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    RootModel,
    Tag,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    model_validator,
)

from seismo.performance.config import check_cohort_name
from seismo.protocol import feedback as domain
from seismo.protocol.limits import BodyTooLarge, is_prediction_id
from seismo.protocol.types import SELDON_FEEDBACK
from seismo.services.api import (
    AUTH_ERRORS,
    BAD_REQUEST,
    DURATION_PATTERN,
    PREDICTION_ID_PATTERN,
    TIME_PATTERN,
    TOO_LARGE,
    ApiModel,
    Time,
    Window,
    common_operations,
    documented_pattern,
    either,
    error_body,
    refusal,
)
from seismo.services.api.events import event_body, event_headers
from seismo.services.openapi import Body, Operation

# What the parser takes as truth, as far as JSON Schema can say it: a number, a list of at most two levels
# of numbers (rectangular: JSON Schema cannot state that), or a message of a protocol whose first tensor is
# the truth (V1 `predictions`/`instances`, V2 `outputs`/`inputs`, Seldon `data`/`jsonData`).
_ROW = {"type": "array", "minItems": 1, "items": {"type": "number"}}
TRUTH_SCHEMA = {"anyOf": [
    {"type": "number"},
    {"type": "array", "minItems": 1, "items": {"anyOf": [{"type": "number"}, _ROW]}},
    {"type": "object", "anyOf": [{"required": [key], "properties": {key: {"type": "array", "minItems": 1}}}
                                 for key in ("predictions", "instances", "outputs", "inputs")]
     + [{"required": ["data"], "properties": {"data": {"type": "object", "anyOf": [{"required": ["ndarray"]}, {"required": ["tensor"]}]}}},
        {"required": ["jsonData"], "properties": {"jsonData": {"anyOf": [{"type": "number"}, _ROW]}}}]},
]}
Truth = Annotated[Any, WithJsonSchema(TRUTH_SCHEMA)]
# A response given with feedback carries the prediction (one protocol's message) or names it (`meta.puid`).
RESPONSE_SCHEMA = {"type": "object", "anyOf": [{"required": [key]} for key in ("predictions", "outputs", "data", "jsonData", "strData", "binData")]
                   + [{"required": ["meta"], "properties": {"meta": {"type": "object", "required": ["puid"],
                                                                     "properties": {"puid": {"type": "string", "pattern": PREDICTION_ID_PATTERN}}}}}]}
Response = Annotated[dict[str, Any] | None, WithJsonSchema(RESPONSE_SCHEMA)]


class Feedback(ApiModel):
    """Ground truth for a prediction: named by id (joined from the store, late arrivals welcome) or carrying
    the prediction's `response` itself. Seldon's body (`request`, `response`, `reward`, `truth`, each in
    Seldon, V1 or V2 format, the prediction named by `response.meta.puid`) is the same shape."""

    # The prediction is named, or carried: feedback with only `truth` cannot be scored.
    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["prediction_id"]}, {"required": ["response"]}]})

    truth: Truth
    """A number, a list (one value per instance, or one one-hot row), or a V1, V2 or Seldon message."""
    prediction_id: str | None = Field(None, min_length=1, json_schema_extra={"pattern": PREDICTION_ID_PATTERN})
    """The prediction's id (`X-Prediction-Id` / the V2 `id` the model server answered)."""
    model: str | None = None
    request: dict[str, Any] | None = None
    response: Response = None
    """The model's response, for feedback scored without the store (or Seldon's `{"meta": {"puid": ...}}`)."""
    cohort: str | None = None
    """Also from the `X-Seismo-Cohort` header."""
    tags: dict[str, Any] | None = None
    holdout: bool | None = None
    """Whether the prediction was in the holdout group (model not used); also `X-Seismo-Holdout`."""
    reward: float | None = None
    """Seldon's reward, counted."""

    _parsed: domain.Feedback = PrivateAttr()

    @model_validator(mode="wrap")
    @classmethod
    def _by_the_feedback_parser(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Feedback:
        # What JSON Schema cannot state (a rectangular numeric truth, a protocol message's first tensor,
        # the id's characters, Seldon's `meta.puid`) is seismo.protocol.feedback's, which also reads
        # feedback events: its message first, then the fields' own checks.
        parsed = domain.parse_feedback(value)
        model = handler(value)
        model._parsed = parsed
        return model

    @property
    def parsed(self) -> domain.Feedback:
        """The feedback as the metrics server scores it (truth as an array, the prediction id resolved)."""
        return self._parsed


class Refused:
    """An item of a feedback array the parser refused: answered on its own, the others still taken."""

    def __init__(self, message: str):
        self.message = message


def _refusal_kept(value: Any, handler: ValidatorFunctionWrapHandler) -> Feedback | Refused:
    try:
        return handler(value)
    except ValidationError as exc:
        return Refused(refusal(exc))


FeedbackItem = Annotated[Feedback, WrapValidator(_refusal_kept)]


class FeedbackHeaders(ApiModel):
    x_seismo_cohort: str | None = Field(None, alias="x-seismo-cohort")
    """The cohort when the body names none."""
    x_seismo_holdout: str | None = Field(None, alias="x-seismo-holdout")
    """`true` when the prediction was in the holdout group and the body does not say."""


class FeedbackOutcome(ApiModel):
    status: Literal["scored", "pending"]
    """`scored` (joined and counted) or `pending` (the prediction is not stored yet; joined when it is)."""
    prediction_id: str | None = None
    model: str | None = None
    instances: int
    """Instances scored."""


class FeedbackArrayOutcome(ApiModel):
    """The answer to a JSON array of feedback: counts, and one outcome per item in the array's order."""

    scored: int
    pending: int
    rejected: int
    """Items refused, each with an `error` naming its index (an array with none taken is a 400 with this body)."""
    unavailable: int
    """Items the store failed for (the answer is then 503: retry the array)."""
    results: list[dict[str, Any]]
    """Per item: a single feedback's answer (`status`, `prediction_id`, `model`, `instances`) or `status` and `error`."""


class FeedbackOrArray(RootModel[Annotated[Annotated[Feedback, Tag("one")] | Annotated[list[FeedbackItem], Tag("array")],
                                          Discriminator(lambda value: "array" if isinstance(value, list) else "one")]]):
    """One feedback object, or a JSON array of them (at most SEISMO_METRICS_MAX_FEEDBACK_BATCH), each item
    answered on its own."""

    @model_validator(mode="before")
    @classmethod
    def _at_most_max_items(cls, value: Any, info: ValidationInfo) -> Any:
        # Counted before any item is parsed: a 10 MiB array of tiny items is refused at once, not parsed first.
        limit = (info.context or {}).get("max_items")
        if isinstance(value, list) and limit is not None and len(value) > limit:
            raise BodyTooLarge(limit, f"{len(value)} feedback items in one request; at most {limit} (SEISMO_METRICS_MAX_FEEDBACK_BATCH)")
        return value


class FeedbackAnswer(RootModel[FeedbackOutcome | FeedbackArrayOutcome]):
    """A single feedback's outcome, or an array's outcomes."""


class PerformanceQuery(ApiModel):
    model: str | None = None
    """One of the configured models (may be left out when only one is configured)."""
    cohort: str | None = None
    """One cohort (default `all`)."""
    window: Window = documented_pattern(either(DURATION_PATTERN, r"^([0-9]+|all)$"))
    """A duration (`30s`, `15m`, `1h`, `7d`, ISO-8601 `PT1H`), a count of newest instances (`1000`) or `all`; default SEISMO_METRICS_WINDOW."""
    group: Annotated[Literal["all", "model", "holdout"], BeforeValidator(lambda value: value or "all")] = "all"


class Calibration(ApiModel):
    n_labelled: int
    max_error: float
    error: float | None = None
    p_value: float | None = None
    """Of "the model is calibrated": the share of label sets drawn from the model's own confidences whose error is at
    least this one (small samples of a calibrated model have a sizeable error too)."""
    calibrated: bool | None
    """False when the error is over `max_error` and its p-value below 0.01; None while fewer than 30 predictions carry truth."""


class Estimated(ApiModel):
    """Label-free estimates over every prediction seen (from the model's class probabilities)."""

    available: bool
    reason: str | None = None
    n: int | None = None
    calibrated_on: int | None = None
    """Labelled reference rows the estimate's calibration map was fitted on (the model config's `estimation.reference`);
    None: the model's raw probabilities are taken at their word."""
    accuracy: float | None = None
    on_labelled: dict[str, Any] | None = None
    calibration: Calibration | None = None
    warning: str | None = None


class Counts(ApiModel):
    received: int
    joined: int
    pending: int
    orphaned: int
    late: int
    pending_now: int


class BusinessFigures(ApiModel):
    available: bool
    reason: str | None = None
    """Why there is no figure (no probabilities, a value matrix smaller than the model's classes...)."""
    n: int | None = None
    total: float | None = None
    per_prediction: float | None = None
    """Null while n is 0."""
    on_labelled: BusinessFigures | None = None
    """The estimate for exactly the labelled predictions: compare it with `realized`."""


class Business(ApiModel):
    """What the window's outcomes are worth, from the model's `business` block (value per confusion cell, or per unit of error)."""

    unit: str
    realized: BusinessFigures
    estimated: BusinessFigures
    """Expected value of every prediction seen under its own class probabilities (trust it as far as `estimated.calibration`)."""


class Performance(ApiModel):
    model: str
    type: str
    """binary, multiclass-onehot, multiclass-numeric or regression."""
    cohort: str
    group: str
    window: str
    realized: dict[str, Any]
    """From the truth received: `n`, and `accuracy`, `precision`, `recall`, `f1`, `specificity`, `per_class`... (regression: `mae`, `rmse`, `mape`); undefined values are null."""
    estimated: Estimated
    counts: Counts
    groups: dict[str, dict[str, Any]] | None = None
    """`model` and `holdout` side by side when `group` is `all`."""
    business: Business | None = None
    """Only for models whose metrics config has a `business` block."""


MAX_OUTCOME_IDS = 1000
"""Prediction ids one `GET /v1/outcomes` may name (a report asks for its page of points at once)."""


def _prediction_ids(value: str) -> str:
    ids = [i for i in value.split(",") if i]
    if not ids or len(ids) > MAX_OUTCOME_IDS:
        raise ValueError(f"'ids' names 1 to {MAX_OUTCOME_IDS} prediction ids, comma-separated; got {len(ids)}")
    bad = next((i for i in ids if not is_prediction_id(i)), None)
    if bad is not None:
        raise ValueError(f"'ids': {bad[:60]!r} cannot be a prediction id")
    return value


class OutcomesQuery(ApiModel):
    model: str | None = None
    """One of the configured models (may be left out when only one is configured)."""
    ids: Annotated[str, AfterValidator(_prediction_ids)] = Field(
        min_length=1, json_schema_extra={"pattern": r"^[!-+\--.0-~]{1,256}(,[!-+\--.0-~]{1,256}){0,999}$"})
    """1 to 1,000 prediction ids, comma-separated."""

    @property
    def id_list(self) -> list[str]:
        return [i for i in self.ids.split(",") if i]


class Outcome(ApiModel):
    predicted: float
    truth: float
    correct: bool | None = None
    """Classification: whether the predicted class is the truth."""


class Outcomes(ApiModel):
    """Per prediction id that has truth, its scored instances in order; ids without truth are absent."""

    model: str
    outcomes: dict[str, list[Outcome]]


class DiagnosisQuery(ApiModel):
    model: str | None = None
    """One of the configured models (may be left out when only one is configured)."""
    since: Time = documented_pattern(either(TIME_PATTERN, DURATION_PATTERN))
    """An RFC 3339 time, epoch seconds, or a duration meaning that long ago (`7d`); default: everything kept."""
    cohort: Annotated[str | None, BeforeValidator(lambda value: value or None),
                      AfterValidator(lambda value: value if value is None else check_cohort_name(value, "cohort"))] = None
    """One cohort only; default: `all` and every cohort with data."""


class CohortDiagnosis(ApiModel):
    verdict: Literal["healthy", "concept_drift", "data_drift", "training_serving_skew", "upstream_cascade", "no_ground_truth"]
    confidence: float
    """0 to 1: how sure the comparisons the verdict rests on are, given the sample sizes."""
    reasons: list[str]
    """The rules that decided, in words."""
    evidence: dict[str, Any]
    """`n_labelled`, `metric`, `validation_error`, `first` and `latest` windows (realized and estimated error), `change_point`,
    `input_vs_reference`, `input_vs_first`, `prediction_drift` (p-values, statistics, moved features), `concentration`
    (error on novel vs familiar inputs), `upstream` (each upstream model's versions, output drift, `changed_at`, its own
    performance before/after when it gets truth, and this model's error before/after the change: `downstream_before`,
    `downstream_after`), `notes`."""
    culprit: dict[str, Any] | None = None
    """For `upstream_cascade`: `model`, `version`, `previous_version`, `at`, and `own_performance` when the upstream model gets truth."""


class Diagnosis(ApiModel):
    model: str
    since: str | None
    at: str
    """When the diagnosis was made."""
    cohorts: dict[str, CohortDiagnosis]


FEEDBACK_ANSWERS = {200: Body(FeedbackOutcome, "scored"), 202: Body(FeedbackOutcome, "pending: the prediction is not stored yet"),
                    400: BAD_REQUEST, 413: TOO_LARGE, 503: error_body("the record store is unavailable: retry"), **AUTH_ERRORS}

OPERATIONS = [
    Operation("POST", "/feedback", "Ground truth for a prediction", body=Body(FeedbackOrArray), headers=FeedbackHeaders,
              responses={**FEEDBACK_ANSWERS, 200: Body(FeedbackAnswer, "scored, or an array's outcomes")},
              description="The body may also be a JSON array of such objects (at most SEISMO_METRICS_MAX_FEEDBACK_BATCH; more: 413): "
                          "each is checked and answered on its own, and the answer is 200 `{\"scored\", \"pending\", \"rejected\", "
                          "\"unavailable\", \"results\"}` with one outcome per item in order (a bad item is `rejected` with an error "
                          "naming its index; the others are taken), or 503 when the store failed for any item (retrying the "
                          "whole array is safe: feedback already scored counts as a duplicate). An array of which no item was taken is a 400 "
                          "with the same body and an `error`."),
    Operation("POST", "/api/v1.0/feedback", "Seldon's feedback body (same answers)", body=Body(Feedback), headers=FeedbackHeaders,
              responses=FEEDBACK_ANSWERS),
    Operation("POST", "/", "`io.seldon.serving.feedback` events from the broker", tags=("events",), headers=event_headers("FeedbackEventHeaders", (SELDON_FEEDBACK,)),
              body=event_body(), responses=FEEDBACK_ANSWERS, description="Open unless SEISMO_AUTH_EVENTS=protected."),
    Operation("GET", "/v1/performance", "Realized and estimated performance of a model, cohort, group and window",
              query=PerformanceQuery,
              responses={200: Body(Performance), 400: BAD_REQUEST, 404: error_body("no metrics configuration for the model"),
                         **AUTH_ERRORS}),
    Operation("GET", "/v1/diagnosis", "Which failure mode a model suffers, per cohort, with the evidence", query=DiagnosisQuery,
              responses={200: Body(Diagnosis), 400: BAD_REQUEST, 404: error_body("no metrics configuration for the model"),
                         **AUTH_ERRORS}),
    Operation("GET", "/v1/outcomes", "The truth joined with named predictions (what the embeddings report colours by)", query=OutcomesQuery,
              responses={200: Body(Outcomes), 400: BAD_REQUEST, 404: error_body("no metrics configuration for the model"),
                         **AUTH_ERRORS}),
    *common_operations("metrics"),
]
