"""The Open Inference Protocol over REST, driven by the real `tritonclient[http]`, against a
real server holding a repository of two models of different sizes and label sets (explicit
mode): metadata, readiness, inference with binary and JSON tensors, the `image` input, the
classification extension, the repository extension; and JSON `image` in base64 by raw HTTP."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from imagefiles import encode, photo
from oip_models import OTHER, TINY, pixels, session_logits
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def server(start_server, model_repository: Path):
    return start_server(model_repository=model_repository, grpc_port=0)


@pytest.fixture(scope="module")
def client(server) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.url.removeprefix("http://"))


def test_metadata_and_readiness(client, server) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert {"binary_tensor_data", "classification", "model_repository"} <= set(meta["extensions"])
    tiny, other = client.get_model_metadata(TINY), client.get_model_metadata(OTHER)
    assert tiny["versions"] == ["1"] and other["versions"] == ["1"]
    assert {i["name"]: i["shape"] for i in tiny["inputs"]} == {
        "image": [-1],
        "pixel_values": [-1, 3, 32, 32],
    }
    assert {o["name"]: o["shape"] for o in other["outputs"]} == {
        "probabilities": [-1, 3],
        "logits": [-1, 3],
        "attention": [-1, 6, 6],
    }
    assert client.is_model_ready(TINY) and client.is_model_ready(OTHER, "1")
    assert not client.is_model_ready("nowhere")
    with pytest.raises(InferenceServerException, match="not served"):
        client.get_model_metadata("nowhere")


@pytest.mark.parametrize("binary", [True, False])
def test_pixel_values_logits_equal_the_session(
    client, model_repository: Path, binary: bool
) -> None:
    for name, expected_classes in ((TINY, 10), (OTHER, 3)):
        model_dir = model_repository / name / "1"
        batch = pixels(model_dir, 3)
        tensor = httpclient.InferInput("pixel_values", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch, binary_data=binary)
        outputs = [
            httpclient.InferRequestedOutput(name, binary_data=binary)
            for name in ("logits", "probabilities", "attention")
        ]
        result = client.infer(name, [tensor], outputs=outputs)
        logits = result.as_numpy("logits")
        assert logits.shape == (3, expected_classes)
        np.testing.assert_allclose(logits, session_logits(model_dir, batch), rtol=1e-5, atol=1e-5)
        probabilities = result.as_numpy("probabilities")
        np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
        assert result.as_numpy("attention").shape[0] == 3
        assert result.get_response()["model_version"] == "1"


def test_image_input_equals_classify(client, server) -> None:
    images = [encode(photo(48, 40, seed=s), "PNG") for s in range(2)]
    tensor = httpclient.InferInput("image", [2], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
    result = client.infer(TINY, [tensor])  # no outputs named: all, in binary
    probabilities = result.as_numpy("probabilities")
    for row, image in zip(probabilities, images, strict=True):
        answer = server.client.post(
            f"/v1/models/{TINY}/classify",
            content=image,
            headers={"content-type": "image/png"},
            params={"top_k": 10},
        ).json()
        scores = {p["index"]: p["score"] for p in answer["results"][0]["predictions"]}
        np.testing.assert_allclose(row, [scores[i] for i in range(10)], rtol=1e-5, atol=1e-6)


def test_classification_extension(client, model_repository: Path) -> None:
    batch = pixels(model_repository / OTHER / "1", 2, seed=3)
    tensor = httpclient.InferInput("pixel_values", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    outputs = [
        httpclient.InferRequestedOutput("probabilities", class_count=2),
        httpclient.InferRequestedOutput("logits"),
    ]
    result = client.infer(OTHER, [tensor], outputs=outputs)
    classes = result.as_numpy("probabilities")
    logits = result.as_numpy("logits")
    assert classes.shape == (2, 2)
    for row, image_logits in zip(classes, logits, strict=True):
        probabilities = np.exp(image_logits - image_logits.max())
        probabilities /= probabilities.sum()
        order = np.argsort(-probabilities)[:2]
        for entry, index in zip(row, order, strict=True):
            value, position, label = entry.decode().split(":")
            assert int(position) == index and label == ["cat", "dog", "bird"][index]
            assert float(value) == pytest.approx(probabilities[index], abs=1e-6)
    bad = [httpclient.InferRequestedOutput("attention", class_count=2)]
    with pytest.raises(InferenceServerException, match="classification") as error:
        client.infer(OTHER, [tensor], outputs=bad)
    assert error.value.status() == "400"


def test_errors_are_the_protocols(server) -> None:
    wrong = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    response = server.client.post(f"/v2/models/{TINY}/infer", json=wrong)
    assert response.status_code == 400
    assert set(response.json()) == {"error"} and "unknown input" in response.json()["error"]
    shape = {"inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": [1, 3, 8, 8]}]}
    shape["inputs"][0]["data"] = [0.0] * (3 * 8 * 8)
    assert server.client.post(f"/v2/models/{TINY}/infer", json=shape).status_code == 400
    assert server.client.post("/v2/models/nowhere/infer", json=wrong).status_code == 404
    assert server.client.post(f"/v2/models/{TINY}/infer", content=b"{").status_code == 400


def test_json_image_in_base64(server) -> None:
    image = encode(photo(40, 40, seed=7), "JPEG")
    body = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [1],
                "data": [base64.b64encode(image).decode()],
            }
        ],
        "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}],
    }
    response = server.client.post(f"/v2/models/{TINY}/versions/1/infer", json=body)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["datatype"] == "BYTES" and output["shape"] == [1, 3]
    classify = server.client.post(
        "/classify", params={"top_k": 3}, content=image, headers={"content-type": "image/jpeg"}
    )
    assert classify.status_code == 404  # two models and no default: /classify must be told
    named = server.client.post(
        f"/v1/models/{TINY}/versions/1/classify",
        params={"top_k": 3},
        content=image,
        headers={"content-type": "image/jpeg"},
    ).json()
    assert named["model"] == {"name": TINY, "version": "1"}
    expected = [p["index"] for p in named["results"][0]["predictions"]]
    assert [int(entry.split(":")[1]) for entry in output["data"]] == expected


def test_repository_extension(client, server) -> None:
    index = {(m["name"], m["version"]): m["state"] for m in client.get_model_repository_index()}
    assert index == {(TINY, "1"): "READY", (OTHER, "1"): "READY"}
    client.unload_model(OTHER)
    after_unload = [m for m in client.get_model_repository_index() if m["name"] == OTHER]
    assert after_unload[0]["state"] in ("UNLOADING", "UNAVAILABLE")
    assert not client.is_model_ready(OTHER)
    assert client.is_server_ready()  # the policy no longer serves it: still ready
    cards = httpx.get(f"{server.url}/v1/models").json()
    assert [c["name"] for c in cards["models"]] in ([TINY], [TINY, OTHER])
    # tritonclient sends `{}` or parameters; raw clients may send nothing at all.
    assert server.client.post(f"/v2/repository/models/{OTHER}/load").status_code == 200
    assert client.is_model_ready(OTHER)
    client.load_model(OTHER)  # a reload of what is served keeps serving it
    assert client.is_model_ready(OTHER)
    response = server.client.post(
        "/v2/repository/models/nowhere/load", content=json.dumps({"parameters": {}})
    )
    assert response.status_code == 400 and "error" in response.json()


def test_metrics_carry_model_and_version(server, client, model_repository: Path) -> None:
    batch = pixels(model_repository / OTHER / "1", 1)
    tensor = httpclient.InferInput("pixel_values", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    client.infer(OTHER, [tensor])
    assert server.metric("vitserve_model_ready", f'model="{TINY}",version="1"') == 1
    assert server.metric("vitserve_model_loads_total", f'model="{TINY}",outcome="loaded"') >= 1
    assert server.metric("vitserve_batch_size_count", f'model="{OTHER}",version="1"') >= 1
    assert server.metric("vitserve_images_total", f'model="{OTHER}"') >= 1
    assert (
        server.metric(
            "vitserve_requests_total",
            'route="/v2/models/{name}/infer",status="200",protocol="http"',
        )
        >= 1
    )
