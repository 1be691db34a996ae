"""The model server's public HTTP API: KServe V1, the Open Inference Protocol V2, Seldon's protocol, metadata.

The prediction routes parse their bodies by hand (they are the hot path); these models document the
same shapes. The OIP binary tensor extension (`Inference-Header-Content-Length`) is described in the
V2 operation's text: a JSON schema cannot say where the JSON header ends."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, WithJsonSchema

from seismo.services.api import BAD_REQUEST, PREDICTION_ID_PATTERN, TOO_LARGE, ApiModel, common_operations, error_body
from seismo.services.api.metrics import Feedback
from seismo.services.openapi import Body, Operation

NO_MODEL = error_body("the model is not served here")


# Numbers, or lists of them nested to the model's input shape (what the model servers take as instances).
Numeric = float | list[Any]
NUMERIC_ITEMS: dict[str, Any] = {"items": {"anyOf": [{"type": "number"}, {"type": "array", "minItems": 1}]}}


class V1Request(ApiModel):
    instances: list[Numeric] = Field(min_length=1, json_schema_extra=NUMERIC_ITEMS)
    """One entry per instance, in the model's input shape: numbers, nested."""


class V1Response(ApiModel):
    predictions: list[Any]


class TensorV2(ApiModel):
    name: str = Field(min_length=1)
    datatype: str
    """BOOL, UINT8-64, INT8-64, FP16/32/64 or BYTES."""
    shape: list[int]
    data: list[Any] | None = None
    """Row-major, flat or nested; absent when the tensor travels as binary data."""
    parameters: dict[str, Any] | None = None
    """`binary_data_size` (a binary input) or `binary_data` (ask for a binary output)."""


class RequestedOutput(ApiModel):
    name: str
    parameters: dict[str, Any] | None = None


class V2Request(ApiModel):
    id: str | None = None
    """The prediction id to use (else `X-Request-Id` / `ce-id`, else a new UUID)."""
    inputs: list[TensorV2] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None
    """`probabilities`, `class`, or the embedding output when the model has one."""
    parameters: dict[str, Any] | None = None
    """`binary_data_output: true` for binary outputs."""


class V2Response(ApiModel):
    model_name: str
    model_version: str | None = None
    id: str
    """The prediction id (also the `X-Prediction-Id` header): name it in feedback."""
    outputs: list[TensorV2]
    parameters: dict[str, Any] | None = None


class SeldonTensor(ApiModel):
    shape: list[int]
    values: list[float]


class SeldonData(ApiModel):
    names: list[str] | None = None
    ndarray: list[Any] | None = None
    tensor: SeldonTensor | None = None


class SeldonMeta(ApiModel):
    puid: str | None = None
    """The prediction id."""
    tags: dict[str, Any] | None = None
    requestPath: dict[str, str] | None = None


class SeldonMessage(ApiModel):
    """Exactly one of `data` (`ndarray` or `tensor`), `jsonData` (a numeric list), `strData` (its JSON text) or
    `binData` (base64 of little-endian FP32 instances in the model's input shape)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["data"]}, {"required": ["jsonData"]}, {"required": ["strData"]}, {"required": ["binData"]}]})

    data: SeldonData | None = None
    jsonData: Any = None
    strData: str | None = None
    binData: str | None = None
    meta: SeldonMeta | None = None


class ModelList(ApiModel):
    models: list[str]


class ModelReady(ApiModel):
    name: str
    ready: bool


class ServerMetadata(ApiModel):
    name: str
    version: str
    extensions: list[str]


class Live(ApiModel):
    live: bool


class ServerReady(ApiModel):
    ready: bool


class TensorSpec(ApiModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None


class ModelMetadata(ApiModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class KServeLive(ApiModel):
    status: str


class TritonTensor(ApiModel):
    name: str
    data_type: str
    """TYPE_ followed by the OIP datatype (TYPE_FP32)."""
    dims: list[int]
    """The shape without the batch dimension."""


class TritonConfig(ApiModel):
    name: str
    platform: str
    backend: str
    max_batch_size: int
    input: list[TritonTensor]
    output: list[TritonTensor]
    version_policy: dict[str, Any]


class TritonCount(ApiModel):
    count: int
    ns: int


class TritonInferenceStats(ApiModel):
    success: TritonCount
    fail: TritonCount


class TritonModelStats(ApiModel):
    name: str
    version: str
    last_inference: int
    """Milliseconds since the epoch of the last request answered."""
    inference_count: int
    """Instances inferred."""
    execution_count: int
    """Forward passes (batched requests share one)."""
    inference_stats: TritonInferenceStats


class TritonStats(ApiModel):
    model_stats: list[TritonModelStats]


# The deployment's feedback is relayed by prediction id: the response must name it.
NAMED_RESPONSE = {"type": "object", "required": ["meta"], "properties": {
    "meta": {"type": "object", "required": ["puid"], "properties": {"puid": {"type": "string", "pattern": PREDICTION_ID_PATTERN}}}}}


class SeldonFeedback(Feedback):
    """Seldon's feedback body, parsed as the metrics server's feedback is (the event it is relayed as
    reaches the metrics server unchanged); the prediction is named by `response.meta.puid`."""

    response: Annotated[dict[str, Any], WithJsonSchema(NAMED_RESPONSE)]
    """The answer as it came: its `meta.puid` names the prediction."""


BINARY = "application/octet-stream"
PREDICT_ERRORS = {400: BAD_REQUEST, 404: NO_MODEL, 413: error_body("the body or the instance count is over the limit"),
                  415: error_body("a compressed body (Content-Encoding): send it uncompressed")}
MODEL = {"model_name": "the model's name"}
VERSIONED = {**MODEL, "version": "the model's version (another than the one served: 404)"}
V2_TEXT = ("Also the OIP binary tensor extension: a JSON header of `Inference-Header-Content-Length` bytes, then each "
           "input with `parameters.binary_data_size` as raw little-endian bytes; outputs come back binary when asked.")


def _v2_infer(path: str, params: dict[str, str]) -> Operation:
    return Operation("POST", path, "Open Inference Protocol V2 inference", protected=False, path_params=params,
                     description=V2_TEXT, body=Body(V2Request, content_types=("application/json", BINARY)),
                     responses={200: Body(V2Response, "the outputs; the prediction id also in `X-Prediction-Id`",
                                          ("application/json", BINARY)), **PREDICT_ERRORS})


def _get(path: str, summary: str, model: type[ApiModel], params: dict[str, str] | None = None) -> Operation:
    responses = {200: Body(model)} | ({404: NO_MODEL} if params else {})
    return Operation("GET", path, summary, protected=False, path_params=params or {}, responses=responses)


OPERATIONS = [
    Operation("POST", "/v1/models/{model_name}:predict", "KServe V1 prediction", protected=False, path_params=MODEL,
              body=Body(V1Request), responses={200: Body(V1Response, "the predictions; the prediction id in `X-Prediction-Id`"),
                                                **PREDICT_ERRORS}),
    _v2_infer("/v2/models/{model_name}/infer", MODEL),
    _v2_infer("/v2/models/{model_name}/versions/{version}/infer", VERSIONED),
    Operation("POST", "/api/v1.0/predictions", "Seldon's protocol (this server's one model)", protected=False,
              body=Body(SeldonMessage), responses={200: Body(SeldonMessage, "the prediction in the request's form; `meta.puid` is the prediction id"),
                                                   400: BAD_REQUEST, 413: TOO_LARGE}),
    Operation("POST", "/api/v1.0/feedback", "Seldon's feedback on the deployment (relayed as an io.seldon.serving.feedback event)",
              protected=True, body=Body(SeldonFeedback),
              responses={200: Body(SeldonMessage, "`meta.puid`: the prediction the feedback is about"), 400: BAD_REQUEST, 413: TOO_LARGE,
                         503: error_body("this model server logs no events (no SEISMO_MODEL_SINK_URL)")}),
    _get("/", "KServe V1 server liveness", KServeLive),
    _get("/v2/models/{model_name}/config", "Triton's model configuration", TritonConfig, MODEL),
    _get("/v2/models/{model_name}/stats", "Triton's statistics extension", TritonStats, MODEL),
    _get("/v1/models", "V1: the models served", ModelList),
    _get("/v1/models/{model_name}", "V1: a model's readiness", ModelReady, MODEL),
    _get("/v2", "OIP server metadata", ServerMetadata),
    _get("/v2/health/live", "OIP server liveness", Live),
    _get("/v2/health/ready", "OIP server readiness", ServerReady),
    _get("/v2/models/{model_name}", "OIP model metadata", ModelMetadata, MODEL),
    _get("/v2/models/{model_name}/versions/{version}", "OIP model metadata", ModelMetadata, VERSIONED),
    _get("/v2/models/{model_name}/ready", "OIP model readiness", ModelReady, MODEL),
    *common_operations("model", auth=False),
]
