"""Payload protocols <-> numpy: KServe V1, Open Inference Protocol V2, Seldon.

Every decoder raises PayloadError with a message that names the field at fault; the services turn it
into a 400. Nothing here knows about HTTP.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# OIP V2 datatypes and their numpy equivalents (BYTES: an object array of `bytes`).
V2_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": object,
}
_NUMPY_TO_V2 = {np.dtype(v): k for k, v in V2_DTYPES.items() if v is not object}


MAX_DIMENSIONS = 16
MAX_DIMENSION_SIZE = 2**31 - 1


class PayloadError(ValueError):
    """The payload does not follow its protocol; the message names the problem."""


@dataclass(frozen=True)
class Tensor:
    """One named V2 tensor."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


def v2_datatype(array: np.ndarray) -> str:
    if array.dtype == object or array.dtype.kind in ("S", "U"):
        return "BYTES"
    try:
        return _NUMPY_TO_V2[array.dtype]
    except KeyError:
        raise PayloadError(f"no V2 datatype for numpy dtype {array.dtype}") from None


def _as_bytes(value: Any, where: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise PayloadError(f"{where}: BYTES elements must be strings, got {type(value).__name__}")


def _flatten(data: Any) -> list:
    """V2 `data` may be flat (the spec's row-major form) or nested; flatten it."""
    if not isinstance(data, list):
        return [data]
    if not data or not isinstance(data[0], list):
        return data
    out: list = []
    stack = [data]
    # Iterative flatten keeps deep nesting from hitting the recursion limit.
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def decode_v2_tensor(doc: Any, where: str) -> Tensor:
    if not isinstance(doc, dict):
        raise PayloadError(f"{where} must be an object with name, shape, datatype and data")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise PayloadError(f"{where}.name must be a non-empty string")
    where = f"{where} ({name!r})"
    datatype = doc.get("datatype")
    if datatype not in V2_DTYPES:
        raise PayloadError(f"{where}: unknown datatype {datatype!r}; expected one of {', '.join(V2_DTYPES)}")
    shape = doc.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise PayloadError(f"{where}: shape must be a list of non-negative integers, got {str(shape)[:100]}")
    if len(shape) > MAX_DIMENSIONS or any(d > MAX_DIMENSION_SIZE for d in shape):
        raise PayloadError(f"{where}: shape {str(shape)[:100]} is too large: at most {MAX_DIMENSIONS} dimensions of at most "
                           f"{MAX_DIMENSION_SIZE} each")
    if "data" not in doc:
        raise PayloadError(f"{where}: missing 'data'")
    data = doc["data"]
    # An array here came from the binary tensor extension (seismo.protocol.binary), already typed.
    flat = data.reshape(-1) if isinstance(data, np.ndarray) else _flatten(data)
    expected = math.prod(shape)
    if len(flat) != expected:
        raise PayloadError(f"{where}: shape {shape} needs {expected} elements, data has {len(flat)}")
    if datatype == "BYTES":
        array = np.empty(len(flat), dtype=object)
        array[:] = [_as_bytes(v, where) for v in flat]
    else:
        try:
            array = np.asarray(flat, dtype=V2_DTYPES[datatype])
        except (TypeError, ValueError, OverflowError) as exc:
            raise PayloadError(f"{where}: data does not fit datatype {datatype}: {exc}") from None
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise PayloadError(f"{where}: parameters must be an object")
    return Tensor(name, datatype, tuple(shape), array.reshape(shape), parameters)


def decode_v2_request(doc: Any) -> tuple[str | None, list[Tensor], dict[str, Any]]:
    """(id, inputs, parameters) of an OIP V2 inference request."""
    if not isinstance(doc, dict):
        raise PayloadError("V2 request must be a JSON object with 'inputs'")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise PayloadError("V2 request needs a non-empty 'inputs' list")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise PayloadError("V2 request 'id' must be a string")
    tensors = [decode_v2_tensor(t, f"inputs[{i}]") for i, t in enumerate(inputs)]
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise PayloadError(f"V2 request has duplicate input names: {names}")
    return request_id, tensors, doc.get("parameters") or {}


def encode_v2_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    array = np.asarray(array)
    datatype = v2_datatype(array)
    if datatype == "BYTES":
        data = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
    else:
        data = array.reshape(-1).tolist()
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


def decode_v1_instances(doc: Any, dtype: Any = np.float32) -> np.ndarray:
    """KServe V1 `{"instances": [...]}` as one array (instances must share a shape)."""
    if not isinstance(doc, dict) or "instances" not in doc:
        raise PayloadError("V1 request must be a JSON object with an 'instances' list")
    instances = doc["instances"]
    if not isinstance(instances, list) or not instances:
        raise PayloadError("V1 'instances' must be a non-empty list")
    try:
        return np.asarray(instances, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"V1 'instances' are not a rectangular numeric array: {exc}") from None


def decode_seldon(doc: Any) -> np.ndarray | str | bytes | Any:
    """A Seldon message's payload: data.ndarray / data.tensor as an array, else strData/binData/jsonData."""
    if not isinstance(doc, dict):
        raise PayloadError("Seldon message must be a JSON object")
    if "data" in doc:
        data = doc["data"]
        if not isinstance(data, dict):
            raise PayloadError("Seldon 'data' must be an object with 'ndarray' or 'tensor'")
        if "ndarray" in data:
            try:
                return np.asarray(data["ndarray"])
            except ValueError as exc:
                raise PayloadError(f"Seldon data.ndarray is not rectangular: {exc}") from None
        if "tensor" in data:
            tensor = data["tensor"]
            if not isinstance(tensor, dict) or "shape" not in tensor or "values" not in tensor:
                raise PayloadError("Seldon data.tensor needs 'shape' and 'values'")
            values = np.asarray(tensor["values"], dtype=np.float64)
            try:
                return values.reshape(tensor["shape"])
            except (ValueError, TypeError) as exc:
                raise PayloadError(f"Seldon data.tensor values do not fit shape {tensor['shape']}: {exc}") from None
        raise PayloadError("Seldon 'data' needs 'ndarray' or 'tensor'")
    if "strData" in doc:
        return str(doc["strData"])
    if "binData" in doc:
        try:
            return base64.b64decode(doc["binData"], validate=True)
        except (ValueError, TypeError) as exc:
            raise PayloadError(f"Seldon binData is not valid base64: {exc}") from None
    if "jsonData" in doc:
        return doc["jsonData"]
    raise PayloadError("Seldon message needs one of data, strData, binData, jsonData")


def protocol_of(doc: Any) -> str:
    """Which protocol a request or response body speaks: 'v1', 'v2', 'seldon' or 'unknown'."""
    if isinstance(doc, dict):
        if "instances" in doc or "predictions" in doc:
            return "v1"
        if "inputs" in doc or "outputs" in doc:
            return "v2"
        if any(k in doc for k in ("data", "strData", "binData", "jsonData")):
            return "seldon"
    return "unknown"


def instances_of(doc: Any) -> np.ndarray:
    """The first tensor of any protocol's request or response as an array (rows = instances).

    The detectors use this to read logged payloads without caring which server produced them.
    """
    protocol = protocol_of(doc)
    if protocol == "v1":
        key = "instances" if "instances" in doc else "predictions"
        return decode_v1_instances({"instances": doc[key]}, dtype=None)
    if protocol == "v2":
        key = "inputs" if "inputs" in doc else "outputs"
        tensors = doc[key]
        if not isinstance(tensors, list) or not tensors:
            raise PayloadError(f"V2 '{key}' must be a non-empty list")
        return decode_v2_tensor(tensors[0], f"{key}[0]").data
    if protocol == "seldon":
        value = decode_seldon(doc)
        if isinstance(value, np.ndarray):
            return value
        raise PayloadError("Seldon message carries no numeric data (strData/binData/jsonData)")
    raise PayloadError("payload follows none of the V1, V2 or Seldon protocols")
