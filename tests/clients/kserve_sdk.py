"""KServe's Python SDK against a Seismo model server: REST V1, REST V2 (JSON and binary tensors) and
gRPC. Runs in .venv-kserve (its own protobuf); tests/hostile/test_clients.py starts it and checks that
every prediction it made was stored. Prints one JSON line: the prediction ids it used."""

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def main(base_url: str, grpc_address: str, model: str, image_path: str, prefix: str) -> None:
    image = np.load(image_path).astype(np.float32)[None]
    ids = {}

    v1 = InferenceRESTClient(RESTConfig(protocol="v1", retries=0))
    assert await v1.is_server_live(base_url), "V1 is_server_live"
    assert await v1.is_model_ready(base_url, model), "V1 is_model_ready"
    ids["v1"] = f"{prefix}-v1"
    answer = await v1.infer(base_url, {"instances": image.tolist()}, model_name=model, headers={"x-request-id": ids["v1"]})
    probabilities = np.asarray(answer["predictions"][0], dtype=np.float64)
    assert probabilities.shape == (10,) and abs(probabilities.sum() - 1) < 1e-4, answer
    await v1.close()

    v2 = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    assert await v2.is_server_ready(base_url) and await v2.is_model_ready(base_url, model), "V2 readiness"
    for kind in ("json", "binary"):
        tensor = InferInput("input_1", list(image.shape), "FP32")
        tensor.set_data_from_numpy(image, binary_data=kind == "binary")
        ids[f"v2-{kind}"] = f"{prefix}-v2-{kind}"
        result = await v2.infer(base_url, InferRequest(model, [tensor], request_id=ids[f"v2-{kind}"]), model_name=model)
        assert result.id == ids[f"v2-{kind}"], result.id
        out = result.get_output_by_name("probabilities").as_numpy()
        assert out.shape == (1, 10) and np.allclose(out[0], probabilities, atol=1e-6), (kind, out)
    await v2.close()

    rpc = InferenceGRPCClient(grpc_address, retries=0)
    assert await rpc.is_server_live() and await rpc.is_model_ready(model), "gRPC readiness"
    tensor = InferInput("input_1", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image)
    ids["grpc"] = f"{prefix}-grpc"
    result = await rpc.infer(InferRequest(model, [tensor], request_id=ids["grpc"]))
    out = result.get_output_by_name("probabilities").as_numpy()
    assert result.id == ids["grpc"] and np.allclose(out.reshape(-1), probabilities, atol=1e-6), (result.id, out)
    await rpc.close()
    print(json.dumps(ids))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
