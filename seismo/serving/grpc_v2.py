"""The Open Inference Protocol over gRPC (KServe's and Triton's `inference.GRPCInferenceService`).

A translation, like the REST routes: a `ModelInferRequest` becomes the V2 body a REST client would have
sent (typed `contents` as JSON `data`; `raw_input_contents` as the binary tensor extension, bytes as
they came), goes through `DataPlane.infer` (limits, prediction ids, batching, metrics, request and
response events), and the answer goes back as a `ModelInferResponse` (raw outputs when the request
sent raw inputs, as KServe does; typed contents otherwise). HTTP statuses map to gRPC codes; the
prediction id is the response's `id` and the `x-prediction-id` initial metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import orjson

import seismo
from seismo.protocol.binary import CONTENT_TYPE as BINARY_CONTENT_TYPE
from seismo.protocol.binary import HEADER_LENGTH, encode_binary_tensor, load_document
from seismo.protocol.limits import BodyTooLarge
from seismo.protocol.payloads import V2_DTYPES, PayloadError
from seismo.serving.proto import grpc_predict_v2_pb2 as pb
from seismo.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from seismo.serving.dataplane import DataPlane, Outcome

log = logging.getLogger(__name__)

# Which typed field of InferTensorContents carries each datatype (FP16 and BF16 travel only as raw bytes).
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}
STATUS_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
                503: grpc.StatusCode.UNAVAILABLE}


def parameter_value(parameter: pb.InferParameter) -> Any:
    choice = parameter.WhichOneof("parameter_choice")
    return None if choice is None else getattr(parameter, choice)


def parameters_of(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    return {str(k): parameter_value(v) for k, v in parameters.items()}


def set_parameter(target: pb.InferParameter, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int):
        target.int64_param = value
    else:
        target.string_param = str(value)


def _typed_data(tensor: pb.ModelInferRequest.InferInputTensor, where: str) -> list:
    field = CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        raise PayloadError(f"{where}: datatype {tensor.datatype[:32]!r} has no typed contents (FP16 and BF16 travel as raw_input_contents)")
    values = getattr(tensor.contents, field)
    if tensor.datatype == "BYTES":
        return [v.decode("utf-8", "replace") for v in values]
    # A numpy array, not a list of Python numbers (a third of the memory); float64 so orjson writes each
    # float32 value as Python would (the same V2 JSON as before).
    return np.fromiter(values, dtype=TYPED_DTYPES.get(field, np.int64), count=len(values))  # type: ignore[return-value]


TYPED_DTYPES = {"fp32_contents": np.float64, "fp64_contents": np.float64, "bool_contents": np.bool_, "uint64_contents": np.uint64}
MIN_JSON_BYTES_PER_VALUE = 2
"""A typed value written as JSON takes at least this much (`0,`): the floor for refusing early."""
SAMPLE_VALUES = 4096
"""Values written as JSON to estimate a typed tensor's whole size before building it."""


def _json_bytes_estimate(request: pb.ModelInferRequest) -> tuple[int, int]:
    """(a floor, an estimate) of the typed contents' size as V2 JSON, from their counts and a sample."""
    floor = estimate = 0
    for tensor in request.inputs:
        field = CONTENTS_FIELD.get(tensor.datatype)
        if not field:
            continue
        values = getattr(tensor.contents, field)
        floor += len(values) * MIN_JSON_BYTES_PER_VALUE
        if len(values) and tensor.datatype != "BYTES":
            sample: np.ndarray = np.fromiter(values[:SAMPLE_VALUES], dtype=TYPED_DTYPES.get(field, np.int64))
            estimate += len(orjson.dumps(sample, option=orjson.OPT_SERIALIZE_NUMPY)) * len(values) // len(sample)
    return floor, max(floor, estimate)


def request_body(request: pb.ModelInferRequest, max_bytes: int | None = None) -> tuple[bytes, int | None]:
    """The V2 body (and its JSON header's length when binary) a REST client would have sent. With
    `max_bytes`, typed contents whose JSON could not fit are refused (BodyTooLarge) before any of it is
    built: a 30 MiB message of floats becomes several times that in Python objects and JSON."""
    if max_bytes is not None:
        floor, estimate = _json_bytes_estimate(request)
        if floor > max_bytes or estimate > max_bytes * 5 // 4:  # a sample may misjudge: a margin before refusing unbuilt
            values = sum(len(getattr(t.contents, field)) for t in request.inputs if (field := CONTENTS_FIELD.get(t.datatype)))
            raise BodyTooLarge(max_bytes, f"typed contents of {values} values make a V2 JSON body of about {estimate} bytes; "
                               f"the limit is {max_bytes} bytes (send raw_input_contents, or fewer instances per request)")
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise PayloadError(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs: one per input, in order")
    inputs = []
    for i, tensor in enumerate(request.inputs):
        where = f"input {i} ({tensor.name[:64]!r})"
        doc: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        parameters = parameters_of(tensor.parameters)
        if raw:
            if tensor.HasField("contents"):
                raise PayloadError(f"{where}: has both contents and raw_input_contents; send one or the other")
            parameters["binary_data_size"] = len(raw[i])
        else:
            doc["data"] = _typed_data(tensor, where)
        if parameters:
            doc["parameters"] = parameters
        inputs.append(doc)
    header: dict[str, Any] = {"inputs": inputs}
    if request.id:
        header["id"] = request.id
    parameters = parameters_of(request.parameters)
    if raw:
        parameters["binary_data_output"] = True  # raw in, raw out (KServe's rule)
    if parameters:
        header["parameters"] = parameters
    if request.outputs:
        header["outputs"] = [{"name": o.name, **({"parameters": parameters_of(o.parameters)} if o.parameters else {})} for o in request.outputs]
    head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    if not raw:
        return head, None
    return head + b"".join(raw), len(head)


def response_message(outcome: Outcome, raw: bool) -> pb.ModelInferResponse:
    doc = load_document(outcome.body, outcome.header_length, "model response")
    response = pb.ModelInferResponse(model_name=doc.get("model_name", ""), model_version=doc.get("model_version") or "", id=outcome.prediction_id)
    for name, value in (doc.get("parameters") or {}).items():
        set_parameter(response.parameters[name], value)
    for out in doc.get("outputs", []):
        datatype = out["datatype"]
        tensor = response.outputs.add(name=out["name"], datatype=datatype, shape=out["shape"])
        array = np.asarray(out["data"], dtype=object if datatype == "BYTES" else V2_DTYPES[datatype]).reshape(out["shape"])
        if raw:
            response.raw_output_contents.append(encode_binary_tensor(array))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(v if isinstance(v, bytes) else str(v).encode() for v in array.ravel())
        else:
            getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(array.ravel().tolist())
    return response


def metadata_headers(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The call's metadata as lower-cased headers (binary `-bin` entries are not headers: left out)."""
    headers: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str) and not key.endswith("-bin"):
            headers[key.lower()] = value
    return headers


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Serves `DataPlane` over gRPC, with Triton's model configuration and statistics; model repository load/unload
    stay UNIMPLEMENTED (one model per server)."""

    def __init__(self, core: DataPlane):
        self.core = core

    async def ServerLive(self, request, context):  # noqa: N802 (the protocol's method names)
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):  # noqa: N802
        return pb.ServerReadyResponse(ready=self.core.ready)

    async def ServerMetadata(self, request, context):  # noqa: N802
        return pb.ServerMetadataResponse(name="seismo", version=seismo.__version__, extensions=[])

    async def _served_or_abort(self, name: str, context: grpc.aio.ServicerContext, version: str = "") -> None:
        if not self.core.serves(name, version):
            info = self.core.predictor.info
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model {name[:200]!r}" + (f" version {version[:40]!r}" if version else "")
                                + f" is not served here; available: [{info.name!r}] version {info.version!r}")

    async def ModelReady(self, request, context):  # noqa: N802
        await self._served_or_abort(request.name, context, request.version)
        return pb.ModelReadyResponse(ready=self.core.ready)

    async def ModelMetadata(self, request, context):  # noqa: N802
        await self._served_or_abort(request.name, context, request.version)
        meta = self.core.model_metadata()
        tensor = lambda t: pb.ModelMetadataResponse.TensorMetadata(name=t["name"], datatype=t["datatype"], shape=t["shape"])  # noqa: E731
        return pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                                        inputs=[tensor(t) for t in meta["inputs"]], outputs=[tensor(t) for t in meta["outputs"]])

    async def ModelConfig(self, request, context):  # noqa: N802 (Triton's extension)
        await self._served_or_abort(request.name, context, request.version)
        config = self.core.model_config()
        tensors = lambda kind, specs: [kind(name=t["name"], data_type=pb.DataType.Value(t["data_type"]), dims=t["dims"])  # noqa: E731
                                       for t in specs]
        return pb.ModelConfigResponse(config=pb.ModelConfig(
            name=config["name"], platform=config["platform"], backend=config["backend"], max_batch_size=config["max_batch_size"],
            input=tensors(pb.ModelInput, config["input"]), output=tensors(pb.ModelOutput, config["output"]),
            version_policy=pb.ModelVersionPolicy(**{
                "specific": pb.ModelVersionPolicy.Specific(**config["version_policy"]["specific"])} if "specific" in config["version_policy"]
                else {"latest": pb.ModelVersionPolicy.Latest(num_versions=1)})))

    async def ModelStatistics(self, request, context):  # noqa: N802 (Triton's extension)
        await self._served_or_abort(request.name, context, request.version)
        stats = self.core.model_statistics()["model_stats"][0]
        duration = lambda d: pb.StatisticDuration(count=d["count"], ns=d["ns"])  # noqa: E731
        inference = stats["inference_stats"]
        return pb.ModelStatisticsResponse(model_stats=[pb.ModelStatistics(
            name=stats["name"], version=stats["version"], last_inference=stats["last_inference"], inference_count=stats["inference_count"],
            execution_count=stats["execution_count"],
            inference_stats=pb.InferStatistics(success=duration(inference["success"]), fail=duration(inference["fail"])))])

    async def ModelInfer(self, request, context):  # noqa: N802
        core = self.core
        if not core.serves(request.model_name, request.model_version):
            core.not_served(request.model_name, "grpc")
            await self._served_or_abort(request.model_name, context, request.model_version)
        headers = metadata_headers(context)

        async def read() -> bytes:
            # Inside infer(): a request that cannot become a V2 body is a counted, logged 400 like any other.
            body, header_length = request_body(request, core.json_body_limit())
            if header_length is not None:
                headers["content-type"] = BINARY_CONTENT_TYPE
                headers[HEADER_LENGTH] = str(header_length)
            else:
                headers["content-type"] = "application/json"
                headers.pop(HEADER_LENGTH, None)
            return body

        outcome = await core.infer("v2", headers, read, metric_protocol="grpc")
        await context.send_initial_metadata((("x-prediction-id", outcome.prediction_id),))
        if outcome.status != 200:
            message = _error_message(outcome.body)
            await context.abort(STATUS_CODES.get(outcome.status, grpc.StatusCode.INTERNAL), message)
        return response_message(outcome, raw=bool(request.raw_input_contents))


def _error_message(body: bytes) -> str:
    try:
        return str(orjson.loads(body).get("error", "inference failed"))
    except (orjson.JSONDecodeError, AttributeError):
        return "inference failed"


async def start_grpc_server(core: DataPlane, host: str, port: int, max_message_bytes: int,
                            max_concurrent_rpcs: int | None = None) -> grpc.aio.Server:
    """A started gRPC server on the running event loop (the same loop as the REST routes and the batcher)."""
    options = [("grpc.max_receive_message_length", max_message_bytes), ("grpc.max_send_message_length", max_message_bytes),
               ("grpc.so_reuseport", 0)]
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=max_concurrent_rpcs)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(core), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port} (in use?); set SEISMO_MODEL_GRPC_PORT to a free port")
    await server.start()
    log.info("gRPC (Open Inference Protocol) on %s:%d", host, bound)
    return server
