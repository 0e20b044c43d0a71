"""The Open Inference Protocol over gRPC, driven by the real `tritonclient[grpc]`, against a real
server holding two models (explicit mode): metadata, readiness, inference with raw tensors
(`pixel_values` and `image`), the classification extension, the repository RPCs, and the status
codes errors map to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from app_processes import free_port
from imagefiles import encode, photo
from oip_models import OTHER, TINY, pixels, session_logits
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def server(start_server, model_repository: Path):
    port = free_port()
    server = start_server(
        model_repository=model_repository, grpc_port=port, max_upload_bytes=200_000
    )
    server.grpc_url = f"127.0.0.1:{port}"
    return server


@pytest.fixture(scope="module")
def client(server) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(server.grpc_url)


def pixel_input(batch: np.ndarray) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("pixel_values", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    return tensor


def test_metadata_and_readiness(client) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "vitserve" and "model_repository" in meta["extensions"]
    other = client.get_model_metadata(OTHER, as_json=True)
    assert other["versions"] == ["1"]
    assert {i["name"]: i["shape"] for i in other["inputs"]} == {
        "image": ["-1"],
        "pixel_values": ["-1", "3", "48", "48"],
    }
    assert client.is_model_ready(TINY) and not client.is_model_ready("nowhere")


def test_infer_pixel_values_and_image(client, server, model_repository: Path) -> None:
    model_dir = model_repository / TINY / "1"
    batch = pixels(model_dir, 4, seed=5)
    outputs = [grpcclient.InferRequestedOutput(name) for name in ("logits", "attention")]
    result = client.infer(TINY, [pixel_input(batch)], outputs=outputs)
    np.testing.assert_allclose(
        result.as_numpy("logits"), session_logits(model_dir, batch), rtol=1e-5, atol=1e-5
    )
    assert result.as_numpy("attention").shape == (4, 4, 4)
    image = encode(photo(48, 40, seed=2), "PNG")
    tensor = grpcclient.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([image], dtype=np.object_))
    probabilities = client.infer(TINY, [tensor]).as_numpy("probabilities")[0]
    answer = server.client.post(
        f"/v1/models/{TINY}/classify",
        content=image,
        headers={"content-type": "image/png"},
        params={"top_k": 10},
    ).json()
    scores = {p["index"]: p["score"] for p in answer["results"][0]["predictions"]}
    np.testing.assert_allclose(probabilities, [scores[i] for i in range(10)], atol=1e-6)


def test_classification_extension(client, model_repository: Path) -> None:
    batch = pixels(model_repository / OTHER / "1", 2, seed=4)
    outputs = [grpcclient.InferRequestedOutput("logits", class_count=3)]
    classes = client.infer(OTHER, [pixel_input(batch)], outputs=outputs).as_numpy("logits")
    assert classes.shape == (2, 3)
    values = [[float(entry.decode().split(":")[0]) for entry in row] for row in classes]
    assert all(row == sorted(row, reverse=True) for row in values)
    np.testing.assert_allclose(
        np.sort(values, axis=1),
        np.sort(session_logits(model_repository / OTHER / "1", batch), axis=1),
        atol=1e-5,
    )


def status(error: pytest.ExceptionInfo[InferenceServerException]) -> str:
    return str(error.value.status())


def test_errors_map_to_status_codes(client, model_repository: Path) -> None:
    batch = pixels(model_repository / TINY / "1", 1)
    with pytest.raises(InferenceServerException) as missing:
        client.infer("nowhere", [pixel_input(batch)])
    assert status(missing) == "StatusCode.NOT_FOUND"
    wrong = pixels(model_repository / OTHER / "1", 1)  # 48 px for a 32 px model
    with pytest.raises(InferenceServerException) as invalid:
        client.infer(TINY, [pixel_input(wrong)])
    assert status(invalid) == "StatusCode.INVALID_ARGUMENT"
    bad = [grpcclient.InferRequestedOutput("attention", class_count=2)]
    with pytest.raises(InferenceServerException) as classification:
        client.infer(TINY, [pixel_input(batch)], outputs=bad)
    assert status(classification) == "StatusCode.INVALID_ARGUMENT"
    huge = pixels(model_repository / TINY / "1", 24)  # ~295 KB > the 200 KB upload limit
    with pytest.raises(InferenceServerException) as too_big:
        client.infer(TINY, [pixel_input(huge)])
    assert status(too_big) == "StatusCode.RESOURCE_EXHAUSTED"


def test_repository_rpcs(client, server) -> None:
    index = {(m.name, m.version): m.state for m in client.get_model_repository_index().models}
    assert index == {(TINY, "1"): "READY", (OTHER, "1"): "READY"}
    client.unload_model(OTHER)
    assert not client.is_model_ready(OTHER)
    client.load_model(OTHER)
    assert client.is_model_ready(OTHER)
    with pytest.raises(InferenceServerException) as unknown:
        client.load_model("nowhere")
    assert status(unknown) == "StatusCode.INVALID_ARGUMENT"
    assert server.metric("vitserve_requests_total", 'route="ModelInfer",protocol="grpc"') >= 1
