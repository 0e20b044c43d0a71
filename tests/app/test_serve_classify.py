"""POST /classify on a real server: answers, their agreement with PyTorch and onnxruntime,
attention formats, and every documented error from a real request."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import torch
from imagefiles import bad_files, encode, exif_rotated_jpeg, photo, png_bomb
from PIL import Image

from app.model_config import read_model_config
from app.preprocess import preprocess

LABELS = 10  # the tiny model's classes


def classify(server, data: bytes, content_type: str = "image/png", **params) -> httpx.Response:
    return server.client.post(
        "/classify", content=data, headers={"content-type": content_type}, params=params
    )


def files(*images: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]


def test_answer_shape(server) -> None:
    response = classify(server, encode(photo(), "PNG"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "vit-tiny-test", "version": "1"}
    (result,) = body["results"]
    scores = [p["score"] for p in result["predictions"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert all(0 <= s <= 1 for s in scores)
    assert result["attention"]["grid"] == [4, 4]
    grid = np.array(result["attention"]["map"])
    assert grid.shape == (4, 4) and grid.max() == pytest.approx(1.0)
    for header in ("x-queue-time", "x-inference-time", "x-total-time"):
        assert float(response.headers[header]) >= 0


def test_agrees_with_pytorch_and_onnxruntime(
    server, tiny_model_dir: Path, tiny_checkpoint: Path
) -> None:
    from model.load import load_model
    from model.rollout import cls_attention_rollout

    config = read_model_config(tiny_model_dir)
    images = [encode(photo(48, 40, seed=s), "PNG") for s in range(3)]
    response = server.client.post("/classify", files=files(*images), params={"top_k": LABELS})
    assert response.status_code == 200, response.text
    results = response.json()["results"]

    batch = np.stack([preprocess(Image.open(io.BytesIO(d)), config.preprocess) for d in images])
    session = ort.InferenceSession(str(tiny_model_dir / "model.onnx"))
    ort_logits, ort_attention = session.run(["logits", "attention"], {"pixel_values": batch})
    vit = load_model(tiny_checkpoint).model.eval()
    with torch.no_grad():
        logits, attentions = vit.forward_with_attention(torch.from_numpy(batch))
        rollout = cls_attention_rollout(attentions, tuple(config.grid)).numpy()
    probabilities = torch.softmax(logits.double(), dim=-1).numpy()

    for i, result in enumerate(results):
        served = np.zeros(LABELS)
        for p in result["predictions"]:
            assert p["label"] == config.labels[p["index"]]
            served[p["index"]] = p["score"]
        ort_probabilities = np.exp(ort_logits[i] - ort_logits[i].max())
        ort_probabilities /= ort_probabilities.sum()
        np.testing.assert_allclose(served, probabilities[i], rtol=0, atol=1e-4)
        np.testing.assert_allclose(served, ort_probabilities, rtol=0, atol=1e-4)
        served_map = np.array(result["attention"]["map"])
        np.testing.assert_allclose(served_map, rollout[i] / rollout[i].max(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(
            served_map, ort_attention[i] / ort_attention[i].max(), rtol=0, atol=1e-4
        )
    assert len({r["predictions"][0]["index"] for r in results} | {-1}) >= 2


def test_multipart_keeps_order_and_raw_body_agrees(server) -> None:
    images = [encode(photo(40, 40, seed=s), "PNG") for s in range(4)]
    multi = server.client.post("/classify", files=files(*images), params={"top_k": LABELS})
    assert multi.status_code == 200, multi.text
    for data, result in zip(images, multi.json()["results"], strict=True):
        # The type is told by the bytes: PNG bytes declared as JPEG or octet-stream.
        for content_type in ("image/jpeg", "application/octet-stream"):
            single = classify(server, data, content_type, top_k=LABELS)
            assert single.status_code == 200, single.text
            assert single.json()["results"][0] == result


def test_top_k_and_attention_formats(server) -> None:
    data = encode(photo(), "PNG")
    assert len(classify(server, data, top_k=1).json()["results"][0]["predictions"]) == 1
    everything = classify(server, data, top_k=1000).json()["results"][0]["predictions"]
    assert len(everything) == LABELS
    assert sum(p["score"] for p in everything) == pytest.approx(1.0, abs=1e-6)

    none = classify(server, data, attention="none")
    assert none.status_code == 200 and "attention" not in none.json()["results"][0]

    png = classify(server, data, attention="png")
    assert png.status_code == 200, png.text
    attention = png.json()["results"][0]["attention"]
    assert attention["grid"] == [4, 4] and "map" not in attention
    heatmap = Image.open(io.BytesIO(base64.b64decode(attention["png"])))
    assert heatmap.format == "PNG" and heatmap.size == (48, 40)  # the image as sent


def test_exif_orientation_is_honoured(server) -> None:
    rotated, upright = exif_rotated_jpeg()
    stored_as = classify(server, rotated, top_k=LABELS).json()["results"][0]
    as_meant = classify(server, encode(upright, "JPEG", quality=95), top_k=LABELS)
    sideways = classify(server, encode(upright.rotate(90, expand=True), "JPEG", quality=95))
    grid = np.array(stored_as["attention"]["map"])
    assert np.abs(grid - np.array(as_meant.json()["results"][0]["attention"]["map"])).max() < 0.2
    assert sideways.status_code == 200


@pytest.mark.parametrize("name", list(bad_files()))
def test_bad_file_corpus(server, name: str) -> None:
    data, status, code = bad_files()[name]
    for response in (
        classify(server, data, "image/jpeg"),
        server.client.post("/classify", files=files(data)),
    ):
        assert response.status_code == status, response.text
        if code is None:
            assert len(response.json()["results"]) == 1
        else:
            assert response.json()["error"]["code"] == code


def test_one_bad_file_fails_its_request_only(server) -> None:
    good = encode(photo(), "PNG")
    response = server.client.post("/classify", files=files(good, b"not an image"))
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_image",
        "message": "file 1: the bytes are not an image in an accepted format "
        "(JPEG, PNG, WEBP, GIF, BMP)",
    }
    assert server.client.post("/classify", files=files(good, good)).status_code == 200


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_documented_errors(server) -> None:
    good = encode(photo(), "PNG")
    c = server.client
    assert error(classify(server, b"")) == (400, "empty_image")
    assert error(classify(server, b"\x89PNG but not really")) == (400, "invalid_image")
    assert error(classify(server, b"x" * 2_000_001)) == (413, "payload_too_large")
    assert error(classify(server, png_bomb(9000, 8000))) == (413, "image_too_large")
    assert error(classify(server, good, "text/plain")) == (415, "unsupported_media_type")
    assert error(classify(server, good, "application/json")) == (415, "unsupported_media_type")
    assert error(c.post("/classify", content=good)) == (415, "unsupported_media_type")
    assert error(classify(server, good, top_k=0)) == (422, "invalid_parameter")
    assert error(classify(server, good, top_k="many")) == (422, "invalid_parameter")
    assert error(classify(server, good, attention="heatmap")) == (422, "invalid_parameter")
    no_file = c.post("/classify", files=[("image", ("a.png", good, "image/png"))])
    assert error(no_file) == (422, "invalid_parameter")
    broken = c.post(
        "/classify", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert error(broken) == (422, "invalid_parameter")
    assert error(c.get("/nowhere")) == (404, "not_found")
    assert error(c.get("/classify")) == (405, "method_not_allowed")
    assert error(c.delete("/healthz")) == (405, "method_not_allowed")


def test_large_image_is_classified(server) -> None:
    big = photo(1600, 1200)
    response = classify(server, encode(big, "JPEG", quality=90), "image/jpeg")
    assert response.status_code == 200, response.text


def test_metadata_and_probes(server) -> None:
    assert server.client.get("/healthz").json() == {"status": "ok"}
    assert server.client.get("/readyz").status_code == 200
    (card,) = server.client.get("/v1/models").json()["models"]
    assert card["name"] == "vit-tiny-test" and len(card["labels"]) == LABELS
    assert card["input_size"] == [32, 32] and card["providers"] == ["CPUExecutionProvider"]
    assert card["batching"] == {
        "max_batch_size": 32,
        "max_wait_ms": 5.0,
        "max_queue": 256,
        "request_timeout_s": 30.0,
    }
    assert server.client.get("/docs").status_code == 200
    schema = server.client.get("/openapi.json").json()
    body = schema["paths"]["/classify"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*"} <= set(body)


def test_concurrent_requests_share_batches(server) -> None:
    runs_before = server.metric("vitserve_batch_size_count")
    images_before = server.metric("vitserve_batch_size_sum")
    data = encode(photo(), "PNG")
    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(lambda _: classify(server, data).status_code, range(32)))
    assert statuses == [200] * 32
    runs = server.metric("vitserve_batch_size_count") - runs_before
    assert server.metric("vitserve_batch_size_sum") - images_before == 32
    assert runs < 32, "every image ran alone: no batching"
