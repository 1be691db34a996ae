"""The Open Inference Protocol's binary tensor extension (as Triton and KServe implement it).

A request or response is a JSON header followed by raw tensor bytes. The HTTP header
`Inference-Header-Content-Length` says how many bytes the JSON header takes; a tensor whose
`parameters.binary_data_size` is set has no `data` in the header: its bytes follow, in the order of
the tensors, little-endian, row-major (BYTES elements: a 4-byte little-endian length, then the bytes).
A client asks for binary outputs with `parameters.binary_data: true` on a requested output, or
`parameters.binary_data_output: true` on the request.

Parsing floats from JSON is the model server's largest cost for images; with this extension an image
is one `np.frombuffer`.

Events keep the body exactly as received (content type `application/octet-stream`). A consumer does
not need the HTTP header to read one: `load_document` finds the end of the JSON header by parsing it,
so KServe's logger, which forwards the bytes without that header, is read the same way.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from seismo.protocol.limits import loads
from seismo.protocol.payloads import V2_DTYPES, PayloadError, v2_datatype

HEADER_LENGTH = "inference-header-content-length"
CONTENT_TYPE = "application/octet-stream"
_DECODER = json.JSONDecoder()


def header_length_of(headers: Mapping[str, str]) -> int | None:
    """The JSON header's length from the HTTP header, None when absent; PayloadError when malformed."""
    value = headers.get(HEADER_LENGTH)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise PayloadError(f"Inference-Header-Content-Length must be a non-negative integer, got {value[:40]!r}")
    return int(value)


def load_document(body: bytes, header_length: int | None = None, what: str = "request body") -> Any:
    """A V1, V2 or Seldon body as a document; binary tensors become numpy arrays in their `data`.

    With `header_length` the body must use the binary extension. Without it, a body that is plain
    JSON is returned as parsed; one that is not is tried as a JSON header followed by binary data.
    """
    if header_length is None:
        try:
            return loads(body, what)
        except PayloadError as not_json:
            header_length = _json_header_end(body)
            if header_length is None:
                raise not_json from None
    if header_length > len(body):
        raise PayloadError(f"Inference-Header-Content-Length is {header_length}, the body has only {len(body)} bytes")
    doc = loads(body[:header_length], f"{what}'s JSON header")
    if not isinstance(doc, dict):
        raise PayloadError(f"{what}'s JSON header must be an object")
    offset = header_length
    for key in ("inputs", "outputs"):
        tensors = doc.get(key)
        if not isinstance(tensors, list):
            continue
        for index, tensor in enumerate(tensors):
            size = _binary_size(tensor, f"{key}[{index}]")
            if size is None:
                continue
            if offset + size > len(body):
                raise PayloadError(f"{key}[{index}] has binary_data_size {size} but only {len(body) - offset} bytes are left")
            tensor["data"] = decode_binary_tensor(tensor, body[offset:offset + size], f"{key}[{index}]")
            offset += size
    if offset != len(body):
        raise PayloadError(f"{what} has {len(body) - offset} bytes after its binary tensors that no binary_data_size accounts for")
    return doc


def _json_header_end(body: bytes) -> int | None:
    """Where a leading JSON object ends, if the body starts with one followed by other bytes."""
    if not body.startswith(b"{"):
        return None
    try:
        # latin-1 maps byte i to character i, so the character offset is the byte offset.
        _, end = _DECODER.raw_decode(body.decode("latin-1"))
    except (ValueError, RecursionError):  # deep nesting: not a header we would take anyway
        return None
    return end if end < len(body) else None


def _binary_size(tensor: Any, where: str) -> int | None:
    if not isinstance(tensor, dict):
        return None
    parameters = tensor.get("parameters")
    if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
        return None
    size = parameters["binary_data_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise PayloadError(f"{where}: binary_data_size must be a non-negative integer")
    if "data" in tensor:
        raise PayloadError(f"{where}: has both binary_data_size and data")
    return size


def decode_binary_tensor(tensor: dict, raw: bytes, where: str) -> np.ndarray:
    """The flat array a tensor's raw bytes hold (shape and datatype are checked by the V2 decoder)."""
    datatype = tensor.get("datatype")
    if datatype not in V2_DTYPES:
        raise PayloadError(f"{where}: unknown datatype {datatype!r}; expected one of {', '.join(V2_DTYPES)}")
    shape = tensor.get("shape")
    if datatype == "BYTES":
        # The shape bounds the element count, so 32 MiB of empty elements cannot keep the loop busy.
        known = isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
        return _decode_bytes_elements(raw, where, math.prod(shape) if known and shape is not None else len(raw) // 4)
    dtype = np.dtype(V2_DTYPES[datatype]).newbyteorder("<")
    if len(raw) % dtype.itemsize:
        raise PayloadError(f"{where}: {len(raw)} bytes is not a whole number of {datatype} elements")
    if isinstance(shape, list) and all(isinstance(d, int) for d in shape) and math.prod(shape) * dtype.itemsize != len(raw):
        raise PayloadError(f"{where}: shape {shape} of {datatype} needs {math.prod(shape) * dtype.itemsize} bytes, "
                           f"binary_data_size is {len(raw)}")
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))  # a writable, native-order copy


def _decode_bytes_elements(raw: bytes, where: str, most: int) -> np.ndarray:
    values: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if len(values) >= most:
            raise PayloadError(f"{where}: BYTES data holds more than the {most} elements its shape has")
        if offset + 4 > len(raw):
            raise PayloadError(f"{where}: BYTES element length prefix is cut off")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise PayloadError(f"{where}: BYTES element of {length} bytes runs past the tensor's data")
        values.append(raw[offset:offset + length])
        offset += length
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def encode_binary_tensor(array: np.ndarray) -> bytes:
    """A tensor's raw bytes as the extension lays them out."""
    array = np.asarray(array)
    if v2_datatype(array) == "BYTES":
        parts = []
        for value in array.reshape(-1):
            data = value if isinstance(value, bytes) else str(value).encode()
            parts.append(struct.pack("<I", len(data)) + data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def encode_binary_body(header: dict, arrays: list[tuple[dict, np.ndarray]]) -> tuple[bytes, int]:
    """(body, JSON header length): each (tensor doc, array) gets binary_data_size and its bytes appended.

    The tensor docs are dicts inside `header` (so they are serialized with their new parameters)."""
    chunks = []
    for tensor, array in arrays:
        raw = encode_binary_tensor(array)
        tensor.pop("data", None)
        tensor["parameters"] = {**tensor.get("parameters", {}), "binary_data_size": len(raw)}
        chunks.append(raw)
    head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    return head + b"".join(chunks), len(head)


def binary_output_names(doc: dict, names: list[str]) -> set[str]:
    """Which of the response's outputs go out as binary: all of them with the request parameter
    binary_data_output, else those requested with parameters.binary_data (none: a JSON response)."""
    parameters = doc.get("parameters")
    if isinstance(parameters, dict) and parameters.get("binary_data_output") is True:
        return set(names)
    asked = set()
    for output in doc.get("outputs") or []:
        if isinstance(output, dict) and isinstance(output.get("parameters"), dict) and output["parameters"].get("binary_data") is True:
            asked.add(str(output.get("name")))
    return asked & set(names)
