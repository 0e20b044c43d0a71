"""API keys (VITSERVE_API_KEYS) on the Open Inference Protocol: REST routes want
`Authorization: Bearer <key>`, gRPC calls the same in their `authorization` metadata; the health
probes stay open. Driven with the real tritonclient, HTTP and gRPC."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from app_processes import free_port
from tritonclient.utils import InferenceServerException

KEY = "s3cret-key"
MODEL = "vit-tiny-test"


def bearer() -> dict[str, str]:
    """A fresh header dict each call: tritonclient.http adds its own headers to the one given."""
    return {"authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(start_server):
    port = free_port()
    server = start_server(api_keys=KEY, grpc_port=port)
    server.grpc_url = f"127.0.0.1:{port}"
    return server


def pixels() -> np.ndarray:
    return np.zeros((1, 3, 32, 32), dtype=np.float32)


def test_rest_needs_the_key(server) -> None:
    assert server.client.get("/v2/health/ready").status_code == 200  # probes stay open
    refused = server.client.get(f"/v2/models/{MODEL}")
    assert refused.status_code == 401 and set(refused.json()) == {"error"}
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    tensor = httpclient.InferInput("pixel_values", [1, 3, 32, 32], "FP32")
    tensor.set_data_from_numpy(pixels())
    with pytest.raises(InferenceServerException) as error:
        client.infer(MODEL, [tensor])
    assert error.value.status() == "401"
    result = client.infer(MODEL, [tensor], headers=bearer())
    assert result.as_numpy("logits").shape == (1, 10)


def test_grpc_needs_the_key(server) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert client.is_server_ready()  # open, as /readyz
    tensor = grpcclient.InferInput("pixel_values", [1, 3, 32, 32], "FP32")
    tensor.set_data_from_numpy(pixels())
    with pytest.raises(InferenceServerException) as error:
        client.infer(MODEL, [tensor], headers={"authorization": "Bearer wrong"})
    assert str(error.value.status()) == "StatusCode.UNAUTHENTICATED"
    result = client.infer(MODEL, [tensor], headers=bearer())
    assert result.as_numpy("logits").shape == (1, 10)
    assert client.is_model_ready(MODEL, headers=bearer())
