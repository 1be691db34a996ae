"""The OIP binary tensor extension: codec, as Triton's and KServe's clients lay bodies out."""

import struct

import numpy as np
import orjson
import pytest

from seismo.protocol.binary import binary_output_names, encode_binary_body, header_length_of, load_document
from seismo.protocol.payloads import PayloadError, decode_v2_request, instances_of


def triton_body(array: np.ndarray, datatype: str = "FP32") -> tuple[bytes, int]:
    """Laid out by hand as tritonclient's http InferInput.set_data_from_numpy(binary_data=True) does."""
    raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    header = orjson.dumps({"inputs": [{"name": "input_1", "shape": list(array.shape), "datatype": datatype,
                                       "parameters": {"binary_data_size": len(raw)}}]})
    return header + raw, len(header)


def test_binary_fp32_equals_the_json_request():
    images = np.random.default_rng(0).random((2, 4, 4, 3), dtype=np.float32)
    body, header_length = triton_body(images)
    doc = load_document(body, header_length)
    _, tensors, _ = decode_v2_request(doc)
    assert tensors[0].data.dtype == np.float32 and tensors[0].shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(tensors[0].data, images)
    # An event consumer has no HTTP header: the JSON header's end is found by parsing it.
    np.testing.assert_array_equal(instances_of(load_document(body)), images)


def test_every_numeric_datatype_and_bytes_round_trip():
    arrays = [np.arange(6, dtype=t).reshape(2, 3) for t in (np.int8, np.uint16, np.int32, np.int64, np.float16, np.float64)]
    arrays.append(np.array([True, False, True]))
    strings = np.empty(2, dtype=object)
    strings[:] = [b"caf\xc3\xa9", b""]
    arrays.append(strings)
    header = {"outputs": [{"name": f"o{i}", "datatype": dt, "shape": list(a.shape)} for i, (a, dt) in
                          enumerate(zip(arrays, ["INT8", "UINT16", "INT32", "INT64", "FP16", "FP64", "BOOL", "BYTES"]))]}
    body, header_length = encode_binary_body(header, list(zip(header["outputs"], arrays)))
    doc = load_document(body, header_length)
    for tensor, expected in zip(doc["outputs"], arrays):
        got = np.asarray(tensor["data"]).reshape(tensor["shape"])
        assert got.dtype == expected.dtype, tensor["name"]
        np.testing.assert_array_equal(got, expected)
    # BYTES: a 4-byte little-endian length before each element.
    assert body.endswith(struct.pack("<I", 5) + b"caf\xc3\xa9" + struct.pack("<I", 0))


@pytest.mark.parametrize("mutate, message", [
    (lambda body, n: (body, n + 10_000), "the body has only"),
    (lambda body, n: (body + b"xx", n), "2 bytes after its binary tensors"),
    (lambda body, n: (body[:-4], n), "binary_data_size 48 but only 44 bytes are left"),
    (lambda body, n: (body[:n].replace(b'"binary_data_size":48', b'"binary_data_size":44') + body[n + 4:], n), "needs 48 bytes"),
    (lambda body, n: (body[:n].replace(b'"FP32"', b'"FP99"') + body[n:], n), "unknown datatype"),
    (lambda body, n: (body[:n].replace(b'"binary_data_size":48', b'"binary_data_size":-1') + body[n:], n), "non-negative integer"),
    (lambda body, n: (b"[1," + body[3:], n), "not valid JSON"),
])
def test_malformed_binary_bodies_are_payload_errors_naming_the_problem(mutate, message):
    body, header_length = triton_body(np.zeros((1, 2, 2, 3), dtype=np.float32))
    body, header_length = mutate(body, header_length)  # replacements keep the header's length
    with pytest.raises(PayloadError, match=message):
        load_document(body, header_length)


def test_header_length_header_must_be_a_plain_integer():
    assert header_length_of({}) is None
    assert header_length_of({"inference-header-content-length": "120"}) == 120
    for bad in ("-1", "1e3", "12 ", "١٢", "9" * 13):
        with pytest.raises(PayloadError, match="Inference-Header-Content-Length"):
            header_length_of({"inference-header-content-length": bad})


def test_plain_json_and_junk_without_a_header_keep_their_json_errors():
    assert load_document(b'{"instances": [[1, 2]]}') == {"instances": [[1, 2]]}
    with pytest.raises(PayloadError, match="not valid JSON"):
        load_document(b'{"instances": [[1, 2]]')
    with pytest.raises(PayloadError, match="not valid JSON"):
        load_document(b"\x00\x01binary")
    deep = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"  # too deep for orjson and for json's scanner
    with pytest.raises(PayloadError, match="not valid JSON"):
        load_document(deep)


def test_binary_outputs_asked_per_output_or_for_all():
    assert binary_output_names({"outputs": [{"name": "class", "parameters": {"binary_data": True}}]}, ["probabilities", "class"]) == {"class"}
    assert binary_output_names({"parameters": {"binary_data_output": True}}, ["probabilities", "class"]) == {"probabilities", "class"}
    assert binary_output_names({"outputs": [{"name": "class"}]}, ["class"]) == set()


def test_bytes_elements_beyond_the_shape_are_refused_early():
    raw = struct.pack("<I", 0) * 1000
    header = orjson.dumps({"inputs": [{"name": "s", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(raw)}}]})
    with pytest.raises(PayloadError, match="more than the 2 elements its shape has"):
        load_document(header + raw, len(header))
