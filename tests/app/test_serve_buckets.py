"""A server padding batches to bucket sizes through IO binding answers exactly as the default
server: the padding never reaches a client, in the answers or in the batch-size metric."""

from __future__ import annotations

import numpy as np
import pytest
from imagefiles import encode, photo


def files(*images: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]


def test_padding_is_invisible_to_clients(server, start_server) -> None:
    bucketed = start_server(batch_buckets="true", io_binding="true", max_batch_size=8)
    images = [encode(photo(40, 36, seed=seed), "PNG") for seed in range(5)]
    params = {"top_k": 10}
    want = server.client.post("/classify", files=files(*images), params=params)
    got = bucketed.client.post("/classify", files=files(*images), params=params)
    assert got.status_code == want.status_code == 200, got.text
    got_results, want_results = got.json()["results"], want.json()["results"]
    assert len(got_results) == len(want_results) == 5
    for mine, theirs in zip(got_results, want_results, strict=True):
        assert [p["index"] for p in mine["predictions"]] == [
            p["index"] for p in theirs["predictions"]
        ]
        for a, b in zip(mine["predictions"], theirs["predictions"], strict=True):
            assert a["score"] == pytest.approx(b["score"], rel=1e-4, abs=1e-6)
        np.testing.assert_allclose(mine["attention"]["map"], theirs["attention"]["map"], atol=1e-5)
    # 5 images ran padded to 8, but the metric counts the images that were sent.
    assert bucketed.metric("vitserve_batch_size_sum") == 5
