import base64

import numpy as np
import pytest

from seismo.protocol.payloads import (
    V2_DTYPES,
    PayloadError,
    decode_seldon,
    decode_v1_instances,
    decode_v2_request,
    encode_v2_tensor,
    instances_of,
)


@pytest.mark.parametrize("datatype", [d for d in V2_DTYPES if d != "BYTES"])
def test_v2_numeric_datatypes_round_trip(datatype):
    values = [0, 1, 1, 0] if datatype == "BOOL" else [1, 2, 3, 4]
    _, (tensor,), _ = decode_v2_request({"inputs": [{"name": "x", "shape": [2, 2], "datatype": datatype, "data": values}]})
    assert tensor.data.shape == (2, 2) and tensor.data.dtype == np.dtype(V2_DTYPES[datatype])
    encoded = encode_v2_tensor("x", tensor.data)
    assert encoded["datatype"] == datatype and encoded["shape"] == [2, 2]
    assert encoded["data"] == [bool(v) for v in values] if datatype == "BOOL" else encoded["data"] == values


def test_v2_bytes_several_inputs_nested_data_and_id():
    request_id, tensors, params = decode_v2_request({
        "id": "req-9",
        "parameters": {"content_type": "np"},
        "inputs": [
            {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["hello", "w\u00f6rld"]},
            {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6]]},
        ],
    })
    assert request_id == "req-9" and params == {"content_type": "np"}
    assert list(tensors[0].data) == [b"hello", "w\u00f6rld".encode()]
    assert tensors[1].data.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert encode_v2_tensor("text", tensors[0].data)["data"] == ["hello", "w\u00f6rld"]


@pytest.mark.parametrize(
    "inputs, message",
    [
        ([{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}], r"shape \[2, 2\] needs 4 elements, data has 3"),
        ([{"name": "x", "shape": [1], "datatype": "FP8", "data": [1]}], "unknown datatype 'FP8'"),
        ([{"name": "x", "shape": [1], "datatype": "INT8", "data": ["a"]}], "does not fit datatype INT8"),
        ([{"shape": [1], "datatype": "FP32", "data": [1]}], r"inputs\[0\].name"),
        ([{"name": "x", "shape": [1], "datatype": "FP32"}], "missing 'data'"),
        ([{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}], "non-negative"),
        ([{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}] * 2, "duplicate input names"),
        ([], "non-empty 'inputs'"),
    ],
)
def test_v2_errors_name_the_problem(inputs, message):
    with pytest.raises(PayloadError, match=message):
        decode_v2_request({"inputs": inputs})


def test_v1_instances():
    assert decode_v1_instances({"instances": [[1, 2], [3, 4]]}).shape == (2, 2)
    with pytest.raises(PayloadError, match="'instances' list"):
        decode_v1_instances({"inputs": []})
    with pytest.raises(PayloadError, match="rectangular"):
        decode_v1_instances({"instances": [[1, 2], [3]]})


def test_seldon_payload_forms():
    assert decode_seldon({"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2]]}}).shape == (1, 4)
    assert decode_seldon({"data": {"tensor": {"shape": [2, 2], "values": [1, 2, 3, 4]}}}).tolist() == [[1, 2], [3, 4]]
    assert decode_seldon({"strData": "hi"}) == "hi"
    assert decode_seldon({"binData": base64.b64encode(b"\x01\x02").decode()}) == b"\x01\x02"
    assert decode_seldon({"jsonData": {"a": 1}}) == {"a": 1}
    with pytest.raises(PayloadError, match="do not fit shape"):
        decode_seldon({"data": {"tensor": {"shape": [3], "values": [1, 2]}}})


def test_instances_of_reads_every_protocol():
    assert instances_of({"instances": [[1, 2]]}).tolist() == [[1, 2]]
    assert instances_of({"predictions": [[0.1, 0.9]]}).shape == (1, 2)
    assert instances_of({"outputs": [{"name": "p", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 0.5]}]}).shape == (1, 2)
    assert instances_of({"data": {"names": ["t:0", "t:1"], "ndarray": [[0.9, 0.1]]}, "meta": {}}).shape == (1, 2)
    with pytest.raises(PayloadError, match="none of the V1, V2 or Seldon"):
        instances_of({"foo": 1})
