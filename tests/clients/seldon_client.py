"""seldon-core's SeldonClient against a Seismo model server (Seldon's REST protocol): predict, then
feedback to the deployment (the model server relays it) and to the metrics server. Runs in .venv-seldon
(protobuf 3, numpy<2); tests/hostile/test_clients.py starts it. Prints one JSON line: the puid."""

import json
import sys

import numpy as np
from seldon_core.proto import prediction_pb2
from seldon_core.seldon_client import SeldonClient
from seldon_core.utils import array_to_grpc_datadef


def main(model_endpoint: str, metrics_endpoint: str, model: str, row: str) -> None:
    data = np.asarray([json.loads(row)], dtype=np.float64)
    # gateway_prefix="": the deployment's own paths (/api/v1.0/predictions, /api/v1.0/feedback), as behind
    # an ingress that strips /seldon/<namespace>/<name>.
    client = SeldonClient(deployment_name=model, gateway="istio", transport="rest", gateway_endpoint=model_endpoint,
                          client_return_type="proto")
    for payload_type in ("ndarray", "tensor"):
        predicted = client.predict(data=data, gateway_prefix="", payload_type=payload_type)
        assert predicted.success, predicted.msg
        probabilities = np.asarray(predicted.response.data.ndarray if payload_type == "ndarray" else predicted.response.data.tensor.values)
        assert abs(float(np.asarray(probabilities, dtype=np.float64).sum()) - 1) < 1e-4, predicted.response
    puid = predicted.response.meta.puid
    assert puid, predicted.response
    truth = prediction_pb2.SeldonMessage(data=array_to_grpc_datadef("ndarray", np.asarray([[0]])))
    relayed = client.feedback(prediction_request=predicted.request, prediction_response=predicted.response, prediction_truth=truth, reward=1.0,
                              gateway_prefix="")
    assert relayed.success, relayed.msg
    direct = SeldonClient(deployment_name=model, gateway="istio", transport="rest", gateway_endpoint=metrics_endpoint, client_return_type="proto")
    # The metrics server's Seldon route is /api/v1.0/feedback too.
    sent = direct.feedback(prediction_request=predicted.request, prediction_response=predicted.response, prediction_truth=truth, reward=1.0,
                           gateway_prefix="")
    assert sent.success, sent.msg
    print(json.dumps({"puid": puid}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
