"""Seldon Core's prediction protocol (`POST /api/v1.0/predictions`) on Seismo's model server.

A Seldon message carries its payload in one of `data.ndarray`, `data.tensor`, `jsonData`, `strData` or
`binData`. Seismo's models take numeric tensors, so each form must hold one: `jsonData` a (nested) numeric
list, `strData` the JSON text of one, `binData` base64 of little-endian FP32 values in the model's input
shape (as many instances as the bytes hold). The answer comes back in the form that was sent (binData
as `data.ndarray`), with Seldon's `names` (the class names, else `t:0`, `t:1`, ...) and `meta.puid`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from seismo.protocol.payloads import PayloadError

FORMS = ("ndarray", "tensor", "jsonData", "strData", "binData")


@dataclass(frozen=True)
class SeldonRequest:
    array: np.ndarray
    form: str  # one of FORMS: how the answer is shaped
    puid: str | None
    tags: dict[str, Any]


def _numeric(value: Any, where: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"Seldon {where} is not a rectangular numeric array: {str(exc)[:120]}") from None
    if array.ndim == 0:
        raise PayloadError(f"Seldon {where} must be an array of instances, got a single number")
    return array


def decode_request(doc: Any, input_shape: tuple[int, ...]) -> SeldonRequest:
    """The instances a Seldon message carries, its form, its puid and tags; PayloadError naming the problem."""
    if not isinstance(doc, dict):
        raise PayloadError("Seldon message must be a JSON object")
    meta = doc.get("meta") or {}
    if not isinstance(meta, dict):
        raise PayloadError("Seldon 'meta' must be an object")
    puid = meta.get("puid")
    if puid is not None and not isinstance(puid, str):
        raise PayloadError("Seldon meta.puid must be a string")
    tags = meta.get("tags") or {}
    if not isinstance(tags, dict):
        raise PayloadError("Seldon meta.tags must be an object")
    present = [k for k in ("data", "jsonData", "strData", "binData") if k in doc]
    if len(present) != 1:
        raise PayloadError(f"Seldon message needs exactly one of data, jsonData, strData, binData; got {present or 'none'}")
    if "data" in doc:
        data = doc["data"]
        if not isinstance(data, dict):
            raise PayloadError("Seldon 'data' must be an object with 'ndarray' or 'tensor'")
        if "ndarray" in data:
            return SeldonRequest(_numeric(data["ndarray"], "data.ndarray"), "ndarray", puid, tags)
        if "tensor" in data:
            tensor = data["tensor"]
            if not isinstance(tensor, dict) or not isinstance(tensor.get("shape"), list) or not isinstance(tensor.get("values"), list):
                raise PayloadError("Seldon data.tensor needs a 'shape' list and a 'values' list")
            values = _numeric(tensor["values"], "data.tensor.values").ravel()
            try:
                return SeldonRequest(values.reshape([int(d) for d in tensor["shape"]]), "tensor", puid, tags)
            except (ValueError, TypeError) as exc:
                raise PayloadError(f"Seldon data.tensor: {values.size} values do not fit shape {tensor['shape'][:8]}: {exc}") from None
        raise PayloadError("Seldon 'data' needs 'ndarray' or 'tensor'")
    if "jsonData" in doc:
        return SeldonRequest(_numeric(doc["jsonData"], "jsonData"), "jsonData", puid, tags)
    if "strData" in doc:
        if not isinstance(doc["strData"], str):
            raise PayloadError("Seldon strData must be a string")
        try:
            parsed = orjson.loads(doc["strData"])
        except orjson.JSONDecodeError:
            raise PayloadError("Seldon strData must hold the JSON text of a numeric array for this model") from None
        return SeldonRequest(_numeric(parsed, "strData"), "strData", puid, tags)
    raw = doc["binData"]
    if not isinstance(raw, str):
        raise PayloadError("Seldon binData must be a base64 string")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError("Seldon binData is not valid base64") from None
    per_instance = int(np.prod([d for d in input_shape[1:] if d > 0])) * 4
    if not data or per_instance == 0 or len(data) % per_instance:
        raise PayloadError(f"Seldon binData holds {len(data)} bytes: not a whole number of FP32 instances of shape {list(input_shape[1:])} "
                           f"({per_instance} bytes each)")
    array = np.frombuffer(data, dtype="<f4").reshape(-1, *input_shape[1:]).astype(np.float32)
    return SeldonRequest(array, "binData", puid, tags)


def encode_response(probabilities: np.ndarray, request: SeldonRequest, puid: str, names: list[str], model: str, version: str | None) -> dict:
    """Seldon's answer: the probabilities in the request's form, the class names, meta with the puid."""
    meta = {"puid": puid, "tags": request.tags, "routing": {}, "requestPath": {model: version or ""}, "metrics": []}
    if request.form == "tensor":
        payload: dict[str, Any] = {"data": {"names": names, "tensor": {"shape": list(probabilities.shape), "values": probabilities.ravel().tolist()}}}
    elif request.form == "jsonData":
        payload = {"jsonData": {"names": names, "predictions": probabilities.tolist()}}
    elif request.form == "strData":
        payload = {"strData": orjson.dumps({"names": names, "predictions": probabilities.tolist()}).decode()}
    else:  # ndarray, binData
        payload = {"data": {"names": names, "ndarray": probabilities.tolist()}}
    return {**payload, "meta": meta}


def output_names(classes: list[str] | None, width: int) -> list[str]:
    """Seldon's column names: the model's class names when it has them, else t:0, t:1, ..."""
    if classes and len(classes) == width:
        return [str(c) for c in classes]
    return [f"t:{i}" for i in range(width)]
